# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_matview
short_description: Manage a PostgreSQL materialized view, its unique index, refreshes and a pg_cron refresh schedule
version_added: 0.1.0
description:
  - Creates a materialized view from O(query); when the definition changes (as canonicalised by PostgreSQL, through a
    temporary view in a rolled-back savepoint) builds the new one under a temporary name, then swaps it in within
    one transaction, keeping owner and privileges.
  - Maintains a unique index over O(unique_index) so that C(REFRESH MATERIALIZED VIEW CONCURRENTLY) can be used.
  - Refreshes now (O(refresh)) and/or schedules the refresh with pg_cron (O(schedule)).
author:
  - HingeCraft platform engineering (@hingecraft)
extends_documentation_fragment:
  - hingecraft.enterprise_db.postgres
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Every statement runs in one transaction that is rolled back in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
options:
  name:
    description:
      - The materialized view (C(schema.name) or C(name) for schema C(public)).
    type: str
    required: true
  query:
    description:
      - The C(SELECT) that defines the view (trusted input - it is SQL). Required when O(state=present).
    type: str
  with_data:
    description:
      - Populate the view when it is created (C(WITH DATA)); V(false) creates it C(WITH NO DATA).
    type: bool
    default: true
  unique_index:
    description:
      - Output columns of the unique index that C(REFRESH ... CONCURRENTLY) needs. Checked against the query's columns.
    type: list
    elements: str
    default: []
  unique_index_name:
    description:
      - Name of that index. Default - the view name with suffix C(_uidx).
    type: str
  refresh:
    description:
      - Refresh the view now (not needed right after it was created with data). A refresh always reports a change.
    type: bool
    default: false
  concurrently:
    description:
      - Use C(CONCURRENTLY) for refreshes (now and scheduled) when the unique index exists and the view is populated.
    type: bool
    default: true
  schedule:
    description:
      - A pg_cron schedule (for example V(*/15 * * * *) or V(5 0 * * *)) for refreshing the view. The job is named
        C(hc_refresh_<schema>.<name>). Needs the C(pg_cron) extension in this database (C(cron.database_name)).
    type: str
  schedule_state:
    description:
      - V(absent) removes the refresh job.
    type: str
    default: present
    choices: [present, absent]
  state:
    description:
      - V(absent) drops the view (and its refresh job).
    type: str
    default: present
    choices: [present, absent]
seealso:
  - name: CREATE MATERIALIZED VIEW
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/sql-creatematerializedview.html
  - name: REFRESH MATERIALIZED VIEW
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/sql-refreshmaterializedview.html
  - name: pg_cron
    description: Cron-based job scheduler for PostgreSQL.
    link: https://github.com/citusdata/pg_cron
'''

EXAMPLES = r'''
- name: Daily member statistics, refreshed concurrently every 15 minutes
  hingecraft.enterprise_db.pg_matview:
    db: hingecraft
    name: dashboard.member_daily_stats
    query: >-
      SELECT date_trunc('day', joined_at)::date AS day, country, count(*) AS members
      FROM app.members GROUP BY 1, 2
    unique_index: [day, country]
    schedule: '*/15 * * * *'

- name: Refresh now
  hingecraft.enterprise_db.pg_matview:
    db: hingecraft
    name: dashboard.member_daily_stats
    query: "{{ member_daily_stats_query }}"
    refresh: true
'''

RETURN = r'''
changed:
  description: Whether a statement was needed.
  returned: always
  type: bool
queries:
  description: Statements executed (in check mode, executed and rolled back).
  returned: always
  type: list
  elements: str
state:
  description: The view after the run.
  returned: always
  type: dict
  contains:
    exists:
      description: Whether the view exists.
      type: bool
    definition:
      description: C(pg_get_viewdef()) of the view.
      type: str
    populated:
      description: C(pg_class.relispopulated).
      type: bool
    unique_index:
      description: Columns of the unique index (empty when there is none).
      type: list
    schedule:
      description: The pg_cron job (C(jobname), C(schedule), C(command)) or null.
      type: dict
diff:
  description: Before and after (keys of RV(state)), in diff mode.
  returned: when diff mode is on
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import (
    PgSession,
    ensure_psycopg,
    postgres_common_argument_spec,
    split_qualified,
    sql,
)

PROBE_VIEW = 'hc_probe_matview'


def temp_name(name, suffix):
    raw = name.encode('utf-8')
    return raw[:63 - len(suffix.encode('utf-8'))].decode('utf-8', 'ignore') + suffix


def read_state(s, schema, name, index_name, job_name):
    rows = s.query(
        'SELECT c.oid, c.relispopulated AS populated, pg_catalog.pg_get_viewdef(c.oid) AS definition '
        'FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace '
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'm'", (schema, name))
    state = {'exists': False, 'definition': None, 'populated': False, 'unique_index': [], 'schedule': None}
    if rows:
        state.update(exists=True, definition=rows[0]['definition'], populated=rows[0]['populated'])
        state['unique_index'] = unique_index_columns(s, schema, index_name)
    if has_cron(s):
        jobs = s.query('SELECT jobname, schedule, command FROM cron.job WHERE jobname = %s', (job_name,))
        state['schedule'] = jobs[0] if jobs else None
    return state, (rows[0]['oid'] if rows else None)


def unique_index_columns(s, schema, index_name):
    rows = s.query(
        'SELECT a.attname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid '
        'JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace '
        'CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) '
        'JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum '
        'WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indpred IS NULL ORDER BY k.ord',
        (schema, index_name))
    return [r['attname'] for r in rows]


def has_cron(s):
    return bool(s.query("SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'cron' AND c.relname = 'job'"))


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        name={'type': 'str', 'required': True},
        query={'type': 'str'},
        with_data={'type': 'bool', 'default': True},
        unique_index={'type': 'list', 'elements': 'str', 'default': []},
        unique_index_name={'type': 'str'},
        refresh={'type': 'bool', 'default': False},
        concurrently={'type': 'bool', 'default': True},
        schedule={'type': 'str'},
        schedule_state={'type': 'str', 'default': 'present', 'choices': ['present', 'absent']},
        state={'type': 'str', 'default': 'present', 'choices': ['present', 'absent']},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('state', 'present', ('query',))])
    ensure_psycopg(module)
    p = module.params
    try:
        schema, name = split_qualified(p['name'])
    except ValueError as e:
        module.fail_json(msg=f'name: {e}')
    index_name = p['unique_index_name'] or temp_name(name, '_uidx')
    job_name = f'hc_refresh_{schema}.{name}'
    if p['schedule'] is not None and not p['schedule'].strip():
        module.fail_json(msg='schedule must not be empty; use schedule_state=absent to remove the job')
    if p['query'] is not None and not p['query'].strip():
        module.fail_json(msg='query must not be empty')

    s = PgSession(module)
    before, oid = read_state(s, schema, name, index_name, job_name)
    mv = sql.Identifier(schema, name)
    wants_cron = p['schedule'] is not None or (p['schedule_state'] == 'absent' and p['state'] == 'present')
    if wants_cron and not has_cron(s):
        s.fail('pg_cron is not installed in this database: CREATE EXTENSION pg_cron in the database named by '
               'cron.database_name, and manage the schedule there')
    changed = False
    refreshed = False

    if p['state'] == 'absent':
        if before['exists']:
            s.execute(sql.SQL('DROP MATERIALIZED VIEW {}').format(mv))
            changed = True
        if before['schedule'] is not None:
            s.execute(sql.SQL('SELECT cron.unschedule({})').format(sql.Literal(job_name)))
            changed = True
    else:
        query = sql.SQL(p['query'].strip().rstrip(';'))
        # canonical form of the wanted definition, and its output columns
        with s.probe():
            s.query(sql.SQL('CREATE TEMPORARY VIEW {} AS {}').format(sql.Identifier(PROBE_VIEW), query))
            probe = s.query("SELECT c.oid, pg_catalog.pg_get_viewdef(c.oid) AS definition FROM pg_catalog.pg_class c "
                            'WHERE c.relname = %s AND c.relnamespace = pg_catalog.pg_my_temp_schema()',
                            (PROBE_VIEW,))[0]
            out_cols = [c['name'] for c in s.query(
                'SELECT attname AS name FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0 '
                'ORDER BY attnum', (probe['oid'],))]
        missing = [c for c in p['unique_index'] if c not in out_cols]
        if missing:
            s.fail(f"unknown column(s) in unique_index: {', '.join(missing)} (the query returns {', '.join(out_cols)})")
        if len(set(out_cols)) != len(out_cols):
            s.fail('the query returns duplicate column names: ' + ', '.join(out_cols))
        index_sql = None
        if p['unique_index']:
            index_sql = sql.SQL('CREATE UNIQUE INDEX {} ON {} ({})').format(
                sql.Identifier(index_name), mv, sql.SQL(', ').join(sql.Identifier(c) for c in p['unique_index']))
        data = sql.SQL(' WITH DATA' if p['with_data'] else ' WITH NO DATA')
        if not before['exists']:
            s.execute(sql.SQL('CREATE MATERIALIZED VIEW {} AS {}').format(mv, query) + data)
            if index_sql is not None:
                s.execute(index_sql)
            changed = True
            refreshed = p['with_data']
        else:
            if before['definition'] != probe['definition']:
                # build the replacement next to the old view, then swap within this transaction
                new_name = temp_name(name, '_hcnew')
                new_mv = sql.Identifier(schema, new_name)
                acl = s.query('SELECT a.grantee, a.privilege_type, pg_catalog.pg_get_userbyid(c.relowner) AS owner '
                              'FROM pg_catalog.pg_class c LEFT JOIN LATERAL aclexplode(c.relacl) a ON true '
                              'WHERE c.oid = %s', (oid,))
                s.execute(sql.SQL('DROP MATERIALIZED VIEW IF EXISTS {}').format(new_mv))
                s.execute(sql.SQL('CREATE MATERIALIZED VIEW {} AS {}').format(new_mv, query) + data)
                deps = s.query(
                    "SELECT DISTINCT d.classid::regclass::text AS kind, "
                    "coalesce((SELECT r.ev_class::regclass::text FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid), "
                    "d.objid::text) AS dependent FROM pg_catalog.pg_depend d WHERE d.refobjid = %s "
                    "AND d.deptype = 'n' AND d.classid = 'pg_catalog.pg_rewrite'::regclass", (oid,))
                deps = [d['dependent'] for d in deps if d['dependent'] != f'{schema}.{name}']
                if deps:
                    s.fail(f'cannot replace materialized view {schema}.{name}: other objects depend on it: '
                           + ', '.join(deps))
                s.execute(sql.SQL('DROP MATERIALIZED VIEW {}').format(mv))
                s.execute(sql.SQL('ALTER MATERIALIZED VIEW {} RENAME TO {}').format(new_mv, sql.Identifier(name)))
                owner = acl[0]['owner'] if acl else None
                if owner and owner != s.query('SELECT current_user AS u')[0]['u']:
                    s.execute(sql.SQL('ALTER MATERIALIZED VIEW {} OWNER TO {}').format(mv, sql.Identifier(owner)))
                for a in acl:
                    if a['grantee'] is None or a['privilege_type'] is None:
                        continue
                    grantee = s.query('SELECT CASE WHEN %s::oid = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(%s) '
                                      'END AS r', (a['grantee'], a['grantee']))[0]['r']
                    if grantee == owner:
                        continue
                    s.execute(sql.SQL('GRANT {} ON {} TO {}').format(
                        sql.SQL(a['privilege_type']), mv,
                        sql.SQL('PUBLIC') if grantee is None else sql.Identifier(grantee)))
                if index_sql is not None:
                    s.execute(index_sql)
                changed = True
                refreshed = p['with_data']
            elif p['unique_index'] and before['unique_index'] != p['unique_index']:
                if s.query('SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = '
                           'c.relnamespace WHERE n.nspname = %s AND c.relname = %s', (schema, index_name)):
                    s.execute(sql.SQL('DROP INDEX {}').format(sql.Identifier(schema, index_name)))
                s.execute(index_sql)
                changed = True
        if p['refresh'] and not refreshed:
            populated = s.query('SELECT relispopulated AS p FROM pg_catalog.pg_class WHERE oid = %s::regclass',
                                (mv.as_string(s.conn),))[0]['p']
            concurrent = p['concurrently'] and populated and bool(p['unique_index'])
            s.execute(sql.SQL('REFRESH MATERIALIZED VIEW {}{}').format(
                sql.SQL('CONCURRENTLY ' if concurrent else ''), mv))
            changed = True
        if p['schedule'] is not None and p['schedule_state'] == 'present':
            command = sql.SQL('REFRESH MATERIALIZED VIEW {}{}').format(
                sql.SQL('CONCURRENTLY ' if (p['concurrently'] and p['unique_index']) else ''), mv).as_string(s.conn)
            job = before['schedule']
            if job is None or job['schedule'] != p['schedule'] or job['command'] != command:
                s.execute(sql.SQL('SELECT cron.schedule({}, {}, {})').format(
                    sql.Literal(job_name), sql.Literal(p['schedule']), sql.Literal(command)))
                changed = True
        elif p['schedule_state'] == 'absent' and before['schedule'] is not None:
            s.execute(sql.SQL('SELECT cron.unschedule({})').format(sql.Literal(job_name)))
            changed = True

    after = read_state(s, schema, name, index_name, job_name)[0]
    s.finish(changed)
    s.close()
    result = {'changed': changed, 'queries': s.queries, 'state': after}
    if module._diff:
        result['diff'] = {'before': before, 'after': after}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
