# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_cron_job
short_description: Manage one pg_cron job that runs in any database of the cluster
version_added: 0.2.0
description:
  - Creates, changes or removes a named C(pg_cron) job. The module connects to the database that holds the
    C(pg_cron) extension (C(cron.database_name), O(db)) and schedules the command to run in O(database) with
    C(cron.schedule_in_database), so a job for the application database is kept where pg_cron lives.
  - The job is compared field by field (schedule, command, database, active) with C(cron.job); a difference is
    corrected with C(cron.alter_job), a missing job is created, nothing is done when they match.
author:
  - HingeCraft platform engineering (@hingecraft)
extends_documentation_fragment:
  - hingecraft.enterprise_db.postgres
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - The statements run in a transaction that is rolled back.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
options:
  name:
    description:
      - Job name (unique per user in C(cron.job)).
    type: str
    required: true
  schedule:
    description:
      - Cron schedule (C(*/5 * * * *)) or an interval pg_cron accepts (C(30 seconds)). Required when
        O(state=present).
    type: str
  command:
    description:
      - SQL the job runs (trusted input - it is SQL, not a value). Required when O(state=present).
    type: str
  database:
    description:
      - Database the command runs in. Default the database the module connects to.
    type: str
  active:
    description:
      - Whether the job runs.
    type: bool
    default: true
  state:
    description:
      - V(present) creates or corrects the job; V(absent) unschedules it.
    type: str
    default: present
    choices: [present, absent]
notes:
  - pg_cron runs the job as the user that scheduled it (the module's login user or O(session_role)).
seealso:
  - name: pg_cron
    description: Job scheduler for PostgreSQL.
    link: https://github.com/citusdata/pg_cron
'''

EXAMPLES = r'''
- name: Refresh the activity rollup every five minutes in the application database
  hingecraft.enterprise_db.pg_cron_job:
    db: postgres            # where the pg_cron extension lives (cron.database_name)
    name: hc_rollup_activity_daily
    schedule: "*/5 * * * *"
    command: SELECT app.activity_daily_refresh()
    database: hingecraft
'''

RETURN = r'''
changed:
  description: Whether a statement was needed.
  returned: always
  type: bool
queries:
  description: Statements executed (in check mode, those that would be executed).
  returned: always
  type: list
  elements: str
state:
  description: The job after the run (exists, schedule, command, database, active).
  returned: always
  type: dict
diff:
  description: Before and after, in diff mode.
  returned: when diff mode is on
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import (
    PgSession,
    ensure_psycopg,
    postgres_common_argument_spec,
    sql,
)

FIELDS = ('schedule', 'command', 'database', 'active')


def read_job(s, name):
    rows = s.query('SELECT jobid, schedule, command, database, active FROM cron.job '
                   'WHERE jobname = %s AND username = current_user', (name,))
    if not rows:
        return None, {'exists': False}
    r = rows[0]
    return r['jobid'], dict({'exists': True}, **{k: r[k] for k in FIELDS})


def plan(before, wanted):
    """'create', 'alter' (with the fields that differ), 'drop' or None."""
    if wanted is None:
        return ('drop', []) if before['exists'] else (None, [])
    if not before['exists']:
        return 'create', list(FIELDS)
    differ = [k for k in FIELDS if before[k] != wanted[k]]
    return ('alter', differ) if differ else (None, [])


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        name={'type': 'str', 'required': True},
        schedule={'type': 'str'},
        command={'type': 'str'},
        database={'type': 'str'},
        active={'type': 'bool', 'default': True},
        state={'type': 'str', 'default': 'present', 'choices': ['present', 'absent']},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('state', 'present', ('schedule', 'command'))])
    ensure_psycopg(module)
    p = module.params
    if not p['name'].strip():
        module.fail_json(msg='name must not be empty')
    for opt in ('schedule', 'command'):
        if p['state'] == 'present' and not p[opt].strip():
            module.fail_json(msg=f'{opt} must not be empty')

    s = PgSession(module)
    if s.extension_schema('pg_cron') is None:
        s.fail(f'pg_cron is not installed in database {s.conn.info.dbname}: connect to the database named by '
               'cron.database_name (option db)')
    wanted = None
    if p['state'] == 'present':
        database = p['database'] or s.conn.info.dbname
        if not s.query('SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s', (database,)):
            s.fail(f'database {database} does not exist')
        wanted = {'schedule': p['schedule'].strip(), 'command': p['command'].strip(), 'database': database,
                  'active': p['active']}
    jobid, before = read_job(s, p['name'])
    action, fields = plan(before, wanted)
    if action == 'create':
        values = (p['name'], wanted['schedule'], wanted['command'], wanted['database'], wanted['active'])
        s.execute(sql.SQL('SELECT cron.schedule_in_database({}, {}, {}, {}, active => {})').format(
            *(sql.Literal(x) for x in values)))
    elif action == 'alter':
        s.execute(sql.SQL('SELECT cron.alter_job({}, {})').format(sql.Literal(jobid), sql.SQL(', ').join(
            sql.SQL('{} => {}').format(sql.Identifier(k), sql.Literal(wanted[k])) for k in fields)))
    elif action == 'drop':
        s.execute(sql.SQL('SELECT cron.unschedule({})').format(sql.Literal(jobid)))
    changed = bool(s.queries)
    after = read_job(s, p['name'])[1]
    s.finish(changed)
    s.close()
    result = {'changed': changed, 'queries': s.queries, 'state': after}
    if module._diff:
        result['diff'] = {'before': before, 'after': after}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
