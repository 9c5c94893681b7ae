# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_hypertable
short_description: Turn a table into a TimescaleDB hypertable with a chunk interval and chunk retention
version_added: 0.2.0
description:
  - Makes an existing table (empty or not) a TimescaleDB hypertable partitioned by O(time_column) in chunks of
    O(chunk_interval) (C(create_hypertable) with C(by_range), rows moved into chunks when O(migrate_data)).
  - A hypertable whose chunk interval differs is corrected with C(set_chunk_time_interval) (new chunks only).
  - Retention works on the Apache edition that Debian ships (no policies there) - RV(retention_command) is the
    C(drop_chunks) statement to schedule (for example with M(hingecraft.enterprise_db.pg_cron_job));
    O(enforce_retention=true) also runs it now when chunks older than O(retention) exist.
author:
  - HingeCraft platform engineering (@hingecraft)
extends_documentation_fragment:
  - hingecraft.enterprise_db.postgres
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - The statements run in a transaction that is rolled back (with O(migrate_data) that copies the rows once).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
options:
  name:
    description:
      - The table (C(schema.table) or C(table) for schema C(public)). It must exist.
    type: str
    required: true
  time_column:
    description:
      - The C(timestamptz), C(timestamp) or C(date) column that partitions the hypertable. Unique constraints
        of the table must include it (a TimescaleDB rule).
    type: str
    required: true
  chunk_interval:
    description:
      - Time range of one chunk, as a PostgreSQL interval (C(1 day), C(7 days)).
    type: str
    default: 7 days
  migrate_data:
    description:
      - Move rows of a table that is not empty into chunks. Without it a table with rows is refused.
    type: bool
    default: true
  retention:
    description:
      - Keep chunks whose data is newer than this interval (C(90 days)); older chunks are dropped by
        RV(retention_command). Omit to keep everything.
    type: str
  enforce_retention:
    description:
      - Run RV(retention_command) now when chunks older than O(retention) exist.
    type: bool
    default: false
notes:
  - The TimescaleDB extension must be installed in the database and C(timescaledb) preloaded.
  - Debian 13's TimescaleDB is the Apache edition (C(timescaledb.license = apache)); RV(edition) reports it.
seealso:
  - name: create_hypertable
    description: TimescaleDB API reference.
    link: https://docs.timescale.com/api/latest/hypertable/create_hypertable/
  - name: drop_chunks
    description: TimescaleDB API reference.
    link: https://docs.timescale.com/api/latest/hypertable/drop_chunks/
  - module: hingecraft.enterprise_db.pg_cron_job
  - module: hingecraft.enterprise_db.pg_ts_rollup
'''

EXAMPLES = r'''
- name: Member activity in daily chunks, 400 days kept
  hingecraft.enterprise_db.pg_hypertable:
    db: hingecraft
    name: app.member_activity
    time_column: occurred_at
    chunk_interval: 1 day
    retention: 400 days
  register: activity

- name: Drop old chunks every night
  hingecraft.enterprise_db.pg_cron_job:
    db: postgres
    name: hc_retention_member_activity
    schedule: "15 3 * * *"
    command: "{{ activity.retention_command }}"
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
  description: hypertable (bool), time_column, chunk_interval (as PostgreSQL prints it), chunks (count).
  returned: always
  type: dict
retention_command:
  description: The C(drop_chunks) statement that enforces O(retention) (empty without O(retention)).
  returned: always
  type: str
  sample: SELECT "public".drop_chunks('"app"."member_activity"'::regclass, older_than => '400 days'::interval)
edition:
  description: C(timescaledb.license) of the server (V(apache) or V(timescale)).
  returned: always
  type: str
diff:
  description: Before and after (as RV(state)), in diff mode.
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

TIME_TYPES = ('timestamp with time zone', 'timestamp without time zone', 'date')


def read_state(s, schema, name):
    rows = s.query('SELECT d.column_name::text AS time_column, d.time_interval::text AS chunk_interval, '
                   "(SELECT count(*) FROM timescaledb_information.chunks c WHERE c.hypertable_schema = %s "
                   'AND c.hypertable_name = %s)::int AS chunks '
                   'FROM timescaledb_information.dimensions d WHERE d.hypertable_schema = %s '
                   'AND d.hypertable_name = %s AND d.dimension_number = 1', (schema, name, schema, name))
    if not rows:
        return {'hypertable': False}
    return dict({'hypertable': True}, **rows[0])


def retention_command(ts, regclass_text, retention):
    return sql.SQL('SELECT {}.drop_chunks({}::regclass, older_than => {}::interval)').format(
        sql.Identifier(ts), sql.Literal(regclass_text), sql.Literal(retention))


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        name={'type': 'str', 'required': True},
        time_column={'type': 'str', 'required': True},
        chunk_interval={'type': 'str', 'default': '7 days'},
        migrate_data={'type': 'bool', 'default': True},
        retention={'type': 'str'},
        enforce_retention={'type': 'bool', 'default': False},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    ensure_psycopg(module)
    p = module.params
    try:
        schema, name = split_qualified(p['name'])
    except ValueError as e:
        module.fail_json(msg=f'name: {e}')
    if p['enforce_retention'] and not p['retention']:
        module.fail_json(msg='enforce_retention needs retention')

    s = PgSession(module)
    ts = s.extension_schema('timescaledb')
    if ts is None:
        s.fail(f'the timescaledb extension is not installed in database {s.conn.info.dbname}')
    edition = s.query("SELECT current_setting('timescaledb.license', true) AS l")[0]['l'] or 'apache'
    for opt in ('chunk_interval', 'retention'):
        if p[opt] is not None:
            err = s.try_query('SELECT %s::interval', (p[opt],))[1]
            if err is not None:
                s.fail(f'{opt}: {p[opt]!r} is not an interval: {err}')
    rel = s.relation(schema, name)
    if rel is None:
        s.fail(f'table {schema}.{name} does not exist')
    if rel['relkind'] != 'r':
        s.fail(f'{schema}.{name} is not a plain table (relkind {rel["relkind"]}); a hypertable partitions itself')
    col = [c for c in s.columns(schema, name) if c['name'] == p['time_column']]
    if not col:
        s.fail(f'table {schema}.{name} has no column {p["time_column"]}')
    if col[0]['type'] not in TIME_TYPES:
        s.fail(f'time_column {p["time_column"]} is {col[0]["type"]}, not one of {", ".join(TIME_TYPES)}')
    table = sql.Identifier(schema, name)
    regclass_text = table.as_string(s.conn)
    before = read_state(s, schema, name)

    if not before['hypertable']:
        if not p['migrate_data'] and s.query(sql.SQL('SELECT EXISTS (SELECT 1 FROM {}) AS e').format(table))[0]['e']:
            s.fail(f'table {schema}.{name} has rows: set migrate_data to move them into chunks')
        s.execute(sql.SQL('SELECT {}.create_hypertable({}::regclass, {}.by_range({}, {}::interval), '
                          'migrate_data => {})').format(
            sql.Identifier(ts), sql.Literal(regclass_text), sql.Identifier(ts), sql.Literal(p['time_column']),
            sql.Literal(p['chunk_interval']), sql.Literal(p['migrate_data'])))
    else:
        if before['time_column'] != p['time_column']:
            s.fail(f'{schema}.{name} is a hypertable on column {before["time_column"]}, not {p["time_column"]}')
        same = s.query('SELECT %s::interval = %s::interval AS same', (before['chunk_interval'],
                                                                      p['chunk_interval']))[0]['same']
        if not same:
            s.execute(sql.SQL('SELECT {}.set_chunk_time_interval({}::regclass, {}::interval)').format(
                sql.Identifier(ts), sql.Literal(regclass_text), sql.Literal(p['chunk_interval'])))
    command = retention_command(ts, regclass_text, p['retention']) if p['retention'] else None
    if command is not None and p['enforce_retention']:
        old = s.query(sql.SQL('SELECT count(*)::int AS n FROM {}.show_chunks({}::regclass, older_than => {}::interval)')
                      .format(sql.Identifier(ts), sql.Literal(regclass_text), sql.Literal(p['retention'])))
        if old[0]['n'] > 0:
            s.execute(command)
    changed = bool(s.queries)
    after = read_state(s, schema, name)
    command_text = command.as_string(s.conn) if command is not None else ''
    s.finish(changed)
    s.close()
    result = {'changed': changed, 'queries': s.queries, 'state': after, 'edition': edition,
              'retention_command': command_text}
    if module._diff:
        result['diff'] = {'before': before, 'after': after}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
