# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_partitioned_table
short_description: Manage a declaratively partitioned PostgreSQL table - range by day or month, list, hash, retention
version_added: 0.1.0
description:
  - Creates the partitioned table when it is missing (from O(columns), O(primary_key), O(strategy) and O(key)), or
    checks that an existing table is partitioned the same way.
  - Range partitioning by time (O(interval) V(day) or V(month)) - creates the partitions from O(start) up to
    O(premake) periods after the current one, named C(<table>_pYYYYMMDD) or C(<table>_pYYYYMM); with O(retention),
    detaches and drops the partitions older than that many periods before the current one.
  - Explicit range or list partitions (O(partitions)), hash partitions (O(hash_partitions)), and a default partition.
  - All input is checked before the first change - unknown columns or types, a primary key without the partition key,
    inverted or overlapping range bounds, a list value in two partitions - with a message that names the problem.
  - Partitions are matched by name; an existing partition is never re-bounded (that would move data). A partition
    that exists under a wanted name with other bounds (compared in PostgreSQL's canonical form) fails the run
    before any change, naming the partition and both bounds.
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
      - The partitioned table (C(schema.table) or C(table) for schema C(public)).
    type: str
    required: true
  columns:
    description:
      - Columns used when the table is created. Types are checked with C(to_regtype) and written as PostgreSQL
        formats them. Ignored (except for validation of the key) when the table exists.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Column name.
        type: str
        required: true
      type:
        description: Column type, for example V(bigint), V(timestamptz), V(numeric(12,2)).
        type: str
        required: true
      not_null:
        description: Add C(NOT NULL).
        type: bool
        default: false
      default:
        description: A C(DEFAULT) expression (SQL, trusted input), for example V(now()) or V('active').
        type: str
      check:
        description: A column C(CHECK) constraint expression (SQL, trusted input), for example V(amount > 0).
        type: str
  primary_key:
    description:
      - Primary key columns when the table is created; must include O(key).
    type: list
    elements: str
    default: []
  strategy:
    description:
      - Partitioning strategy.
    type: str
    required: true
    choices: [range, list, hash]
  key:
    description:
      - The partition key column.
    type: str
    required: true
  interval:
    description:
      - Time-based range partitioning by V(day) or V(month) (the key must be C(date), C(timestamp) or
        C(timestamptz)).
    type: str
    choices: [day, month]
  period_format:
    description:
      - C(strftime) format of the period in time partition names (C(<table>_p<period>)); only C(%Y), C(%m),
        C(%d), lower-case letters, digits and C(_) are allowed, and it must name every field of the interval.
      - Default V(%Y%m) for months and V(%Y%m%d) for days; for example V(%Y_%m) gives C(donations_p2026_03).
    type: str
  premake:
    description:
      - Number of future periods to create ahead of the current one.
    type: int
    default: 3
  start:
    description:
      - First period to create (C(YYYY-MM-DD)); default - the current period. Periods before the retention window
        are not created.
    type: str
  reference_date:
    description:
      - The date taken as "today" (C(YYYY-MM-DD)); default - the server's C(current_date).
    type: str
  retention:
    description:
      - Keep this many periods before the current one; older time partitions are detached and dropped.
    type: int
  retention_keep_table:
    description:
      - Only detach expired partitions (keep them as standalone tables).
    type: bool
    default: false
  partitions:
    description:
      - Explicit partitions for V(list) and V(range) (without O(interval)).
      - For V(list) give C(values) (a list); for V(range) give C(from) and C(to) (V(MINVALUE)/V(MAXVALUE) allowed).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Partition table name (in the schema of O(name)).
        type: str
        required: true
      values:
        description: List partition values.
        type: list
        elements: raw
      from:
        description: Range lower bound (inclusive).
        type: raw
      to:
        description: Range upper bound (exclusive).
        type: raw
  hash_partitions:
    description:
      - Number of hash partitions (C(<table>_h0) ...); the modulus of an existing hash-partitioned table cannot change.
    type: int
  default_partition:
    description:
      - Keep a default partition C(<table>_default) for rows that match no other partition.
    type: bool
    default: false
  partman:
    description:
      - Hand the time partitions to pg_partman (5.x) - needs O(strategy=range) and O(interval), plain lower-case names.
      - The module creates the parent table (when missing), the C(pg_partman) extension in O(partman_schema) (when
        missing), registers the table with C(create_parent()) (O(interval), O(premake), O(start),
        O(default_partition)), and keeps C(premake), C(retention) and C(retention_keep_table) in C(part_config) as
        given, running C(run_maintenance()) for the table after a registration or a change.
      - Partition names, bounds and the ongoing maintenance are pg_partman's (its background worker, or a scheduled
        C(CALL partman.run_maintenance_proc())). O(period_format), O(partitions), O(reference_date) do not apply.
    type: bool
    default: false
  partman_schema:
    description:
      - Schema of the C(pg_partman) extension.
    type: str
    default: partman
notes:
  - pg_partman is not required; the module covers premake and retention itself. With O(partman=true) pg_partman owns
    the time partitions instead (names, premake, retention, maintenance); let one of them own a table, not both.
seealso:
  - name: Table partitioning
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/ddl-partitioning.html
  - name: CREATE TABLE ... PARTITION OF
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/sql-createtable.html
'''

EXAMPLES = r'''
- name: Donations partitioned by month, 3 months ahead, 24 months kept
  hingecraft.enterprise_db.pg_partitioned_table:
    db: hingecraft
    name: app.donations
    columns:
      - {name: id, type: bigint, not_null: true}
      - {name: member_id, type: bigint, not_null: true}
      - {name: campaign, type: text}
      - {name: amount, type: "numeric(12,2)", not_null: true}
      - {name: donated_at, type: timestamptz, not_null: true}
    primary_key: [id, donated_at]
    strategy: range
    key: donated_at
    interval: month
    premake: 3
    retention: 24
    default_partition: true

- name: Members partitioned by country
  hingecraft.enterprise_db.pg_partitioned_table:
    db: hingecraft
    name: app.members
    columns:
      - {name: id, type: bigint, not_null: true}
      - {name: country, type: text, not_null: true}
    primary_key: [id, country]
    strategy: list
    key: country
    partitions:
      - {name: members_dach, values: [DE, AT, CH]}
      - {name: members_fr, values: [FR]}
    default_partition: true

- name: Sessions spread over 8 hash partitions
  hingecraft.enterprise_db.pg_partitioned_table:
    db: hingecraft
    name: app.sessions
    columns:
      - {name: id, type: uuid, not_null: true}
    strategy: hash
    key: id
    hash_partitions: 8
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
  description: The table after the run.
  returned: always
  type: dict
  contains:
    exists:
      description: Whether the table exists.
      type: bool
    partition_key:
      description: C(pg_get_partkeydef()).
      type: str
    partitions:
      description: Partitions (C(name), C(bound)) sorted by name.
      type: list
    partman:
      description: The table's C(part_config) row (C(partition_interval), C(premake), C(retention),
        C(retention_keep_table)) when pg_partman manages it, else null.
      type: dict
dropped:
  description: Partitions removed (or detached) by retention.
  returned: always
  type: list
  elements: str
diff:
  description: Before and after (keys of RV(state)), in diff mode.
  returned: when diff mode is on
  type: dict
'''

import datetime
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import (
    PgSession,
    ensure_psycopg,
    postgres_common_argument_spec,
    psycopg,
    split_qualified,
    sql,
)

PERIOD_FORMAT_RE = re.compile(r'^(%[Ymd]|[a-z0-9_])+$')
TYPE_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_ ."]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?(\s*\[\])*$')
TIME_TYPES = ('date', 'timestamp without time zone', 'timestamp with time zone')


# --- pure period arithmetic (unit tested) ------------------------------------------------------------------

def period_start(day, interval):
    return day if interval == 'day' else day.replace(day=1)


def add_periods(start, interval, n):
    if interval == 'day':
        return start + datetime.timedelta(days=n)
    month = start.month - 1 + n
    return datetime.date(start.year + month // 12, month % 12 + 1, 1)


def default_period_format(interval):
    return '%Y%m%d' if interval == 'day' else '%Y%m'


def check_period_format(fmt, interval):
    """An error message for an unusable period_format, or None."""
    if not PERIOD_FORMAT_RE.match(fmt or ''):
        return f'period_format {fmt!r} may only contain %Y, %m, %d, lower-case letters, digits and _'
    needed = ['%Y', '%m'] + (['%d'] if interval == 'day' else [])
    missing = [f for f in needed if f not in fmt]
    if missing:
        return f"period_format {fmt!r} must contain {', '.join(missing)} for interval {interval}"
    return None


def _base(table, interval, fmt):
    width = len(datetime.date(2000, 1, 1).strftime(fmt or default_period_format(interval)))
    return table.encode('utf-8')[:63 - width - 2].decode('utf-8', 'ignore')


def partition_name(table, start, interval, fmt=None):
    fmt = fmt or default_period_format(interval)
    return f'{_base(table, interval, fmt)}_p{start.strftime(fmt)}'


def parse_partition_name(table, name, interval, fmt=None):
    """Period start of a time partition name made by partition_name(), or None."""
    fmt = fmt or default_period_format(interval)
    m = re.fullmatch(re.escape(_base(table, interval, fmt)) + r'_p([a-z0-9_]+)', name)
    if not m:
        return None
    try:
        day = datetime.datetime.strptime(m.group(1), fmt).date()
    except ValueError:
        return None
    if day.strftime(fmt) != m.group(1) or (interval == 'month' and day.day != 1):
        return None
    return day


def wanted_periods(reference, interval, premake, start=None, retention=None):
    """Period starts to exist: from max(start, retention window start) to current + premake."""
    current = period_start(reference, interval)
    first = period_start(start, interval) if start else current
    if retention is not None:
        first = max(first, add_periods(current, interval, -retention))
    last = add_periods(current, interval, premake)
    out, p = [], first
    while p <= last:
        out.append(p)
        p = add_periods(p, interval, 1)
    return out


def expired(names, table, reference, interval, retention, fmt=None):
    """Time partitions whose period is older than the retention window."""
    cutoff = add_periods(period_start(reference, interval), interval, -retention)
    out = []
    for n in names:
        start = parse_partition_name(table, n, interval, fmt)
        if start is not None and start < cutoff:
            out.append(n)
    return sorted(out)


def fail_on_list_duplicates(partitions):
    seen = {}
    for part in partitions:
        for v in part.get('values') or []:
            key = str(v)
            if key in seen:
                raise ValueError(f'list value {v!r} is in two partitions: {seen[key]} and {part["name"]}')
            seen[key] = part['name']


# --- catalog -------------------------------------------------------------------------------------------------

def partman_config(s, partman_schema, schema, table):
    if not s.query("SELECT 1 FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
                   "WHERE e.extname = 'pg_partman' AND n.nspname = %s", (partman_schema,)):
        return None
    rows = s.query(sql.SQL('SELECT partition_interval, premake, retention, retention_keep_table FROM {} '
                           'WHERE parent_table = %s').format(sql.Identifier(partman_schema, 'part_config')),
                   (f'{schema}.{table}',))
    return rows[0] if rows else None


def partman_interval(interval, n=1):
    return f"{n} {'days' if interval == 'day' else 'months'}" if n != 1 else f'1 {interval}'


def read_state(s, schema, table, partman_schema=None):
    rel = s.relation(schema, table)
    if rel is None:
        return {'exists': False, 'partition_key': None, 'partitions': [], 'partman': None}, None
    key = s.query('SELECT pg_catalog.pg_get_partkeydef(%s) AS k', (rel['oid'],))[0]['k'] if rel['relkind'] == 'p' \
        else None
    parts = s.query(
        'SELECT c.relname AS name, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound '
        'FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid '
        'WHERE i.inhparent = %s ORDER BY c.relname', (rel['oid'],))
    pm = partman_config(s, partman_schema, schema, table) if partman_schema else None
    return {'exists': True, 'partition_key': key, 'partitions': parts, 'partman': pm}, rel


def resolve_type(s, text):
    """PostgreSQL's own spelling of a type name (format_type), or None when it is not a type."""
    with s.conn.cursor() as cur:
        cur.execute('SAVEPOINT hc_type')
        try:
            cur.execute('SELECT pg_catalog.format_type(pg_catalog.to_regtype(%s), pg_catalog.to_regtypemod(%s))',
                        (text, text))
            found = cur.fetchone()[0]
        except psycopg.Error:
            found = None
            cur.execute('ROLLBACK TO SAVEPOINT hc_type')
        cur.execute('RELEASE SAVEPOINT hc_type')
    return found


def normalise_bound(text, strategy):
    """Bound text for comparison: list values in sorted order (their order does not matter)."""
    if text is None or strategy != 'list':
        return text
    m = re.fullmatch(r'FOR VALUES IN \((.*)\)', text)
    if not m:
        return text
    return 'FOR VALUES IN ({})'.format(', '.join(sorted(v.strip() for v in m.group(1).split(','))))


def canonical_bounds(s, strategy, key_type, bounds):
    """PostgreSQL's own text for each wanted bound: temporary partitions of a temporary table with the same key
    type, in a rolled-back savepoint. bounds: {name: sql.Composable} -> {name: text}."""
    if not bounds:
        return {}
    out = {}
    with s.probe():
        s.query(sql.SQL('CREATE TEMPORARY TABLE hc_probe_parted (k {}) PARTITION BY {} (k)').format(
            sql.SQL(key_type), sql.SQL(strategy.upper())))
        for i, (name, bound) in enumerate(bounds.items()):
            probe = f'hc_probe_part_{i}'
            s.query(sql.SQL('CREATE TEMPORARY TABLE {} PARTITION OF hc_probe_parted {}').format(
                sql.Identifier(probe), bound))
            out[name] = s.query('SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS b FROM pg_catalog.pg_class c '
                                'WHERE c.relname = %s AND c.relnamespace = pg_catalog.pg_my_temp_schema()',
                                (probe,))[0]['b']
    return out


def bound_literal(value, key_type):
    if isinstance(value, str) and value.upper() in ('MINVALUE', 'MAXVALUE'):
        return sql.SQL(value.upper())
    return sql.SQL('{}::{}').format(sql.Literal(str(value)), sql.SQL(key_type))


def ensure_partman(s, p, schema, table, tbl, before, changed):
    """pg_partman mode: extension, create_parent() once, part_config kept as given, maintenance after a change."""
    pm = sql.Identifier(p['partman_schema'])
    if not s.extension_installed('pg_partman'):
        s.execute(sql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(pm))
        s.execute(sql.SQL('CREATE EXTENSION pg_partman SCHEMA {}').format(pm))
        changed = True
    parent = f'{schema}.{table}'
    config = partman_config(s, p['partman_schema'], schema, table)
    if config is None:
        if before['partitions']:
            s.fail(f"partman: {p['name']} already has partitions ({', '.join(x['name'] for x in before['partitions'])}) "
                   'that pg_partman did not create; register it by hand (partman.create_parent with a template) '
                   'or start from an empty parent')
        s.execute(sql.SQL('SELECT {}(p_parent_table := {}, p_control := {}, p_interval := {}, p_premake := {}, '
                          'p_start_partition := {}, p_default_table := {})').format(
            sql.Identifier(p['partman_schema'], 'create_parent'), sql.Literal(parent), sql.Literal(p['key']),
            sql.Literal(partman_interval(p['interval'])), sql.Literal(p['premake']),
            sql.Literal(p['start']) if p['start'] else sql.SQL('NULL'), sql.Literal(p['default_partition'])))
        changed = True
        config = partman_config(s, p['partman_schema'], schema, table)
    want_retention = partman_interval(p['interval'], p['retention']) if p['retention'] is not None else None
    current_retention = config['retention']
    if current_retention is not None and want_retention is not None:
        same = s.query('SELECT %s::interval = %s::interval AS same', (current_retention, want_retention))[0]['same']
    else:
        same = current_retention == want_retention
    if config['premake'] != p['premake'] or not same or config['retention_keep_table'] != p['retention_keep_table']:
        s.execute(sql.SQL('UPDATE {} SET premake = {}, retention = {}, retention_keep_table = {} '
                          'WHERE parent_table = {}').format(
            sql.Identifier(p['partman_schema'], 'part_config'), sql.Literal(p['premake']),
            sql.Literal(want_retention), sql.Literal(p['retention_keep_table']), sql.Literal(parent)))
        changed = True
    if changed:
        s.execute(sql.SQL('SELECT {}(p_parent_table := {})').format(
            sql.Identifier(p['partman_schema'], 'run_maintenance'), sql.Literal(parent)))
    return changed


def main():
    part_spec = {'name': {'type': 'str', 'required': True}, 'values': {'type': 'list', 'elements': 'raw'},
                 'from': {'type': 'raw'}, 'to': {'type': 'raw'}}
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        name={'type': 'str', 'required': True},
        columns={'type': 'list', 'elements': 'dict', 'default': [], 'options': {
            'name': {'type': 'str', 'required': True}, 'type': {'type': 'str', 'required': True},
            'not_null': {'type': 'bool', 'default': False}, 'default': {'type': 'str'},
            'check': {'type': 'str'}}},
        primary_key={'type': 'list', 'elements': 'str', 'default': [], 'no_log': False},
        strategy={'type': 'str', 'required': True, 'choices': ['range', 'list', 'hash']},
        key={'type': 'str', 'required': True, 'no_log': False},
        interval={'type': 'str', 'choices': ['day', 'month']},
        premake={'type': 'int', 'default': 3},
        period_format={'type': 'str'},
        start={'type': 'str'},
        reference_date={'type': 'str'},
        retention={'type': 'int'},
        retention_keep_table={'type': 'bool', 'default': False},
        partitions={'type': 'list', 'elements': 'dict', 'default': [], 'options': part_spec},
        hash_partitions={'type': 'int'},
        default_partition={'type': 'bool', 'default': False},
        partman={'type': 'bool', 'default': False},
        partman_schema={'type': 'str', 'default': 'partman'},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    ensure_psycopg(module)
    p = module.params
    # --- static validation
    try:
        schema, table = split_qualified(p['name'])
    except ValueError as e:
        module.fail_json(msg=f'name: {e}')
    strategy = p['strategy']
    if p['interval'] and strategy != 'range':
        module.fail_json(msg='interval needs strategy range')
    if p['retention'] is not None and not p['interval']:
        module.fail_json(msg='retention needs interval (time-based range partitioning)')
    if p['retention'] is not None and p['retention'] < 0:
        module.fail_json(msg='retention must be 0 or more')
    if p['premake'] < 0:
        module.fail_json(msg='premake must be 0 or more')
    if p['hash_partitions'] is not None and (strategy != 'hash' or p['hash_partitions'] < 1):
        module.fail_json(msg='hash_partitions needs strategy hash and a positive number')
    if strategy == 'hash' and p['partitions']:
        module.fail_json(msg='use hash_partitions, not partitions, with strategy hash')
    if strategy == 'hash' and p['default_partition']:
        module.fail_json(msg='a hash-partitioned table cannot have a default partition')
    if p['interval'] and p['partitions']:
        module.fail_json(msg='partitions and interval are exclusive for range partitioning')
    if p['partman']:
        if strategy != 'range' or not p['interval']:
            module.fail_json(msg='partman needs strategy range and interval day or month')
        if p['partitions'] or p['period_format'] or p['reference_date']:
            module.fail_json(msg='partman names and bounds the partitions itself: partitions, period_format and '
                                 'reference_date do not apply')
        plain = re.compile(r'^[a-z_][a-z0-9_]{0,62}$')
        names = list(split_qualified(p['name'])) + [p['key'], p['partman_schema']]
        if not all(plain.match(x or '') for x in names):
            module.fail_json(msg='partman needs plain lower-case names for the table, its schema, the key and '
                                 'partman_schema (pg_partman takes them as text)')
    if p['period_format'] is not None:
        if not p['interval']:
            module.fail_json(msg='period_format needs interval')
        problem = check_period_format(p['period_format'], p['interval'])
        if problem:
            module.fail_json(msg=problem)
    for part in p['partitions']:
        if strategy == 'list' and not part.get('values'):
            module.fail_json(msg=f"partition {part['name']}: list partitions need values")
        if strategy == 'range' and (part.get('from') is None or part.get('to') is None):
            module.fail_json(msg=f"partition {part['name']}: range partitions need from and to")
    try:
        fail_on_list_duplicates(p['partitions'])
    except ValueError as e:
        module.fail_json(msg=str(e))
    names = [part['name'] for part in p['partitions']]
    if len(set(names)) != len(names):
        module.fail_json(msg='partition names must be unique')
    dates = {}
    for opt in ('start', 'reference_date'):
        if p[opt]:
            try:
                dates[opt] = datetime.datetime.strptime(p[opt], '%Y-%m-%d').date()
            except ValueError:
                module.fail_json(msg=f'{opt} must be a date YYYY-MM-DD, got {p[opt]!r}')

    s = PgSession(module)
    pm_schema = p['partman_schema'] if p['partman'] else None
    if p['partman'] and not s.query("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_partman'") \
            and not s.extension_available('pg_partman'):
        s.fail('partman: the pg_partman extension is not available on this server (Debian: postgresql-17-partman)')
    if p['partman']:
        found = s.query("SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
                        "ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'")
        if found and found[0]['nspname'] != p['partman_schema']:
            s.fail(f"partman: pg_partman is installed in schema {found[0]['nspname']}, not {p['partman_schema']}")
    before, rel = read_state(s, schema, table, pm_schema)
    tbl = sql.Identifier(schema, table)

    # --- columns and types (existing table or the columns option)
    if rel is not None:
        if rel['relkind'] != 'p':
            s.fail(f"table {p['name']} exists and is not partitioned")
        cols = {c['name']: c['type'] for c in s.columns(schema, table)}
    else:
        if not p['columns']:
            s.fail(f"table {p['name']} does not exist and no columns are given to create it")
        cols = {}
        for c in p['columns']:
            if not TYPE_RE.match(c['type']):
                s.fail(f"unknown type {c['type']!r} for column {c['name']}")
            t = resolve_type(s, c['type'])
            if t is None:
                s.fail(f"unknown type {c['type']!r} for column {c['name']}")
            if c['name'] in cols:
                s.fail(f"column {c['name']} is listed twice")
            cols[c['name']] = t
    if p['key'] not in cols:
        s.fail(f"unknown column {p['key']!r} for the partition key (columns: {', '.join(cols)})")
    missing_pk = [c for c in p['primary_key'] if c not in cols]
    if missing_pk:
        s.fail(f"unknown column(s) in primary_key: {', '.join(missing_pk)}")
    if rel is None and p['primary_key'] and p['key'] not in p['primary_key']:
        s.fail(f"primary_key must include the partition key {p['key']}")
    key_type = cols[p['key']]
    if p['interval'] and key_type not in TIME_TYPES:
        s.fail(f"interval needs a date or timestamp key; {p['key']} is {key_type}")
    if rel is not None:
        want = f"{strategy.upper()} ({sql.Identifier(p['key']).as_string(s.conn)})"
        have = before['partition_key']
        if have.replace('"', '') != want.replace('"', ''):
            s.fail(f"table {p['name']} is partitioned by {have}, not {want}")

    # --- explicit range bounds: each from < to, no two overlap (PostgreSQL compares, in the key's type)
    if strategy == 'range' and p['partitions']:
        rows = sql.SQL(', ').join(sql.SQL('({}, {}, {})').format(
            sql.Literal(i), bound_literal(part['from'], key_type) if str(part['from']).upper() != 'MINVALUE'
            else sql.SQL('NULL::{}').format(sql.SQL(key_type)),
            bound_literal(part['to'], key_type) if str(part['to']).upper() != 'MAXVALUE'
            else sql.SQL('NULL::{}').format(sql.SQL(key_type))) for i, part in enumerate(p['partitions']))
        inverted = s.query(sql.SQL('SELECT i FROM (VALUES {}) v(i, f, t) WHERE f >= t ORDER BY i').format(rows))
        if inverted:
            part = p['partitions'][inverted[0]['i']]
            s.fail(f"partition {part['name']}: inverted range bounds, from {part['from']} is not below to {part['to']}")
        overlap = s.query(sql.SQL(
            'SELECT a.i AS a, b.i AS b FROM (VALUES {0}) a(i, f, t) JOIN (VALUES {0}) b(i, f, t) ON a.i < b.i '
            'AND (a.f IS NULL OR b.t IS NULL OR a.f < b.t) AND (b.f IS NULL OR a.t IS NULL OR b.f < a.t) '
            'ORDER BY 1, 2').format(rows))
        if overlap:
            a, b = p['partitions'][overlap[0]['a']], p['partitions'][overlap[0]['b']]
            s.fail(f"partitions {a['name']} and {b['name']} overlap")
    existing = {x['name']: x['bound'] for x in before['partitions']}
    if strategy == 'hash' and p['hash_partitions'] and existing:
        moduli = {m.group(1) for m in (re.search(r'modulus (\d+)', b or '', re.IGNORECASE) for b in existing.values()) if m}
        if moduli and moduli != {str(p['hash_partitions'])}:
            s.fail(f"table {p['name']} has hash partitions with modulus {', '.join(sorted(moduli))}; "
                   f"hash_partitions cannot change to {p['hash_partitions']}")

    changed = False
    # --- table
    if rel is None:
        defs = [sql.SQL('{} {}{}{}{}').format(
            sql.Identifier(c['name']), sql.SQL(cols[c['name']]), sql.SQL(' NOT NULL' if c['not_null'] else ''),
            sql.SQL(' DEFAULT ({})').format(sql.SQL(c['default'])) if c['default'] is not None else sql.SQL(''),
            sql.SQL(' CHECK ({})').format(sql.SQL(c['check'])) if c['check'] is not None else sql.SQL(''))
            for c in p['columns']]
        if p['primary_key']:
            defs.append(sql.SQL('PRIMARY KEY ({})').format(
                sql.SQL(', ').join(sql.Identifier(c) for c in p['primary_key'])))
        s.execute(sql.SQL('CREATE TABLE {} ({}) PARTITION BY {} ({})').format(
            tbl, sql.SQL(', ').join(defs), sql.SQL(strategy.upper()), sql.Identifier(p['key'])))
        changed = True

    def create_partition(name, bound):
        nonlocal changed
        s.execute(sql.SQL('CREATE TABLE {} PARTITION OF {} {}').format(sql.Identifier(schema, name), tbl, bound))
        existing[name] = None
        changed = True

    def finish(changed, after, dropped):
        s.finish(changed)
        s.close()
        result = {'changed': changed, 'queries': s.queries, 'state': after, 'dropped': dropped}
        if module._diff:
            result['diff'] = {'before': before, 'after': after}
        module.exit_json(**result)

    dropped = []
    if p['partman']:
        changed = ensure_partman(s, p, schema, table, tbl, before, changed)
        after = read_state(s, schema, table, pm_schema)[0]
        finish(changed, after, sorted({x['name'] for x in before['partitions']} - {x['name'] for x in after['partitions']}))

    # --- the wanted partitions, in creation order (the default partition last)
    fmt = p['period_format']
    wanted = {}
    reference = None
    if p['interval']:
        reference = dates.get('reference_date') or s.query('SELECT current_date AS d')[0]['d']
        for start in wanted_periods(reference, p['interval'], p['premake'], dates.get('start'), p['retention']):
            end = add_periods(start, p['interval'], 1)
            wanted[partition_name(table, start, p['interval'], fmt)] = sql.SQL('FOR VALUES FROM ({}) TO ({})').format(
                bound_literal(start.isoformat(), key_type), bound_literal(end.isoformat(), key_type))
    for part in p['partitions']:
        if strategy == 'list':
            wanted[part['name']] = sql.SQL('FOR VALUES IN ({})').format(sql.SQL(', ').join(
                bound_literal(v, key_type) for v in part['values']))
        else:
            wanted[part['name']] = sql.SQL('FOR VALUES FROM ({}) TO ({})').format(
                bound_literal(part['from'], key_type), bound_literal(part['to'], key_type))
    if strategy == 'hash' and p['hash_partitions']:
        n = p['hash_partitions']
        for r in range(n):
            wanted[f"{table.encode('utf-8')[:55].decode('utf-8', 'ignore')}_h{r}"] = sql.SQL(
                'FOR VALUES WITH (MODULUS {}, REMAINDER {})').format(sql.Literal(n), sql.Literal(r))
    default_name = f"{table.encode('utf-8')[:55].decode('utf-8', 'ignore')}_default"
    has_default = 'DEFAULT' in [b for b in existing.values() if b]
    if p['default_partition'] and not has_default:
        wanted[default_name] = sql.SQL('DEFAULT')

    # --- a wanted name that exists with other bounds: fail before any change (re-bounding would move data)
    present = {n: b for n, b in wanted.items() if n in existing}
    if present and rel is not None:
        canon = canonical_bounds(s, strategy, key_type, present)
        for n in sorted(canon):
            if normalise_bound(canon[n], strategy) != normalise_bound(existing[n], strategy):
                s.fail(f"partition {schema}.{n} exists with other bounds: {existing[n]} (wanted {canon[n]}); "
                       'the module does not re-bound partitions - move the data and rename or drop it by hand')
    if p['default_partition'] and default_name in existing and existing[default_name] != 'DEFAULT':
        s.fail(f'partition {schema}.{default_name} exists with bounds {existing[default_name]}, not DEFAULT')

    for name, bound in wanted.items():
        if name not in existing:
            create_partition(name, bound)

    # --- retention
    if p['interval'] and p['retention'] is not None:
        for name in expired(list(existing), table, reference, p['interval'], p['retention'], fmt):
            s.execute(sql.SQL('ALTER TABLE {} DETACH PARTITION {}').format(tbl, sql.Identifier(schema, name)))
            if not p['retention_keep_table']:
                s.execute(sql.SQL('DROP TABLE {}').format(sql.Identifier(schema, name)))
            dropped.append(name)
            changed = True

    finish(changed, read_state(s, schema, table, pm_schema)[0], dropped)


if __name__ == '__main__':
    main()
