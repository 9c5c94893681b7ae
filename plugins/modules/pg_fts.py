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
  trigram_index_name:
    description:
      - Name of the trigram index. Default C(<table>_<trigram_column>_trgm).
    type: str
  match_owner:
    description:
      - Make the search function fast under row-level security. C(@@) is not C(LEAKPROOF), so with RLS on the
        table PostgreSQL applies the policies first and cannot use the GIN index (a tenant's search scans all of the
        tenant's rows).
      - With this option the index-backed match runs in a second function C(<search_function>_match), C(SECURITY
        DEFINER), C(SET search_path = pg_catalog, pg_temp), owned by this role - which must exist, must not be a
        superuser and must have C(BYPASSRLS). It returns the primary key and rank of the matching rows, filtered
        explicitly by O(tenant_column) = O(tenant_function)() as evaluated by the caller. The search function
        (C(SECURITY INVOKER)) then joins those keys back to the table, so every RLS policy still applies to every
        row the caller gets.
      - The module grants this role C(USAGE) on the schema and C(SELECT) on the key, tenant and search columns only.
      - Callers that lack C(EXECUTE) on the match function (see O(match_roles)), and callers for whom row-level
        security is not active on the table (C(row_security_active()) - superusers, C(BYPASSRLS) roles), get the
        plain query.
      - Needs a primary key on the table and O(search_function). Unset - the match function is dropped.
    type: str
  match_roles:
    description:
      - Roles granted C(EXECUTE) on the match function (it is revoked from everyone else, C(PUBLIC) included).
      - Grant it only to roles that may read every tenant they can name - with pg_tenant's model, the trusted roles
        that choose a tenant with C(set_tenant()) - because a direct call returns keys and ranks for the tenant it
        is given, without the table's other policies. Through the search function the policies always apply.
    type: list
    elements: str
    default: []
  tenant_column:
    description:
      - Column that holds the tenant; the match function only returns rows whose O(tenant_column) equals
        O(tenant_function)() evaluated as the caller. Needs O(tenant_function).
    type: str
  tenant_function:
    description:
      - A function without arguments (C(schema.name)) that returns the caller's tenant, for example
        C(tenancy.current_tenant) from M(hingecraft.enterprise_db.pg_tenant). A NULL tenant matches nothing.
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
  - module: hingecraft.enterprise_db.pg_tenant
  - name: Row security policies (LEAKPROOF and index use)
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/ddl-rowsecurity.html
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

- name: The same search, fast for tenant sessions under row-level security
  hingecraft.enterprise_db.pg_fts:
    db: hingecraft
    table: app.members
    column: search
    weights:
      - {column: display_name, weight: A}
      - {column: bio, weight: B}
    config: app.hc_search
    config_source: english
    search_function: app.search_members
    key_column: member_id
    match_owner: search_owner        # NOLOGIN BYPASSRLS, not a superuser
    match_roles: [app_rw, app_ro]    # the roles trusted to choose a tenant
    tenant_column: tenant_id
    tenant_function: tenancy.current_tenant
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
    match_function:
      description: Identity, result and owner of the SECURITY DEFINER match function, or null.
      type: str
diff:
  description: Before and after (keys of RV(state)), in diff mode.
  returned: when diff mode is on
  type: dict
'''

import re

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
        "pg_catalog.pg_get_function_result(p.oid) AS result, p.prosrc AS src, p.prosecdef AS secdef, "
        "l.lanname AS lang, p.proconfig AS config, pg_catalog.pg_get_userbyid(p.proowner) AS owner, "
        "p.oid::regprocedure::text AS signature, p.prorows AS rows, "
        "coalesce((SELECT array_agg(CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_catalog.pg_get_userbyid(a.grantee) "
        "END ORDER BY 1) FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a "
        "WHERE a.privilege_type = 'EXECUTE'), '{}') AS executors "
        "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "JOIN pg_catalog.pg_language l ON l.oid = p.prolang WHERE n.nspname = %s AND p.proname = %s",
        (fschema, fname))
    return rows


def result_key(text):
    """A function result for comparison: PostgreSQL prints result column types without typmods and quotes
    identifiers only where needed."""
    return re.sub(r'\(\s*\d+(\s*,\s*\d+)?\s*\)', '', text.replace('"', ''))


def match_name(fname):
    """<fname>_match, the name shortened (not the suffix) to fit 63 bytes."""
    return fname.encode('utf-8')[:57].decode('utf-8', 'ignore') + '_match'


def describe_function(fn, row, with_owner=False):
    if row is None:
        return None
    text = f"{fn[0]}.{fn[1]}({row['args']}) RETURNS {row['result']}"
    if with_owner:
        text += f" SECURITY {'DEFINER' if row['secdef'] else 'INVOKER'} OWNER {row['owner']}"
    return text


def read_state(s, p, schema, table, cfg_text, gin_name, trgm_name, fn):
    col = column_expression(s, schema, table, p['column'])
    state = {'expression': col['expr'] if col else None, 'index': index_def(s, schema, gin_name),
             'trigram_index': index_def(s, schema, trgm_name) if trgm_name else None,
             'config': config_mappings(s, cfg_text) if p['config_source'] else None, 'function': None,
             'match_function': None}
    if fn:
        rows = function_info(s, *fn)
        state['function'] = describe_function(fn, rows[0] if rows else None)
        mfn = (fn[0], match_name(fn[1]))
        rows = function_info(s, *mfn)
        state['match_function'] = describe_function(mfn, rows[0] if rows else None, with_owner=True)
    return state


def role_row(s, name):
    rows = s.query('SELECT rolname, rolsuper, rolbypassrls, rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = %s',
                   (name,))
    return rows[0] if rows else None


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
        trigram_index_name={'type': 'str'},
        match_owner={'type': 'str'},
        match_roles={'type': 'list', 'elements': 'str', 'default': []},
        tenant_column={'type': 'str'},
        tenant_function={'type': 'str'},
        create_extensions={'type': 'bool', 'default': True},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_together=[('tenant_column', 'tenant_function')],
                           required_by={'match_owner': 'search_function', 'tenant_column': 'match_owner'})
    ensure_psycopg(module)
    p = module.params
    try:
        schema, table = split_qualified(p['table'])
        fn = split_qualified(p['search_function']) if p['search_function'] else None
        cfg = config_ident(p['config'])
        tenant_fn = split_qualified(p['tenant_function']) if p['tenant_function'] else None
    except ValueError as e:
        module.fail_json(msg=f'invalid name: {e}')
    if not p['weights']:
        module.fail_json(msg='weights must name at least one column')
    if p['match_roles'] and not p['match_owner']:
        module.fail_json(msg='match_roles needs match_owner')
    gin_name = p['index_name'] or idx_name(table, p['column'], '_gin')
    trgm_name = (p['trigram_index_name'] or idx_name(table, p['trigram_column'], '_trgm')) \
        if p['trigram_column'] else None
    tbl = sql.Identifier(schema, table)

    s = PgSession(module)
    cfg_text = cfg.as_string(s.conn)
    # --- validate everything before the first change
    rel = s.relation(schema, table)
    if rel is None or rel['relkind'] not in ('r', 'p'):
        s.fail(f"table {p['table']} does not exist")
    cols = {c['name']: c for c in s.columns(schema, table)}
    extra = (p['trigram_column'], p['key_column'], p['tenant_column'])
    wanted = [w['column'] for w in p['weights']] + [c for c in extra if c]
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
    pk_cols = [r['attname'] for r in s.query(
        "SELECT a.attname FROM pg_catalog.pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.ord", (rel['oid'],))]
    if p['match_owner']:
        owner = role_row(s, p['match_owner'])
        if owner is None:
            s.fail(f"match_owner role {p['match_owner']} does not exist")
        if owner['rolsuper']:
            s.fail(f"match_owner {p['match_owner']} is a superuser: use a NOLOGIN role with BYPASSRLS and no other power")
        if not owner['rolbypassrls']:
            s.fail(f"match_owner {p['match_owner']} needs BYPASSRLS (row-level security would hide every row from "
                   'the match function, or keep the GIN index out of use)')
        unknown = [r for r in p['match_roles'] if role_row(s, r) is None]
        if unknown:
            s.fail(f"match_roles: unknown role(s) {', '.join(unknown)}")
        if not pk_cols:
            s.fail(f"match_owner needs a primary key on {p['table']} to join the matches back to the table")
        if 'rank' in pk_cols:
            s.fail('match_owner: a primary key column named rank clashes with the rank result column')
        tenant_sig = sql.Identifier(*tenant_fn).as_string(s.conn) + '()' if tenant_fn else None
        if tenant_sig and not s.query('SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL AS ok', (tenant_sig,))[0]['ok']:
            s.fail(f"tenant_function {p['tenant_function']}() does not exist")
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
        trgm_def = index_def(s, schema, trgm_name)
        if trgm_def is not None and 'gin_trgm_ops' not in trgm_def:
            s.fail(f'index {trgm_name} exists with another definition: {trgm_def}')
        if trgm_def is None:
            trgm_schema = s.query("SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
                                  "ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'")[0]['nspname']
            s.execute(sql.SQL('CREATE INDEX {} ON {} USING gin ({} {})').format(
                sql.Identifier(trgm_name), tbl, sql.Identifier(p['trigram_column']),
                sql.Identifier(trgm_schema, 'gin_trgm_ops')))
            changed = True

    # --- ranked search function (and, with match_owner, the index-backed SECURITY DEFINER match)
    def ensure_function(ident, args_text, result_text, create_sql, want):
        """Create or replace a function; drop it first when its arguments or result type change."""
        nonlocal changed
        rows = function_info(s, *ident)
        current = rows[0] if rows else None
        same_sig = current is not None and current['args'] == args_text and \
            result_key(current['result']) == result_key(result_text)
        if current is not None and not same_sig:
            s.execute(sql.SQL('DROP FUNCTION {}({})').format(sql.Identifier(*ident), sql.SQL(current['args'])))
        if not same_sig or any(current[k] != v for k, v in want.items()):
            s.execute(create_sql)
            changed = True

    if fn:
        key_type = cols[key]['type']
        kid = sql.Identifier(key)
        plain = sql.SQL(
            'SELECT t.{key}, pg_catalog.ts_rank_cd(t.{col}, q) AS rank '
            'FROM {tbl} AS t, pg_catalog.websearch_to_tsquery({cfg}::regconfig, {arg}) AS q '
            'WHERE t.{col} @@ q ORDER BY {order} LIMIT {lim}')
        mfn = (fn[0], match_name(fn[1]))
        if p['match_owner']:
            tenant_arg = sql.SQL(', tenant text') if p['tenant_column'] else sql.SQL('')
            m_args_text = 'search_query text' + (', tenant text' if p['tenant_column'] else '') + \
                ', max_rows integer, skip_rows integer'
            lim_pos = 3 if p['tenant_column'] else 2
            m_cols = sql.SQL(', ').join(sql.SQL('{} {}').format(sql.Identifier(c), sql.SQL(cols[c]['type']))
                                        for c in pk_cols)
            m_result = 'TABLE(' + ', '.join(f"{sql.Identifier(c).as_string(s.conn)} {cols[c]['type']}"
                                            for c in pk_cols) + ', rank real)'
            m_body = sql.SQL(
                'SELECT {pk}, pg_catalog.ts_rank_cd(t.{col}, q) '
                'FROM {tbl} AS t, pg_catalog.websearch_to_tsquery({cfg}::regconfig, $1) AS q '
                'WHERE t.{col} @@ q{tenant} ORDER BY {rank_pos} DESC, {pk_pos} LIMIT {lim} OFFSET {skip}').format(
                    rank_pos=sql.SQL(str(len(pk_cols) + 1)),
                    pk_pos=sql.SQL(', '.join(str(i + 1) for i in range(len(pk_cols)))),
                    lim=sql.SQL(f'${lim_pos}'), skip=sql.SQL(f'${lim_pos + 1}'),
                    pk=sql.SQL(', ').join(sql.SQL('t.{}').format(sql.Identifier(c)) for c in pk_cols),
                    col=sql.Identifier(p['column']), tbl=tbl, cfg=sql.Literal(cfg_text),
                    tenant=sql.SQL(' AND t.{} = $2').format(sql.Identifier(p['tenant_column']))
                    if p['tenant_column'] else sql.SQL('')).as_string(s.conn)
            m_create = sql.SQL(
                'CREATE OR REPLACE FUNCTION {fn}(search_query text{targ}, max_rows integer DEFAULT NULL, '
                'skip_rows integer DEFAULT 0) RETURNS TABLE ({cols}, rank real) '
                # ROWS: a search matches few rows; the estimate steers the join back to primary-key lookups
                'LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER ROWS 100 SET search_path = pg_catalog, pg_temp '
                'AS {body}').format(fn=sql.Identifier(*mfn), targ=tenant_arg, cols=m_cols, body=sql.Literal(m_body))
            ensure_function(mfn, m_args_text, m_result, m_create,
                            {'src': m_body, 'secdef': True, 'rows': 100,
                             'config': ['search_path=pg_catalog, pg_temp']})
            m_ident = sql.SQL('{}({})').format(sql.Identifier(*mfn),
                                               sql.SQL('text, text, integer, integer' if p['tenant_column']
                                                       else 'text, integer, integer'))
            rows = function_info(s, *mfn)
            if rows and rows[0]['owner'] != p['match_owner']:
                s.execute(sql.SQL('ALTER FUNCTION {} OWNER TO {}').format(m_ident, sql.Identifier(p['match_owner'])))
                changed = True
            rows = function_info(s, *mfn)
            executors = set(rows[0]['executors']) - {rows[0]['owner']} if rows else set()
            for r in sorted(executors - set(p['match_roles'])):
                s.execute(sql.SQL('REVOKE EXECUTE ON FUNCTION {} FROM {}').format(
                    m_ident, sql.SQL('PUBLIC') if r == 'public' else sql.Identifier(r)))
                changed = True
            for r in sorted(set(p['match_roles']) - executors):
                s.execute(sql.SQL('GRANT EXECUTE ON FUNCTION {} TO {}').format(m_ident, sql.Identifier(r)))
                changed = True
            # the owner reads only what the match needs: the schema, and the key, tenant and search columns
            owner_ident = sql.Identifier(p['match_owner'])
            if not s.query('SELECT pg_catalog.has_schema_privilege(%s, %s, %s) AS ok',
                           (p['match_owner'], schema, 'USAGE'))[0]['ok']:
                s.execute(sql.SQL('GRANT USAGE ON SCHEMA {} TO {}').format(sql.Identifier(schema), owner_ident))
                changed = True
            need = list(dict.fromkeys(pk_cols + [p['column']] + ([p['tenant_column']] if p['tenant_column'] else [])))
            lacking = [c for c in need if not s.query(
                'SELECT pg_catalog.has_column_privilege(%s, %s::regclass, %s, %s) AS ok',
                (p['match_owner'], tbl.as_string(s.conn), c, 'SELECT'))[0]['ok']]
            if lacking:
                s.execute(sql.SQL('GRANT SELECT ({}) ON {} TO {}').format(
                    sql.SQL(', ').join(sql.Identifier(c) for c in lacking), tbl, owner_ident))
                changed = True
            tenant_expr = sql.SQL(', {}()').format(sql.Identifier(*tenant_fn)) if tenant_fn else sql.SQL('')
            join_on = sql.SQL(' AND ').join(sql.SQL('t.{0} = m.{0}').format(sql.Identifier(c)) for c in pk_cols)
            body = sql.SQL(
                '\nDECLARE\n'
                '    got integer;\n'
                '    win integer := $2 * 2 + 20;\n'
                'BEGIN\n'
                '    -- callers under RLS that may run the index-backed match get it; the rows joined back pass\n'
                '    -- every policy. Others (no EXECUTE, or RLS not active: superuser, BYPASSRLS) run the plain query.\n'
                '    IF pg_catalog.row_security_active({tref}) AND pg_catalog.has_function_privilege({mref}, {exe}) THEN\n'
                '        -- the best `win` matches of the tenant, in (rank, key) order, joined back under RLS\n'
                '        RETURN QUERY SELECT t.{key}, m.rank FROM {mfn}($1{tenant}, win, 0) AS m JOIN {tbl} AS t ON {on} '
                'ORDER BY m.rank DESC, {morder} LIMIT $2;\n'
                '        GET DIAGNOSTICS got = ROW_COUNT;\n'
                '        IF got < $2 THEN\n'
                '            -- policies hid some of them: continue after the window, in the same order\n'
                '            RETURN QUERY SELECT t.{key}, m.rank FROM {mfn}($1{tenant}, NULL, win) AS m JOIN {tbl} AS t '
                'ON {on} ORDER BY m.rank DESC, {morder} LIMIT $2 - got;\n'
                '        END IF;\n'
                '    ELSE\n'
                '        RETURN QUERY {plain};\n'
                '    END IF;\n'
                'END\n').format(
                    mref=sql.Literal(m_ident.as_string(s.conn)), exe=sql.Literal('EXECUTE'), key=kid,
                    tref=sql.SQL('{}::regclass').format(sql.Literal(tbl.as_string(s.conn))),
                    mfn=sql.Identifier(*mfn), tenant=tenant_expr, tbl=tbl, on=join_on,
                    morder=sql.SQL(', ').join(sql.SQL('m.{}').format(sql.Identifier(c)) for c in pk_cols),
                    plain=plain.format(key=kid, col=sql.Identifier(p['column']), tbl=tbl, cfg=sql.Literal(cfg_text),
                                       arg=sql.SQL('$1'), lim=sql.SQL('$2'), order=sql.SQL('2 DESC, 1')))
            lang = 'plpgsql'
        else:
            rows = function_info(s, *mfn)
            if rows:
                s.execute(sql.SQL('DROP FUNCTION {}({})').format(sql.Identifier(*mfn), sql.SQL(rows[0]['args'])))
                changed = True
            body = plain.format(key=kid, col=sql.Identifier(p['column']), tbl=tbl, cfg=sql.Literal(cfg_text),
                                arg=sql.SQL('search_query'), lim=sql.SQL('max_results'),
                                order=sql.SQL('rank DESC, t.{}').format(kid))
            lang = 'sql'
        body_text = body.as_string(s.conn)
        result_text = f'TABLE({sql.Identifier(key).as_string(s.conn)} {key_type}, rank real)'
        create = sql.SQL(
            'CREATE OR REPLACE FUNCTION {fn}(search_query text, max_results integer DEFAULT 20) '
            'RETURNS TABLE ({key} {type}, rank real) LANGUAGE {lang} STABLE PARALLEL SAFE SECURITY INVOKER{cfg} '
            'AS {body}').format(
                fn=sql.Identifier(*fn), key=kid, type=sql.SQL(key_type), lang=sql.SQL(lang),
                cfg=sql.SQL(' SET search_path = pg_catalog, pg_temp' if lang == 'plpgsql' else ''),
                body=sql.Literal(body_text))
        ensure_function(fn, 'search_query text, max_results integer', result_text, create,
                        {'src': body_text, 'lang': lang, 'secdef': False})

    after = read_state(s, p, schema, table, cfg_text, gin_name, trgm_name, fn)
    s.finish(changed)
    s.close()
    result = {'changed': changed, 'queries': s.queries, 'state': after}
    if module._diff:
        result['diff'] = {'before': before, 'after': after}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
