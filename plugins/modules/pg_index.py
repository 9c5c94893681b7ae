# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_index
short_description: Manage a PostgreSQL index idempotently, rebuilding a changed definition without a gap
version_added: 0.1.0
description:
  - Creates, rebuilds or drops one index (btree, hash, gin, gist, brin, spgist, hnsw, ivfflat) with operator
    classes, sort order, partial predicate (C(WHERE)), covering columns (C(INCLUDE)) and storage parameters.
  - The desired definition is canonicalised by PostgreSQL itself (the index is built on an empty temporary copy
    of the table inside a savepoint that is rolled back) and compared with the catalog; nothing is done when they
    match.
  - A changed definition is rebuilt without a moment without an index - the new index is built under a temporary
    name (C(CONCURRENTLY) by default), then the old one is dropped and the new one renamed.
  - An index left invalid by an interrupted concurrent build is rebuilt the same way.
author:
  - HingeCraft platform engineering (@hingecraft)
extends_documentation_fragment:
  - hingecraft.enterprise_db.postgres
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Statements that run inside a transaction are executed and rolled back; C(CONCURRENTLY) statements cannot run
        in a transaction, so in check mode they are only reported in RV(queries).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
options:
  name:
    description:
      - Name of the index. It lives in the schema of O(table).
    type: str
    required: true
  table:
    description:
      - The table (C(schema.table) or C(table) for schema C(public)). Required when O(state=present).
    type: str
  columns:
    description:
      - Key columns, in order. A string is a column name; a dictionary describes a column or an expression with its
        operator class and ordering.
      - Every column name is checked against the table before anything is changed.
    type: list
    elements: raw
    default: []
  include:
    description:
      - Non-key columns stored in the index (C(INCLUDE)); btree, gist and spgist only.
    type: list
    elements: str
    default: []
  method:
    description:
      - Index access method. V(hnsw) and V(ivfflat) need the C(vector) extension.
    type: str
    default: btree
    choices: [btree, hash, gin, gist, spgist, brin, hnsw, ivfflat]
  unique:
    description:
      - Create a unique index.
    type: bool
    default: false
  where:
    description:
      - Predicate of a partial index, as an SQL expression (trusted input - it is SQL, not a value).
    type: str
  storage_parameters:
    description:
      - 'Index storage parameters (C(WITH)), for example C({fillfactor: 90}) or C({m: 16, ef_construction: 64}).
        Values are passed as literals.'
    type: dict
    default: {}
  concurrent:
    description:
      - Build and drop with C(CONCURRENTLY), so writes to the table are not blocked.
      - Ignored for partitioned tables, where PostgreSQL does not support it.
    type: bool
    default: true
  state:
    description:
      - V(present) creates or rebuilds the index; V(absent) drops it.
    type: str
    default: present
    choices: [present, absent]
notes:
  - 'Dictionary form of O(columns): C(name) (a column) or C(expression) (SQL, trusted input), and optionally
    C(opclass), C(order) (V(asc)/V(desc)), C(nulls) (V(first)/V(last)).'
  - Indexes that back a constraint (primary key, unique or exclusion constraint) are refused; manage the constraint.
seealso:
  - name: CREATE INDEX
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/sql-createindex.html
  - name: Building indexes concurrently
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY
'''

EXAMPLES = r'''
- name: Partial covering btree index
  hingecraft.enterprise_db.pg_index:
    db: hingecraft
    name: members_email_active_idx
    table: app.members
    columns: [email]
    include: [display_name]
    unique: true
    where: deleted_at IS NULL

- name: Trigram index for fuzzy name search
  hingecraft.enterprise_db.pg_index:
    db: hingecraft
    name: clubs_name_trgm
    table: app.clubs
    method: gin
    columns:
      - name: name
        opclass: gin_trgm_ops

- name: HNSW vector index with parameters
  hingecraft.enterprise_db.pg_index:
    db: hingecraft
    name: messages_embedding_hnsw
    table: app.messages
    method: hnsw
    columns:
      - name: embedding
        opclass: vector_cosine_ops
    storage_parameters: {m: 16, ef_construction: 64}

- name: Expression index, newest first
  hingecraft.enterprise_db.pg_index:
    db: hingecraft
    name: members_lower_email_idx
    table: app.members
    columns:
      - expression: lower(email)
      - name: created_at
        order: desc

- name: Drop an index
  hingecraft.enterprise_db.pg_index:
    db: hingecraft
    name: old_idx
    state: absent
    table: app.members
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
  sample: ['CREATE INDEX CONCURRENTLY "i1" ON "app"."t" USING btree ("a")']
state:
  description: The index after the run (in check mode, as it would be).
  returned: always
  type: dict
  contains:
    exists:
      description: Whether the index exists.
      type: bool
    definition:
      description: C(pg_get_indexdef()) of the index (absent in check mode for a new definition).
      type: str
    method:
      description: Access method.
      type: str
    unique:
      description: Unique index.
      type: bool
    columns:
      description: Key columns/expressions with operator class and ordering, as PostgreSQL prints them.
      type: list
    include:
      description: INCLUDE columns.
      type: list
    where:
      description: Predicate, as PostgreSQL prints it.
      type: str
    storage_parameters:
      description: Storage parameters as C(key=value) strings.
      type: list
    valid:
      description: C(pg_index.indisvalid).
      type: bool
diff:
  description: Before and after (the same keys as RV(state)), in diff mode.
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

PROBE_TABLE = 'hc_probe_index_table'
PROBE_INDEX = 'hc_probe_index'

SIGNATURE_QUERY = '''
SELECT am.amname AS method, i.indisunique AS unique, i.indisvalid AS valid, i.indnkeyatts AS nkey,
       i.indnatts AS natts, pg_catalog.pg_get_indexdef(i.indexrelid) AS definition,
       pg_catalog.pg_get_expr(i.indpred, i.indrelid, true) AS "where",
       coalesce(c.reloptions, '{}') AS options,
       ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnatts) AS k
             ORDER BY k) AS cols,
       ARRAY(SELECT CASE WHEN oc.opcdefault THEN '' ELSE oc.opcname END
             FROM unnest(i.indclass) WITH ORDINALITY AS u(oid, k) JOIN pg_catalog.pg_opclass oc ON oc.oid = u.oid
             ORDER BY u.k) AS opclasses,
       ARRAY(SELECT u.o FROM unnest(i.indoption) WITH ORDINALITY AS u(o, k) ORDER BY u.k) AS options_bits,
       i.indrelid::regclass::text AS table_name,
       (SELECT t.relkind FROM pg_catalog.pg_class t WHERE t.oid = i.indrelid) AS table_kind,
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co WHERE co.conindid = i.indexrelid) AS backs_constraint
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE i.indexrelid = %s
'''


def normalise_column_spec(item):
    """One entry of ``columns`` -> dict(name|expression, opclass, order, nulls). Raises ValueError."""
    if isinstance(item, str):
        if not item:
            raise ValueError('empty column name in columns')
        return {'name': item, 'expression': None, 'opclass': None, 'order': None, 'nulls': None}
    if not isinstance(item, dict):
        raise TypeError(f'columns entries must be strings or dictionaries, got {item!r}')
    unknown = set(item) - {'name', 'expression', 'opclass', 'order', 'nulls'}
    if unknown:
        raise ValueError('unknown keys in columns entry {!r}: {}'.format(item, ', '.join(sorted(unknown))))
    if bool(item.get('name')) == bool(item.get('expression')):
        raise ValueError(f'a columns entry needs exactly one of name or expression: {item!r}')
    order = item.get('order')
    if order is not None and str(order).lower() not in ('asc', 'desc'):
        raise ValueError(f'columns order must be asc or desc, got {order!r}')
    nulls = item.get('nulls')
    if nulls is not None and str(nulls).lower() not in ('first', 'last'):
        raise ValueError(f'columns nulls must be first or last, got {nulls!r}')
    return {'name': item.get('name'), 'expression': item.get('expression'), 'opclass': item.get('opclass'),
            'order': str(order).lower() if order else None, 'nulls': str(nulls).lower() if nulls else None}


def column_sql(spec):
    parts = [sql.Identifier(spec['name']) if spec['name'] else sql.SQL('({})').format(sql.SQL(spec['expression']))]
    if spec['opclass']:
        parts.append(sql.Identifier(*split_qualified(spec['opclass'], default_schema=None))
                     if '.' in spec['opclass'] else sql.Identifier(spec['opclass']))
    if spec['order']:
        parts.append(sql.SQL(spec['order'].upper()))
    if spec['nulls']:
        parts.append(sql.SQL('NULLS ' + spec['nulls'].upper()))
    return sql.SQL(' ').join(parts)


def create_statement(index_name, schema, table, p, concurrent):
    """CREATE INDEX statement for the module parameters p (index name unqualified: it goes to the table schema)."""
    stmt = [sql.SQL('CREATE UNIQUE INDEX' if p['unique'] else 'CREATE INDEX')]
    if concurrent:
        stmt.append(sql.SQL('CONCURRENTLY'))
    stmt.append(sql.SQL('{} ON {} USING {} ({})').format(
        sql.Identifier(index_name), sql.Identifier(schema, table) if schema else sql.Identifier(table),
        sql.Identifier(p['method']), sql.SQL(', ').join(column_sql(c) for c in p['_columns'])))
    if p['include']:
        stmt.append(sql.SQL('INCLUDE ({})').format(sql.SQL(', ').join(sql.Identifier(c) for c in p['include'])))
    if p['storage_parameters']:
        stmt.append(sql.SQL('WITH ({})').format(sql.SQL(', ').join(
            sql.SQL('{} = {}').format(sql.Identifier(str(k)), sql.Literal(v))
            for k, v in sorted(p['storage_parameters'].items()))))
    if p['where']:
        stmt.append(sql.SQL('WHERE ({})').format(sql.SQL(p['where'])))
    return sql.SQL(' ').join(stmt)


def signature(row):
    """Comparable description of an index from SIGNATURE_QUERY."""
    if row is None:
        return {'exists': False}
    nkey = row['nkey']
    keys = []
    for k, col in enumerate(row['cols'][:nkey]):
        text = col
        if row['opclasses'][k]:
            text += ' ' + row['opclasses'][k]
        bits = row['options_bits'][k] if k < len(row['options_bits']) else 0
        desc, nulls_first = bool(bits & 1), bool(bits & 2)
        if desc:
            text += ' DESC'
        if nulls_first != desc:  # default is NULLS LAST for ASC, NULLS FIRST for DESC
            text += ' NULLS FIRST' if nulls_first else ' NULLS LAST'
        keys.append(text)
    return {'exists': True, 'method': row['method'], 'unique': row['unique'], 'columns': keys,
            'include': list(row['cols'][nkey:]), 'where': row['where'],
            'storage_parameters': sorted(row['options'] or []), 'valid': row['valid']}


def comparable(sig):
    return {k: v for k, v in sig.items() if k not in ('valid', 'definition')}


def temp_name(name, suffix):
    """name + suffix, cut to PostgreSQL's 63-byte identifier limit."""
    raw = name.encode('utf-8')
    room = 63 - len(suffix.encode('utf-8'))
    cut = raw[:room].decode('utf-8', 'ignore')
    return cut + suffix


def find_index(s, schema, name):
    rows = s.query('SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace '
                   "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('i', 'I')", (schema, name))
    if not rows:
        return None
    return s.query(SIGNATURE_QUERY, (rows[0]['oid'],))[0]


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        name={'type': 'str', 'required': True},
        table={'type': 'str'},
        columns={'type': 'list', 'elements': 'raw', 'default': []},
        include={'type': 'list', 'elements': 'str', 'default': []},
        method={'type': 'str', 'default': 'btree',
                'choices': ['btree', 'hash', 'gin', 'gist', 'spgist', 'brin', 'hnsw', 'ivfflat']},
        unique={'type': 'bool', 'default': False},
        where={'type': 'str'},
        storage_parameters={'type': 'dict', 'default': {}},
        concurrent={'type': 'bool', 'default': True},
        state={'type': 'str', 'default': 'present', 'choices': ['present', 'absent']},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('state', 'present', ('table', 'columns'))])
    ensure_psycopg(module)
    p = module.params
    name = p['name']
    if not name or len(name.encode('utf-8')) > 63:
        module.fail_json(msg=f'name must be 1 to 63 bytes long: {name!r}')
    schema = table = None
    if p['table']:
        try:
            schema, table = split_qualified(p['table'])
        except ValueError as e:
            module.fail_json(msg=f'table: {e}')
    if p['state'] == 'present':
        try:
            p['_columns'] = [normalise_column_spec(c) for c in p['columns']]
        except (TypeError, ValueError) as e:
            module.fail_json(msg=f'columns: {e}')
        if p['unique'] and p['method'] != 'btree':
            module.fail_json(msg='unique indexes need method btree, not {}'.format(p['method']))
        if p['include'] and p['method'] not in ('btree', 'gist', 'spgist'):
            module.fail_json(msg='include is supported for btree, gist and spgist, not {}'.format(p['method']))

    s = PgSession(module)
    if schema is None:
        rows = s.query("SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                       "ON n.oid = c.relnamespace WHERE c.relname = %s AND c.relkind IN ('i', 'I') "
                       "AND n.nspname = ANY (current_schemas(false))", (name,))
        schema = rows[0]['nspname'] if rows else 'public'
    current = find_index(s, schema, name)
    before = signature(current)
    if current is not None:
        before['definition'] = current['definition']
    rel = s.relation(schema, table) if table else None

    if current is not None and table is not None and rel is not None:
        expected_table = s.query('SELECT %s::regclass::text AS t', (rel['oid'],))[0]['t']
        if current['table_name'] != expected_table:
            s.fail('index {}.{} exists on table {}, not on {}'.format(schema, name, current['table_name'], p['table']))
    if current is not None and current['backs_constraint']:
        s.fail(f'index {schema}.{name} backs a constraint; manage the constraint instead')

    concurrent = p['concurrent']
    if rel is not None and rel['relkind'] == 'p':
        concurrent = False
    if current is not None and current['table_kind'] == 'p':
        concurrent = False

    after = dict(before)
    changed = False
    if p['state'] == 'absent':
        if current is not None:
            drop = sql.SQL('DROP INDEX {}{}').format(sql.SQL('CONCURRENTLY ' if concurrent else ''),
                                                     sql.Identifier(schema, name))
            if concurrent:
                with s.autocommit_block():
                    s.execute(drop)
            else:
                s.execute(drop)
            changed = True
            after = {'exists': False}
    else:
        if rel is None:
            s.fail('table {} does not exist'.format(p['table']))
        if rel['relkind'] not in ('r', 'p', 'm'):
            s.fail('{} is not a table or materialized view'.format(p['table']))
        have = {c['name'] for c in s.columns(schema, table)}
        wanted = [c['name'] for c in p['_columns'] if c['name']] + list(p['include'])
        missing = [c for c in wanted if c not in have]
        if missing:
            s.fail('unknown column(s) in table {}: {}'.format(p['table'], ', '.join(missing)))
        # Let PostgreSQL canonicalise the desired definition on an empty temporary copy of the table.
        with s.probe():
            s.query(sql.SQL('CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP').format(
                sql.Identifier(PROBE_TABLE), sql.Identifier(schema, table)))
            s.query(create_statement(PROBE_INDEX, None, PROBE_TABLE, p, concurrent=False))
            probe_oid = s.query("SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname = %s "
                                "AND c.relnamespace = pg_catalog.pg_my_temp_schema()", (PROBE_INDEX,))[0]['oid']
            desired = signature(s.query(SIGNATURE_QUERY, (probe_oid,))[0])
        if current is None:
            stmt = create_statement(name, schema, table, p, concurrent)
            if concurrent:
                with s.autocommit_block():
                    s.execute(stmt)
            else:
                s.execute(stmt)
            changed = True
        elif comparable(before) != comparable(desired) or not current['valid']:
            new_name = temp_name(name, '_hcnew')
            if find_index(s, schema, new_name) is not None:
                # left over from an interrupted rebuild
                leftover = sql.SQL('DROP INDEX {}{}').format(sql.SQL('CONCURRENTLY ' if concurrent else ''),
                                                             sql.Identifier(schema, new_name))
                if concurrent:
                    with s.autocommit_block():
                        s.execute(leftover)
                else:
                    s.execute(leftover)
            create = create_statement(new_name, schema, table, p, concurrent)
            drop = sql.SQL('DROP INDEX {}{}').format(sql.SQL('CONCURRENTLY ' if concurrent else ''),
                                                     sql.Identifier(schema, name))
            rename = sql.SQL('ALTER INDEX {} RENAME TO {}').format(sql.Identifier(schema, new_name),
                                                                   sql.Identifier(name))
            if concurrent:
                # new index first, then drop the old one: there is always an index to use
                with s.autocommit_block():
                    s.execute(create)
                    s.execute(drop)
                    s.execute(rename)
            else:
                s.execute(create)
                s.execute(drop)
                s.execute(rename)
            changed = True
        after = dict(desired)
        after['valid'] = True
    s.finish(changed)

    if p['state'] == 'present' and not module.check_mode:
        final = find_index(s, schema, name)
        after = signature(final)
        if final is not None:
            after['definition'] = final['definition']
    s.close()
    result = {'changed': changed, 'queries': s.queries, 'state': after}
    if module._diff:
        result['diff'] = {'before': before, 'after': after}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
