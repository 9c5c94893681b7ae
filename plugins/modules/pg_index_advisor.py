# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_index_advisor
short_description: Advise (and optionally create) btree indexes from the statements PostgreSQL actually runs
version_added: 0.2.0
description:
  - Reads the most expensive statements of the database from C(pg_stat_statements) and asks the planner for their
    generic plans (C(EXPLAIN (GENERIC_PLAN)), PostgreSQL 16+), so normalised statements with C($1) parameters need
    no sample values.
  - Candidate index keys come from the columns the plans' scans filter on and, when the C(pg_qualstats) extension
    is installed and loaded, from the predicates it sampled. Each candidate is costed as a hypothetical index
    (C(hypopg)); nothing is built to find out.
  - A proposal is kept when the estimated saving of the statements it serves reaches O(min_saving_pct) and the
    saving (calls x cost) is larger than the estimated cost of maintaining the index for the rows the table had
    written (O(index_write_cost)); every other proposal is returned in RV(rejected) with the reason.
  - With O(apply=true) the accepted proposals are created with C(CREATE INDEX CONCURRENTLY) (the statement
    builder of M(hingecraft.enterprise_db.pg_index)), marked with a comment, and checked afterwards - the
    statements' plans must now use the index. An advisor index left invalid by a failed build is dropped and
    rebuilt. With O(drop_unused=true) advisor indexes never scanned after O(unused_min_age_hours) are dropped.
author:
  - HingeCraft platform engineering (@hingecraft)
extends_documentation_fragment:
  - hingecraft.enterprise_db.postgres
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - The analysis only reads. C(CREATE/DROP INDEX CONCURRENTLY) cannot run in a transaction, so in check mode
        they are only reported in RV(queries).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
options:
  statements:
    description:
      - How many statements of C(pg_stat_statements) to analyse, the most expensive (total execution time) first.
    type: int
    default: 50
  min_calls:
    description:
      - Statements called fewer times are not analysed.
    type: int
    default: 5
  min_statement_cost:
    description:
      - Statements whose generic plan costs less (planner units) are not worth an index and are skipped.
    type: float
    default: 100
  min_saving_pct:
    description:
      - Minimum estimated saving, in per cent of the cost of the statements an index serves. A fixed 50 % (the
        usual default elsewhere) misses large absolute wins; the write-cost gate below keeps this low value safe.
    type: float
    default: 20
  index_write_cost:
    description:
      - Estimated planner cost of maintaining one index entry for one written (inserted or updated) row. The
        table's written rows since its statistics were reset, times this, must be below the saving.
    type: float
    default: 1.0
  max_columns:
    description:
      - Longest index key tried (1 to 3 columns).
    type: int
    default: 2
    choices: [1, 2, 3]
  tables:
    description:
      - Only advise on these tables (C(schema.table) or C(table) for C(public)). Default all.
    type: list
    elements: str
    default: []
  exclude_tables:
    description:
      - Never advise on these tables.
    type: list
    elements: str
    default: []
  use_qualstats:
    description:
      - Add the predicates sampled by C(pg_qualstats) to the plan-derived candidates (when installed and loaded).
    type: bool
    default: true
  apply:
    description:
      - Create the accepted indexes (C(CONCURRENTLY), except on partitioned tables) and verify that the plans use them.
    type: bool
    default: false
  max_new_indexes:
    description:
      - At most this many indexes are created in one run (the highest benefit first).
    type: int
    default: 3
  drop_unused:
    description:
      - Drop advisor-made indexes (marked by their comment) that have had no scan since they were created and are
        older than O(unused_min_age_hours). Indexes this module did not create are never dropped.
    type: bool
    default: false
  unused_min_age_hours:
    description:
      - Age an unused advisor index must reach before O(drop_unused) removes it.
    type: float
    default: 168
  analysis_timeout_ms:
    description:
      - C(statement_timeout) for every EXPLAIN of the analysis.
    type: int
    default: 5000
  build_timeout_s:
    description:
      - C(statement_timeout) for each index build (C(CREATE INDEX CONCURRENTLY) waits for older transactions).
    type: int
    default: 3600
notes:
  - Needs the C(pg_stat_statements) (preloaded) and C(hypopg) extensions in the database; C(pg_qualstats) is
    optional. Counters are those since their last reset (C(pg_stat_statements_reset()), C(pg_stat_reset())).
  - Statements are taken from C(pg_stat_statements) as text and only ever run under C(EXPLAIN) (never executed),
    in a transaction that is rolled back, with O(analysis_timeout_ms). Texts with more than one statement and
    statements that are not SELECT/WITH/UPDATE/DELETE/TABLE/VALUES are skipped.
  - Partitioned tables and partitions are not advised on (an index there belongs to the partitioned table's
    definition; use M(hingecraft.enterprise_db.pg_index)).
seealso:
  - name: pg_stat_statements
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/pgstatstatements.html
  - name: EXPLAIN (GENERIC_PLAN)
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/sql-explain.html
  - name: hypopg
    description: Hypothetical indexes.
    link: https://hypopg.readthedocs.io/
  - module: hingecraft.enterprise_db.pg_index
'''

EXAMPLES = r'''
- name: Report index advice (nothing changes)
  hingecraft.enterprise_db.pg_index_advisor:
    db: hingecraft
  register: advice

- name: Create what the advisor accepts, drop its indexes unused after a week
  hingecraft.enterprise_db.pg_index_advisor:
    db: hingecraft
    tables: [app.members, app.donations]
    apply: true
    drop_unused: true
    unused_min_age_hours: 168
'''

RETURN = r'''
changed:
  description: Whether an index was (in check mode, would be) created or dropped.
  returned: always
  type: bool
queries:
  description: Statements executed (in check mode, those that would be executed).
  returned: always
  type: list
  elements: str
advice:
  description: Accepted proposals, highest benefit first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Index name (C(<table>_<columns>_hcidx)).
      type: str
    table:
      description: C(schema.table).
      type: str
    columns:
      description: Key columns in order.
      type: list
    definition:
      description: The C(CREATE INDEX CONCURRENTLY) statement.
      type: str
    statements:
      description: The statements served - queryid, query, calls, cost_before, cost_after (plan costs).
      type: list
    workload_cost_before:
      description: Sum of calls x plan cost of those statements today.
      type: float
    workload_cost_after:
      description: The same with the index (hypothetical).
      type: float
    saving_pct:
      description: Estimated saving in per cent.
      type: float
    rows_written:
      description: Rows inserted and updated in the table since its statistics were reset.
      type: int
    reason:
      description: Why it was accepted.
      type: str
    created:
      description: Whether this run created it (false in check mode or beyond O(max_new_indexes)).
      type: bool
    verified:
      description: After creation, whether every statement's generic plan uses the index, and the new costs.
      type: dict
rejected:
  description: Proposals that did not pass a gate, with the same keys as RV(advice) and the reason.
  returned: always
  type: list
  elements: dict
statements_skipped:
  description: Statements not analysed, with the reason (not explainable, below min_statement_cost, error).
  returned: always
  type: list
  elements: dict
qualstats:
  description: Whether pg_qualstats predicates were used (V(used), V(not used), or why not).
  returned: always
  type: str
dropped:
  description: Advisor indexes dropped (in check mode, to drop) by this run, with the reason.
  returned: always
  type: list
  elements: dict
advisor_indexes:
  description: Indexes this module created (before any drop of this run) - name, table, valid, scans, age_hours.
  returned: always
  type: list
  elements: dict
diff:
  description: Advisor indexes before and after, in diff mode.
  returned: when diff mode is on
  type: dict
'''

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils import advisor
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.indexes import (
    create_statement,
    drop_statement,
    run_index_statement,
)
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import (
    PgSession,
    ensure_psycopg,
    postgres_common_argument_spec,
    split_qualified,
    sql,
)

STATEMENTS = '''
SELECT s.queryid, min(s.query) AS query, sum(s.calls)::bigint AS calls, sum(s.total_exec_time) AS total_ms
FROM {} s
WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) AND s.toplevel
GROUP BY s.queryid HAVING sum(s.calls) >= %s
ORDER BY sum(s.total_exec_time) DESC LIMIT %s
'''
QUALSTATS = '''
SELECT q.queryid, n.nspname AS schema, c.relname AS table, a.attname AS column
FROM {}.pg_qualstats() q
JOIN pg_catalog.pg_class c ON c.oid = q.lrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = q.lrelid AND a.attnum = q.lattnum
WHERE q.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
GROUP BY 1, 2, 3, 4
'''
TABLE_INFO = '''
SELECT c.oid, c.relkind, c.relispartition, coalesce(st.n_tup_ins + st.n_tup_upd, 0)::bigint AS rows_written,
       ARRAY(SELECT array_to_json(ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1])
                                         WITH ORDINALITY k(n, o)
                                         LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid
                                              AND a.attnum = k.n AND k.n > 0
                                         ORDER BY k.o))::text
             FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
             JOIN pg_catalog.pg_am am ON am.oid = ic.relam
             WHERE i.indrelid = c.oid AND i.indisvalid AND am.amname = 'btree' AND i.indpred IS NULL) AS indexes
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_stat_user_tables st ON st.relid = c.oid
WHERE n.nspname = %s AND c.relname = %s
'''
ADVISOR_INDEXES = '''
SELECT n.nspname AS schema, ic.relname AS name, c.relname AS table, i.indisvalid AS valid,
       coalesce(s.idx_scan, 0)::bigint AS scans, d.description AS comment, c.relkind AS table_kind
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
JOIN pg_catalog.pg_description d ON d.objoid = ic.oid AND d.classoid = 'pg_catalog.pg_class'::regclass
LEFT JOIN pg_catalog.pg_stat_user_indexes s ON s.indexrelid = ic.oid
WHERE d.description LIKE %s ORDER BY 1, 2
'''


def explain(s, text):
    """Generic plan (dict) of a statement text, or (None, error)."""
    rows, err = s.try_query(sql.SQL('EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) ') + sql.SQL(text))
    if err is not None:
        return None, err
    doc = rows[0]['QUERY PLAN']
    if isinstance(doc, str):
        doc = json.loads(doc)
    return doc[0]['Plan'], None


def hypothetical_cost(s, hypo_schema, schema, table, key, text):
    """Plan cost of text with one hypothetical btree index on schema.table (key)."""
    keys = sql.SQL(', ').join(sql.Identifier(c) for c in key)
    ddl = sql.SQL('CREATE INDEX ON {} ({})').format(sql.Identifier(schema, table), keys)
    rows, err = s.try_query(sql.SQL('SELECT indexrelid FROM {}.hypopg_create_index(%s)').format(
        sql.Identifier(hypo_schema)), (ddl.as_string(s.conn),))
    if err is not None:
        return None
    try:
        plan, err = explain(s, text)
        return None if plan is None else float(plan['Total Cost'])
    finally:
        s.query(sql.SQL('SELECT {}.hypopg_drop_index(%s)').format(sql.Identifier(hypo_schema)),
                (rows[0]['indexrelid'],))


def read_advisor_indexes(s):
    now = time.time()
    out = []
    for r in s.query(ADVISOR_INDEXES, (advisor.COMMENT_PREFIX.replace('_', r'\_') + '%',)):
        meta = advisor.parse_comment(r['comment']) or {}
        created = meta.get('created')
        out.append({'name': r['name'], 'schema': r['schema'], 'table': f"{r['schema']}.{r['table']}",
                    'valid': r['valid'], 'scans': r['scans'], 'columns': meta.get('columns'),
                    'age_hours': round((now - created) / 3600.0, 3) if isinstance(created, (int, float)) else None,
                    'partitioned': r['table_kind'] == 'p'})
    return out


class Advisor:
    def __init__(self, s, p, pgss, hypo, qualstats):
        self.s, self.p, self.pgss, self.hypo, self.qualstats = s, p, pgss, hypo, qualstats
        self.tables = {}
        self.skipped = []
        self.qualstats_status = 'not used' if qualstats is None else 'used'
        self.only = {split_qualified(t) for t in p['tables']}
        self.excluded = {split_qualified(t) for t in p['exclude_tables']}

    def table(self, schema, name):
        if (schema, name) not in self.tables:
            rows = self.s.query(TABLE_INFO, (schema, name))
            info = rows[0] if rows else None
            if info is not None:
                info['indexes'] = [tuple(json.loads(x)) for x in info['indexes']]
            self.tables[(schema, name)] = info
        return self.tables[(schema, name)]

    def wanted(self, schema, name):
        if self.only and (schema, name) not in self.only:
            return False
        if (schema, name) in self.excluded:
            return False
        info = self.table(schema, name)
        return info is not None and info['relkind'] in ('r', 'm') and not info['relispartition']

    def qual_columns(self):
        if not self.qualstats:
            return {}
        rows, err = self.s.try_query(sql.SQL(QUALSTATS).format(sql.Identifier(self.qualstats)))
        self.qualstats_status = 'used' if err is None else f'not used: {err}'
        out = {}
        for r in rows or []:
            out.setdefault(r['queryid'], {}).setdefault((r['schema'], r['table']), []).append(r['column'])
        return out

    def statements(self):
        rows = self.s.query(sql.SQL(STATEMENTS).format(sql.Identifier(self.pgss, 'pg_stat_statements')),
                            (self.p['min_calls'], self.p['statements']))
        quals = self.qual_columns()
        for r in rows:
            short = {'queryid': r['queryid'], 'query': r['query'][:500], 'calls': r['calls']}
            text, why = advisor.statement_text(r['query'])
            if text is None:
                self.skipped.append(dict(short, reason=why))
                continue
            plan, err = explain(self.s, text)
            if plan is None:
                self.skipped.append(dict(short, reason=f'EXPLAIN (GENERIC_PLAN) failed: {err}'))
                continue
            cost = float(plan['Total Cost'])
            if cost < self.p['min_statement_cost']:
                self.skipped.append(dict(short, reason=f"plan cost {cost} is below min_statement_cost"))
                continue
            cols = advisor.filtered_columns(plan)
            for rel, extra in quals.get(r['queryid'], {}).items():
                cols.setdefault(rel, [])
                cols[rel] += [c for c in extra if c not in cols[rel]]
            yield dict(short, text=text, cost=cost, columns=cols)

    def proposals(self):
        """One proposal per (table, key): the best key per statement and table, grouped."""
        props = {}
        for st in self.statements():
            for (schema, table), cols in st['columns'].items():
                if not self.wanted(schema, table):
                    continue
                existing = self.table(schema, table)['indexes']
                evals = []
                for key in advisor.candidate_keys(cols, self.p['max_columns']):
                    if advisor.covered(existing, key):
                        continue
                    cost = hypothetical_cost(self.s, self.hypo, schema, table, key, st['text'])
                    if cost is not None:
                        evals.append((key, cost))
                choice = advisor.best(evals)
                if choice is None or choice[1] >= st['cost']:
                    continue
                key, after = choice
                prop = props.setdefault((schema, table, key), {
                    'name': advisor.index_name(table, key), 'table': f'{schema}.{table}', 'schema': schema,
                    'relname': table, 'columns': list(key), 'statements': [],
                    'rows_written': self.table(schema, table)['rows_written']})
                prop['statements'].append({'queryid': st['queryid'], 'query': st['query'], 'calls': st['calls'],
                                           'cost_before': st['cost'], 'cost_after': after, 'text': st['text']})
        self.merge_prefixes(props)
        for prop in props.values():
            prop['workload_cost_before'] = round(sum(x['calls'] * x['cost_before'] for x in prop['statements']), 2)
            prop['workload_cost_after'] = round(sum(x['calls'] * x['cost_after'] for x in prop['statements']), 2)
            prop['saving_pct'] = advisor.saving_pct(prop['workload_cost_before'], prop['workload_cost_after'])
        return sorted(props.values(), key=lambda x: x['workload_cost_after'] - x['workload_cost_before'])

    def merge_prefixes(self, props):
        """A key that is a prefix of another proposal's key on the same table is served by the longer index
        when the longer one costs its statements no more than 5 % extra: keep one index, not two."""
        for short in sorted(props, key=lambda k: len(k[2])):
            longer = [k for k in props if k[:2] == short[:2] and len(k[2]) > len(short[2])
                      and k[2][:len(short[2])] == short[2]]
            for target in longer:
                costs = [hypothetical_cost(self.s, self.hypo, short[0], short[1], target[2], x['text'])
                         for x in props[short]['statements']]
                if all(c is not None and c <= x['cost_after'] * 1.05 + 0.01
                       for c, x in zip(costs, props[short]['statements'])):
                    for c, x in zip(costs, props[short]['statements']):
                        props[target]['statements'].append(dict(x, cost_after=c))
                    del props[short]
                    break


def index_params(key):
    return {'unique': False, 'method': 'btree', 'include': [], 'storage_parameters': {}, 'where': None,
            '_columns': [{'name': c, 'expression': None, 'opclass': None, 'order': None, 'nulls': None} for c in key]}


def build(s, p, prop, existing_by_name):
    """CREATE INDEX CONCURRENTLY + the advisor comment; an invalid leftover of the same name is dropped first."""
    concurrent = True
    old = existing_by_name.get((prop['schema'], prop['name']))
    stmt = create_statement(prop['name'], prop['schema'], prop['relname'], index_params(prop['columns']), concurrent)
    meta = {'created': int(time.time()), 'columns': prop['columns'],
            'queryids': [x['queryid'] for x in prop['statements']], 'saving_pct': prop['saving_pct']}
    comment = sql.SQL('COMMENT ON INDEX {} IS {}').format(sql.Identifier(prop['schema'], prop['name']),
                                                          sql.Literal(advisor.comment_text(meta)))
    with s.autocommit_block():
        if not s.check_mode:
            s.query('SELECT pg_catalog.set_config(%s, %s, false)', ('statement_timeout', f"{p['build_timeout_s']}s"))
        if old is not None and not old['valid']:
            run_index_statement(s, drop_statement(prop['schema'], prop['name'], concurrent), concurrent)
        run_index_statement(s, stmt, concurrent)
        s.execute(comment)
        if not s.check_mode:
            s.query('SELECT pg_catalog.set_config(%s, %s, false)',
                    ('statement_timeout', f"{p['analysis_timeout_ms']}ms"))
    return stmt.as_string(s.conn)


def verify(s, prop):
    """Every statement's generic plan must use the new index; report the costs now."""
    out = {'index_used': True, 'statements': []}
    for x in prop['statements']:
        plan, err = explain(s, x['text'])
        used = plan is not None and prop['name'] in advisor.index_names_in_plan(plan)
        out['index_used'] = out['index_used'] and used
        out['statements'].append({'queryid': x['queryid'], 'index_used': used,
                                  'cost_now': None if plan is None else float(plan['Total Cost']), 'error': err})
    return out


def public(prop):
    out = {k: v for k, v in prop.items() if k not in ('schema', 'relname')}
    out['statements'] = [{k: v for k, v in x.items() if k != 'text'} for x in prop['statements']]
    return out


ARGUMENTS = {
    'statements': {'type': 'int', 'default': 50},
    'min_calls': {'type': 'int', 'default': 5},
    'min_statement_cost': {'type': 'float', 'default': 100},
    'min_saving_pct': {'type': 'float', 'default': 20},
    'index_write_cost': {'type': 'float', 'default': 1.0},
    'max_columns': {'type': 'int', 'default': 2, 'choices': [1, 2, 3]},
    'tables': {'type': 'list', 'elements': 'str', 'default': []},
    'exclude_tables': {'type': 'list', 'elements': 'str', 'default': []},
    'use_qualstats': {'type': 'bool', 'default': True},
    'apply': {'type': 'bool', 'default': False},
    'max_new_indexes': {'type': 'int', 'default': 3},
    'drop_unused': {'type': 'bool', 'default': False},
    'unused_min_age_hours': {'type': 'float', 'default': 168},
    'analysis_timeout_ms': {'type': 'int', 'default': 5000},
    'build_timeout_s': {'type': 'int', 'default': 3600},
}


def validate(p):
    """The first problem with the parameters, or None (pure)."""
    for opt in ('statements', 'analysis_timeout_ms', 'build_timeout_s'):
        if p[opt] < 1:
            return f'{opt} must be positive, got {p[opt]}'
    for opt in ('min_calls', 'max_new_indexes', 'min_statement_cost', 'min_saving_pct', 'index_write_cost',
                'unused_min_age_hours'):
        if p[opt] < 0:
            return f'{opt} must not be negative, got {p[opt]}'
    for opt in ('tables', 'exclude_tables'):
        for t in p[opt]:
            try:
                split_qualified(t)
            except ValueError as e:
                return f'{opt}: {e}'
    return None


def sources(s):
    """(pg_stat_statements schema, hypopg schema); fails naming what is missing."""
    if s.server_version < 160000:
        s.fail('pg_index_advisor needs PostgreSQL 16 or later (EXPLAIN (GENERIC_PLAN))')
    pgss, hypo = s.extension_schema('pg_stat_statements'), s.extension_schema('hypopg')
    missing = [n for n, x in (('pg_stat_statements', pgss), ('hypopg', hypo)) if x is None]
    if missing:
        s.fail('extension(s) not installed in database {}: {} (CREATE EXTENSION; pg_stat_statements must also be '
               'in shared_preload_libraries)'.format(s.conn.info.dbname, ', '.join(missing)))
    return pgss, hypo


def ensure_indexes(s, p, advice, before_idx):
    """Build the accepted advice (apply), drop invalid leftovers (apply) and unused advisor indexes (drop_unused).
    Returns the dropped advisor indexes."""
    by_name = {(x['schema'], x['name']): x for x in before_idx}
    for i, prop in enumerate(advice):
        prop['created'] = False
        prop['definition'] = create_statement(prop['name'], prop['schema'], prop['relname'],
                                              index_params(prop['columns']), True).as_string(s.conn)
        if p['apply'] and i < p['max_new_indexes']:
            build(s, p, prop, by_name)
            prop['created'] = not s.check_mode
    rebuilt = {(x['schema'], x['name']) for i, x in enumerate(advice) if p['apply'] and i < p['max_new_indexes']}
    dropped = []
    for x in before_idx:
        if (x['schema'], x['name']) in rebuilt:
            continue
        stale = p['apply'] and not x['valid']  # a failed build leaves an invalid index behind
        unused = (p['drop_unused'] and x['scans'] == 0 and x['age_hours'] is not None
                  and x['age_hours'] >= p['unused_min_age_hours'])
        if stale or unused:
            concurrent = not x['partitioned']
            run_index_statement(s, drop_statement(x['schema'], x['name'], concurrent), concurrent)
            dropped.append(dict(x, reason='invalid (failed build)' if stale else 'unused'))
    return dropped


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(ARGUMENTS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    ensure_psycopg(module)
    p = module.params
    err = validate(p)
    if err:
        module.fail_json(msg=err)

    s = PgSession(module)
    pgss, hypo = sources(s)
    qualstats = s.extension_schema('pg_qualstats') if p['use_qualstats'] else None
    s.query('SELECT pg_catalog.set_config(%s, %s, false)', ('statement_timeout', f"{p['analysis_timeout_ms']}ms"))
    before_idx = read_advisor_indexes(s)
    adv = Advisor(s, p, pgss, hypo, qualstats)
    for t in p['tables']:
        if adv.table(*split_qualified(t)) is None:
            s.fail('table {}.{} (in tables) does not exist'.format(*split_qualified(t)))
    advice, rejected = [], []
    for prop in adv.proposals():
        ok, prop['reason'] = advisor.gate(prop, p['min_saving_pct'], p['index_write_cost'])
        (advice if ok else rejected).append(prop)

    dropped = ensure_indexes(s, p, advice, before_idx)
    if not module.check_mode:
        for prop in advice:
            if prop['created']:
                prop['verified'] = verify(s, prop)
    gone = {x['name'] for x in dropped}
    after_names = sorted({x['name'] for x in before_idx if x['name'] not in gone}
                         | {x['name'] for x in advice[:p['max_new_indexes']] if p['apply']})
    changed = bool(s.queries)
    s.finish(changed)
    s.close()
    result = {'changed': changed, 'queries': s.queries, 'advice': [public(x) for x in advice],
              'rejected': [public(x) for x in rejected], 'statements_skipped': adv.skipped,
              'advisor_indexes': before_idx, 'dropped': dropped, 'qualstats': adv.qualstats_status}
    if module._diff:
        result['diff'] = {'before': {'advisor_indexes': sorted(x['name'] for x in before_idx)},
                          'after': {'advisor_indexes': after_names}}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
