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
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.indexes import (
    SIGNATURE_QUERY,
    comparable,
    create_statement,
    drop_statement,
    find_index,
    normalise_column_spec,
    run_index_statement,
    signature,
    temp_name,
)
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import (
    PgSession,
    ensure_psycopg,
    postgres_common_argument_spec,
    split_qualified,
    sql,
)

PROBE_TABLE = 'hc_probe_index_table'
PROBE_INDEX = 'hc_probe_index'


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
            run_index_statement(s, drop_statement(schema, name, concurrent), concurrent)
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
            run_index_statement(s, create_statement(name, schema, table, p, concurrent), concurrent)
            changed = True
        elif comparable(before) != comparable(desired) or not current['valid']:
            new_name = temp_name(name, '_hcnew')
            if find_index(s, schema, new_name) is not None:
                # left over from an interrupted rebuild
                run_index_statement(s, drop_statement(schema, new_name, concurrent), concurrent)
            create = create_statement(new_name, schema, table, p, concurrent)
            drop = drop_statement(schema, name, concurrent)
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
