# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_ts_rollup
short_description: A time_bucket rollup table kept fresh incrementally, without continuous aggregates
version_added: 0.2.0
description:
  - Creates a rollup table C(bucket, group_by..., aggregates...) of a time-series table (a TimescaleDB hypertable
    or any table) and a refresh function C(<name>_refresh(rebuild boolean DEFAULT false) RETURNS bigint).
  - The refresh recomputes only the buckets from the newest bucket in the rollup minus O(lookback) onwards (rows
    that arrive late within O(lookback) are counted), in one transaction under an EXCLUSIVE lock on the rollup
    (readers go on, two refreshes do not interleave). C(rebuild => true) recounts everything.
  - This works on the Apache edition of TimescaleDB that Debian ships, where continuous aggregates are not
    available. Schedule the refresh with M(hingecraft.enterprise_db.pg_cron_job) (RV(refresh_command)).
  - The table's columns come from the query itself (C(CREATE TABLE ... AS ... WITH NO DATA)); when the wanted
    columns differ from the table's, the rollup (derived data) is dropped, recreated and refilled.
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
      - The rollup table (C(schema.table) or C(table) for schema C(public)); the refresh function is
        C(<name>_refresh) in the same schema.
    type: str
    required: true
  source:
    description:
      - The time-series table read.
    type: str
    required: true
  time_column:
    description:
      - Time column of O(source).
    type: str
    required: true
  bucket:
    description:
      - Bucket width, a PostgreSQL interval (C(1 hour), C(1 day)).
    type: str
    default: 1 day
  group_by:
    description:
      - Columns of O(source) kept as dimensions of the rollup.
    type: list
    elements: str
    default: []
  aggregates:
    description:
      - 'Output column name -> aggregate expression over O(source) (SQL written by the schema''s authors,
        trusted), for example C({events: count(*), members: count(DISTINCT member_id)}).'
    type: dict
    required: true
  lookback:
    description:
      - How far before the newest bucket a refresh recomputes (late rows within it are counted).
    type: str
    default: 1 day
  refresh:
    description:
      - Run the refresh now (incremental); a new or rebuilt rollup is always filled.
    type: bool
    default: false
notes:
  - The rollup's primary key is C(bucket) plus O(group_by). A row older than O(lookback) behind the newest bucket
    is not seen by an incremental refresh; C(SELECT <name>_refresh(true)) recounts everything.
  - Needs the TimescaleDB extension (C(time_bucket)); the source need not be a hypertable.
seealso:
  - name: time_bucket
    description: TimescaleDB API reference.
    link: https://docs.timescale.com/api/latest/hyperfunctions/time_bucket/
  - module: hingecraft.enterprise_db.pg_hypertable
  - module: hingecraft.enterprise_db.pg_cron_job
'''

EXAMPLES = r'''
- name: Daily activity per member kind
  hingecraft.enterprise_db.pg_ts_rollup:
    db: hingecraft
    name: app.member_activity_daily
    source: app.member_activity
    time_column: occurred_at
    bucket: 1 day
    group_by: [tenant_id, kind]
    aggregates: {events: count(*), members: count(DISTINCT member_id)}
    lookback: 2 days
  register: rollup
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
  description: exists, columns (name and type), function (whether the refresh function is current).
  returned: always
  type: dict
refresh_command:
  description: The statement to schedule, e.g. C(SELECT "app"."member_activity_daily_refresh"()).
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

PROBE = 'hc_probe_rollup'


def temp_name(name, suffix):
    raw = name.encode('utf-8')
    return raw[:63 - len(suffix.encode('utf-8'))].decode('utf-8', 'ignore') + suffix


def select_sql(bucket_fn, p, source, since=None):
    """SELECT bucket, group_by..., aggregates... FROM source [WHERE time >= since] GROUP BY bucket, group_by."""
    tc = sql.Identifier(p['time_column'])
    width = sql.Literal(p['bucket'])
    cols = [sql.SQL('{}({}::interval, {}) AS {}').format(bucket_fn, width, tc, sql.Identifier('bucket'))]
    cols += [sql.Identifier(g) for g in p['group_by']]
    cols += [sql.SQL('{} AS {}').format(sql.SQL(expr), sql.Identifier(k)) for k, expr in p['aggregates'].items()]
    q = sql.SQL('SELECT {} FROM {}').format(sql.SQL(', ').join(cols), source)
    if since is not None:
        q += sql.SQL(' WHERE {} >= {}').format(tc, since)
    return q + sql.SQL(' GROUP BY {}').format(sql.SQL(', ').join(
        sql.SQL(str(i)) for i in range(1, 2 + len(p['group_by']))))


def function_body(bucket_fn, p, rollup, source):
    since = sql.Identifier('since')
    insert = sql.SQL('INSERT INTO {} ').format(rollup) + select_sql(bucket_fn, p, source, since)
    return sql.SQL('''
DECLARE
  since {rollup}.bucket%TYPE;
  n bigint;
BEGIN
  LOCK TABLE {rollup} IN EXCLUSIVE MODE;
  IF NOT rebuild THEN
    SELECT max(bucket) - {lookback}::interval INTO since FROM {rollup};
  END IF;
  IF since IS NULL THEN
    TRUNCATE {rollup};
    INSERT INTO {rollup} {select_all};
  ELSE
    since := {bucket_fn}({width}::interval, since);
    DELETE FROM {rollup} WHERE bucket >= since;
    {insert};
  END IF;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
''').format(rollup=rollup, lookback=sql.Literal(p['lookback']), select_all=select_sql(bucket_fn, p, source),
            bucket_fn=bucket_fn, width=sql.Literal(p['bucket']), insert=insert)


def read_state(s, schema, name, fn_name, body):
    rel = s.relation(schema, name)
    cols = [{'name': c['name'], 'type': c['type']} for c in s.columns(schema, name)] if rel else []
    src = s.query("SELECT p.prosrc FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
                  "WHERE n.nspname = %s AND p.proname = %s AND pg_catalog.pg_get_function_identity_arguments(p.oid) "
                  "= 'rebuild boolean'", (schema, fn_name))
    return {'exists': rel is not None, 'columns': cols, 'function': bool(src) and src[0]['prosrc'] == body}


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        name={'type': 'str', 'required': True},
        source={'type': 'str', 'required': True},
        time_column={'type': 'str', 'required': True},
        bucket={'type': 'str', 'default': '1 day'},
        group_by={'type': 'list', 'elements': 'str', 'default': []},
        aggregates={'type': 'dict', 'required': True},
        lookback={'type': 'str', 'default': '1 day'},
        refresh={'type': 'bool', 'default': False},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    ensure_psycopg(module)
    p = module.params
    try:
        schema, name = split_qualified(p['name'])
        src_schema, src_name = split_qualified(p['source'])
    except ValueError as e:
        module.fail_json(msg=f'name/source: {e}')
    if not p['aggregates']:
        module.fail_json(msg='aggregates must name at least one output column')
    outputs = ['bucket'] + list(p['group_by']) + list(p['aggregates'])
    if len(set(outputs)) != len(outputs):
        module.fail_json(msg='output columns must be unique (bucket, group_by, aggregates): ' + ', '.join(outputs))
    fn_name = temp_name(name, '_refresh')

    s = PgSession(module)
    for opt in ('bucket', 'lookback'):
        err = s.try_query('SELECT %s::interval', (p[opt],))[1]
        if err is not None:
            s.fail(f'{opt}: {p[opt]!r} is not an interval: {err}')
    if s.relation(src_schema, src_name) is None:
        s.fail(f'source table {src_schema}.{src_name} does not exist')
    have = {c['name'] for c in s.columns(src_schema, src_name)}
    missing = [c for c in [p['time_column']] + list(p['group_by']) if c not in have]
    if missing:
        s.fail(f'unknown column(s) in source {src_schema}.{src_name}: {", ".join(missing)}')
    ts = s.extension_schema('timescaledb')
    if ts is None:
        s.fail(f'the timescaledb extension (time_bucket) is not installed in database {s.conn.info.dbname}')
    bucket_fn = sql.SQL('{}.time_bucket').format(sql.Identifier(ts))
    rollup, source = sql.Identifier(schema, name), sql.Identifier(src_schema, src_name)
    body = function_body(bucket_fn, p, rollup, source).as_string(s.conn)
    before = read_state(s, schema, name, fn_name, body)

    with s.probe():
        err = s.try_query(sql.SQL('CREATE TEMPORARY TABLE {} AS {} WITH NO DATA').format(
            sql.Identifier(PROBE), select_sql(bucket_fn, p, source)))[1]
        if err is not None:
            s.fail(f'the rollup query is rejected: {err}')
        oid = s.query("SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname = %s "
                      "AND c.relnamespace = pg_catalog.pg_my_temp_schema()", (PROBE,))[0]['oid']
        wanted_cols = s.query('SELECT attname AS name, pg_catalog.format_type(atttypid, atttypmod) AS type '
                              'FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0 ORDER BY attnum', (oid,))

    rebuild = before['exists'] and before['columns'] != wanted_cols
    if rebuild:
        s.execute(sql.SQL('DROP TABLE {} CASCADE').format(rollup))
    fill = rebuild or not before['exists']
    if fill:
        s.execute(sql.SQL('CREATE TABLE {} AS {} WITH NO DATA').format(rollup, select_sql(bucket_fn, p, source)))
        s.execute(sql.SQL('ALTER TABLE {} ADD PRIMARY KEY ({})').format(
            rollup, sql.SQL(', ').join(sql.Identifier(c) for c in ['bucket'] + list(p['group_by']))))
    if fill or not before['function']:
        s.execute(sql.SQL('CREATE OR REPLACE FUNCTION {}(rebuild boolean DEFAULT false) RETURNS bigint '
                          'LANGUAGE plpgsql AS {}').format(sql.Identifier(schema, fn_name), sql.Literal(body)))
    command = sql.SQL('SELECT {}()').format(sql.Identifier(schema, fn_name)).as_string(s.conn)
    if fill or p['refresh']:
        s.execute(command)
    changed = bool(s.queries)
    after = read_state(s, schema, name, fn_name, body)
    s.finish(changed)
    s.close()
    result = {'changed': changed, 'queries': s.queries, 'state': after, 'refresh_command': command}
    if module._diff:
        result['diff'] = {'before': before, 'after': after}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
