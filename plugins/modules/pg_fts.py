# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_fts
short_description: Full-text search on a table - weighted generated tsvector, GIN index, unaccent config, trigram index, ranked search function
version_added: 0.1.0
description:
  - Adds (or corrects) a stored generated C(tsvector) column built from chosen columns with weights A-D, and a GIN
    index on it.
  - Optionally maintains a text search configuration that copies O(config_source) and runs C(unaccent) before the
    word dictionaries, so C(Müller) matches C(muller).
  - Optionally adds a trigram (C(pg_trgm)) GIN index for fuzzy matching on a name column, and a ranked search
    function C(fn(search_query text, max_results integer DEFAULT 20) RETURNS TABLE(<key>, rank real)) that uses
    C(websearch_to_tsquery) and C(ts_rank_cd).
  - The wanted generation expression is canonicalised by PostgreSQL (on a temporary copy of the table in a
    rolled-back savepoint) and compared with the catalog; a changed expression is applied with
    C(ALTER COLUMN ... SET EXPRESSION) (PostgreSQL 17), which keeps the index.
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
  table:
    description:
      - The table (C(schema.table) or C(table) for schema C(public)).
    type: str
    required: true
  column:
    description:
      - Name of the generated C(tsvector) column.
    type: str
    default: search_vector
  weights:
    description:
      - Source columns with their weight, in order. Every column is checked against the table first.
    type: list
    elements: dict
    required: true
    suboptions:
      column:
        description: A column of O(table) (cast to text).
        type: str
        required: true
      weight:
        description: Weight of this column's lexemes.
        type: str
        default: D
        choices: [A, B, C, D]
  config:
    description:
      - Text search configuration used by the column and the search function (C(schema.name) or a built-in name such
        as V(simple) or V(english)).
    type: str
    default: simple
  config_source:
    description:
      - When set, O(config) is created (if missing) as a copy of this configuration, and its C(word), C(hword) and
        C(hword_part) mappings are set to C(unaccent) followed by the source's dictionaries. Needs C(unaccent).
    type: str
  index_name:
    description:
      - Name of the GIN index on O(column). Default C(<table>_<column>_gin).
    type: str
  trigram_column:
    description:
      - A text column that gets a C(gin_trgm_ops) index (C(<table>_<trigram_column>_trgm)) for fuzzy search.
    type: str
  search_function:
    description:
      - Name of the ranked search function to create or replace (C(schema.name)).
    type: str
  key_column:
    description:
      - Column returned by the search function to identify rows. Default - the single-column primary key.
    type: str
  create_extensions:
    description:
      - Create C(unaccent) and C(pg_trgm) when they are needed and missing (both are trusted extensions).
    type: bool
    default: true
seealso:
  - name: Full text search
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/textsearch.html
  - name: Generated columns
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/ddl-generated-columns.html
  - name: unaccent
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/unaccent.html
  - name: pg_trgm
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/pgtrgm.html
  - module: hingecraft.enterprise_db.pg_index
'''

EXAMPLES = r'''
- name: Member search - names weigh more than the bio, accents ignored, fuzzy name matching
  hingecraft.enterprise_db.pg_fts:
    db: hingecraft
    table: app.members
    weights:
      - {column: display_name, weight: A}
      - {column: city, weight: B}
      - {column: bio, weight: C}
    config: app.hc_unaccent
    config_source: simple
    trigram_column: display_name
    search_function: app.search_members
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
  description: The search set-up after the run.
  returned: always
  type: dict
  contains:
    expression:
      description: Generation expression of the column, as PostgreSQL prints it.
      type: str
    index:
      description: Definition of the GIN index.
      type: str
    trigram_index:
      description: Definition of the trigram index.
      type: str
    config:
      description: Dictionaries of the configuration per token type (word, hword, hword_part).
      type: dict
    function:
      description: Identity and result of the search function.
      type: str
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

PROBE_TABLE = 'hc_probe_fts_table'
PROBE_COLUMN = 'hc_probe_vector'
TOKENS = ['hword', 'hword_part', 'word']


def idx_name(table, column, suffix):
    base = f'{table}_{column}'
    raw = base.encode('utf-8')
    return raw[:63 - len(suffix)].decode('utf-8', 'ignore') + suffix


def config_ident(name):
    if '.' in name or name.startswith('"'):
        return sql.Identifier(*split_qualified(name))
    return sql.Identifier(name)


def vector_expression(weights, cfg_text):
    parts = [sql.SQL("setweight(to_tsvector({}::regconfig, coalesce({}::text, '')), {})").format(
        sql.Literal(cfg_text), sql.Identifier(w['column']), sql.Literal(w['weight'])) for w in weights]
    return sql.SQL(' || ').join(parts)


def ts_config_oid(s, name):
    """OID of a text search configuration ('simple', 'schema.name' or a quoted form), or None."""
    try:
        schema, cfgname = split_qualified(name, default_schema=None)
    except ValueError:
        return None
    rows = s.query(
        'SELECT c.oid FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace '
        'WHERE c.cfgname = %s AND (n.nspname = %s OR (%s::text IS NULL AND n.nspname = ANY (current_schemas(true)))) '
        'ORDER BY array_position(current_schemas(true), n.nspname::text) NULLS LAST LIMIT 1',
        (cfgname, schema, schema))
    return rows[0]['oid'] if rows else None


def config_mappings(s, cfg_text):
    rows = s.query(
        'SELECT t.alias AS token, array_agg(d.dictname::text ORDER BY m.mapseqno) AS dicts '
        'FROM pg_catalog.pg_ts_config c '
        'JOIN pg_catalog.pg_ts_config_map m ON m.mapcfg = c.oid '
        'JOIN pg_catalog.pg_ts_dict d ON d.oid = m.mapdict '
        'JOIN LATERAL pg_catalog.ts_token_type(c.cfgparser) t ON t.tokid = m.maptokentype '
        'WHERE c.oid = %s AND t.alias = ANY (%s) GROUP BY t.alias', (ts_config_oid(s, cfg_text), TOKENS))
    return {r['token']: r['dicts'] for r in rows}


def index_def(s, schema, name):
    rows = s.query('SELECT indexdef FROM pg_catalog.pg_indexes WHERE schemaname = %s AND indexname = %s',
                   (schema, name))
    return rows[0]['indexdef'] if rows else None


def column_expression(s, schema, table, column):
    rows = s.query(
        'SELECT a.attgenerated AS generated, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, '
        'pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS expr FROM pg_catalog.pg_attribute a '
        'LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum '
        'WHERE a.attrelid = %s::regclass AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped',
        (sql.Identifier(schema, table).as_string(s.conn), column))
    return rows[0] if rows else None


def function_info(s, fschema, fname):
    rows = s.query(
        "SELECT p.oid, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args, "
        "pg_catalog.pg_get_function_result(p.oid) AS result, p.prosrc AS src FROM pg_catalog.pg_proc p "
        "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s",
        (fschema, fname))
    return rows


def read_state(s, p, schema, table, cfg_text, gin_name, trgm_name, fn):
    col = column_expression(s, schema, table, p['column'])
    state = {'expression': col['expr'] if col else None, 'index': index_def(s, schema, gin_name),
             'trigram_index': index_def(s, schema, trgm_name) if trgm_name else None,
             'config': config_mappings(s, cfg_text) if p['config_source'] else None, 'function': None}
    if fn:
        rows = function_info(s, *fn)
        if rows:
            state['function'] = f"{fn[0]}.{fn[1]}({rows[0]['args']}) RETURNS {rows[0]['result']}"
    return state


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        table={'type': 'str', 'required': True},
        column={'type': 'str', 'default': 'search_vector'},
        weights={'type': 'list', 'elements': 'dict', 'required': True, 'options': {
            'column': {'type': 'str', 'required': True},
            'weight': {'type': 'str', 'default': 'D', 'choices': ['A', 'B', 'C', 'D']}}},
        config={'type': 'str', 'default': 'simple'},
        config_source={'type': 'str'},
        index_name={'type': 'str'},
        trigram_column={'type': 'str'},
        search_function={'type': 'str'},
        key_column={'type': 'str', 'no_log': False},
        create_extensions={'type': 'bool', 'default': True},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    ensure_psycopg(module)
    p = module.params
    try:
        schema, table = split_qualified(p['table'])
        fn = split_qualified(p['search_function']) if p['search_function'] else None
        cfg = config_ident(p['config'])
    except ValueError as e:
        module.fail_json(msg=f'invalid name: {e}')
    if not p['weights']:
        module.fail_json(msg='weights must name at least one column')
    gin_name = p['index_name'] or idx_name(table, p['column'], '_gin')
    trgm_name = idx_name(table, p['trigram_column'], '_trgm') if p['trigram_column'] else None
    tbl = sql.Identifier(schema, table)

    s = PgSession(module)
    cfg_text = cfg.as_string(s.conn)
    # --- validate everything before the first change
    rel = s.relation(schema, table)
    if rel is None or rel['relkind'] not in ('r', 'p'):
        s.fail(f"table {p['table']} does not exist")
    cols = {c['name']: c for c in s.columns(schema, table)}
    wanted = [w['column'] for w in p['weights']] + [c for c in (p['trigram_column'], p['key_column']) if c]
    missing = [c for c in wanted if c not in cols]
    if missing:
        s.fail(f"unknown column(s) in table {p['table']}: {', '.join(missing)}")
    if p['column'] in [w['column'] for w in p['weights']]:
        s.fail(f"column {p['column']} cannot be one of its own source columns")
    existing = column_expression(s, schema, table, p['column'])
    if existing is not None and (existing['generated'] != 's' or existing['type'] != 'tsvector'):
        s.fail(f"column {p['column']} exists and is not a generated tsvector column")
    key = None
    if fn:
        if p['key_column']:
            key = p['key_column']
        else:
            pk = s.query("SELECT a.attname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a "
                         "ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = %s "
                         "AND i.indisprimary", (rel['oid'],))
            if len(pk) != 1:
                s.fail('search_function needs key_column: the table has no single-column primary key')
            key = pk[0]['attname']
    if p['config_source']:
        if ts_config_oid(s, p['config_source']) is None:
            s.fail(f"config_source {p['config_source']} is not a text search configuration")
    elif ts_config_oid(s, cfg_text) is None:
        s.fail(f"text search configuration {p['config']} does not exist (set config_source to create it)")

    before = read_state(s, p, schema, table, cfg_text, gin_name, trgm_name, fn)
    changed = False

    def ensure_extension(name):
        nonlocal changed
        if not s.extension_installed(name):
            if not p['create_extensions']:
                s.fail(f'extension {name} is not installed (create_extensions is false)')
            s.execute(sql.SQL('CREATE EXTENSION IF NOT EXISTS {}').format(sql.Identifier(name)))
            changed = True

    # --- text search configuration with unaccent
    if p['config_source']:
        ensure_extension('unaccent')
        if ts_config_oid(s, cfg_text) is None:
            s.execute(sql.SQL('CREATE TEXT SEARCH CONFIGURATION {} (COPY = {})').format(
                cfg, config_ident(p['config_source'])))
            changed = True
        source = config_mappings(s, p['config_source'])
        current = config_mappings(s, cfg_text)
        unaccent_schema = s.query("SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
                                  "ON n.oid = e.extnamespace WHERE e.extname = 'unaccent'")[0]['nspname']
        for token in TOKENS:
            want = ['unaccent'] + [d for d in source.get(token, ['simple']) if d != 'unaccent']
            if current.get(token) != want:
                s.execute(sql.SQL('ALTER TEXT SEARCH CONFIGURATION {} ALTER MAPPING FOR {} WITH {}').format(
                    cfg, sql.SQL(token), sql.SQL(', ').join(
                        [sql.Identifier(unaccent_schema, 'unaccent')] + [sql.Identifier(d) for d in want[1:]])))
                changed = True

    # --- generated column: let PostgreSQL canonicalise the wanted expression on a temporary copy
    expr = vector_expression(p['weights'], cfg_text)
    with s.probe():
        s.query(sql.SQL('CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP').format(
            sql.Identifier(PROBE_TABLE), tbl))
        s.query(sql.SQL('ALTER TABLE {} ADD COLUMN {} tsvector GENERATED ALWAYS AS ({}) STORED').format(
            sql.Identifier(PROBE_TABLE), sql.Identifier(PROBE_COLUMN), expr))
        desired_expr = s.query(
            'SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS expr FROM pg_catalog.pg_attrdef d '
            'JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum '
            'WHERE d.adrelid = pg_catalog.to_regclass(%s) AND a.attname = %s',
            (sql.Identifier(PROBE_TABLE).as_string(s.conn), PROBE_COLUMN))[0]['expr']
    if existing is None:
        s.execute(sql.SQL('ALTER TABLE {} ADD COLUMN {} tsvector GENERATED ALWAYS AS ({}) STORED').format(
            tbl, sql.Identifier(p['column']), expr))
        changed = True
    elif existing['expr'] != desired_expr:
        s.execute(sql.SQL('ALTER TABLE {} ALTER COLUMN {} SET EXPRESSION AS ({})').format(
            tbl, sql.Identifier(p['column']), expr))
        changed = True

    # --- indexes
    want_gin = sql.SQL('CREATE INDEX {} ON {} USING gin ({})').format(
        sql.Identifier(gin_name), tbl, sql.Identifier(p['column']))
    gin_def = index_def(s, schema, gin_name)
    if gin_def is None:
        s.execute(want_gin)
        changed = True
    elif 'USING gin (' not in gin_def:
        s.fail(f'index {gin_name} exists with another definition: {gin_def}')
    if trgm_name:
        ensure_extension('pg_trgm')
        if index_def(s, schema, trgm_name) is None:
            trgm_schema = s.query("SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
                                  "ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'")[0]['nspname']
            s.execute(sql.SQL('CREATE INDEX {} ON {} USING gin ({} {})').format(
                sql.Identifier(trgm_name), tbl, sql.Identifier(p['trigram_column']),
                sql.Identifier(trgm_schema, 'gin_trgm_ops')))
            changed = True

    # --- ranked search function
    if fn:
        key_type = cols[key]['type']
        body = sql.SQL(
            'SELECT t.{key}, pg_catalog.ts_rank_cd(t.{col}, q) AS rank '
            'FROM {tbl} AS t, pg_catalog.websearch_to_tsquery({cfg}::regconfig, search_query) AS q '
            'WHERE t.{col} @@ q ORDER BY rank DESC, t.{key} LIMIT max_results').format(
                key=sql.Identifier(key), col=sql.Identifier(p['column']), tbl=tbl, cfg=sql.Literal(cfg_text))
        body_text = body.as_string(s.conn)
        result_text = f'TABLE({sql.Identifier(key).as_string(s.conn)} {key_type}, rank real)'
        rows = function_info(s, *fn)
        current = rows[0] if rows else None
        same_result = current is not None and current['result'].replace('"', '') == result_text.replace('"', '')
        if current is None or current['src'] != body_text or not same_result:
            if current is not None and not same_result:
                s.execute(sql.SQL('DROP FUNCTION {}({})').format(sql.Identifier(*fn), sql.SQL(current['args'])))
            s.execute(sql.SQL(
                'CREATE OR REPLACE FUNCTION {fn}(search_query text, max_results integer DEFAULT 20) '
                'RETURNS TABLE ({key} {type}, rank real) LANGUAGE sql STABLE PARALLEL SAFE AS {body}').format(
                    fn=sql.Identifier(*fn), key=sql.Identifier(key), type=sql.SQL(key_type),
                    body=sql.Literal(body_text)))
            changed = True

    after = read_state(s, p, schema, table, cfg_text, gin_name, trgm_name, fn)
    s.finish(changed)
    s.close()
    result = {'changed': changed, 'queries': s.queries, 'state': after}
    if module._diff:
        result['diff'] = {'before': before, 'after': after}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
