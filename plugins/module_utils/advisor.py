# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure logic of pg_index_advisor (no database access; unit tested in tests/unit).

The module reads statements from pg_stat_statements, asks PostgreSQL for their generic plans
(``EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON)``) and costs hypothetical indexes (hypopg). This file holds
what can be decided from the texts and numbers alone: which statement texts may be explained, which columns a
plan filters on, which indexes to try, which plan is best, whether the saving clears the thresholds and
outweighs the write cost, and how an advisor-made index is named and marked.
"""

from __future__ import annotations

import hashlib
import json
import re

COMMENT_PREFIX = 'hingecraft.enterprise_db.pg_index_advisor '
EXPLAINABLE = ('select', 'with', 'update', 'delete', 'table', 'values')
# statements about the advisor's own sources are never advice material
OWN_SOURCES = ('pg_stat_statements', 'hypopg', 'pg_qualstats', 'pg_catalog.', 'information_schema.')
SYSTEM_SCHEMAS = ('pg_catalog', 'information_schema', 'pg_toast')

_PREPARE = re.compile(r'^\s*prepare\s+("(?:[^"]|"")+"|[^\s(]+)\s*(\([^)]*\))?\s+as\s+', re.IGNORECASE | re.DOTALL)
_TOKEN = re.compile(r"""
    (?P<string>'(?:[^']|'')*')        # a literal: skipped
  | (?P<quoted>"(?:[^"]|"")*")        # a quoted identifier
  | (?P<ident>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<dot>\.)
  | (?P<other>\S)
""", re.VERBOSE)


def strip_comments(text):
    """Leading SQL comments and whitespace removed."""
    while True:
        t = text.lstrip()
        if t.startswith('--'):
            nl = t.find('\n')
            text = '' if nl < 0 else t[nl + 1:]
        elif t.startswith('/*'):
            end = t.find('*/')
            text = '' if end < 0 else t[end + 2:]
        else:
            return t


def statement_text(query):
    """The explainable text of a pg_stat_statements entry, or (None, reason).

    ``PREPARE name (types) AS`` is removed (psql's and PL/pgSQL clients' prepared statements); only
    SELECT/WITH/UPDATE/DELETE/TABLE/VALUES are explained (EXPLAIN never runs them); a text with a second
    statement is refused, since EXPLAIN would cover only the first one.
    """
    if not query or not query.strip():
        return None, 'empty statement text'
    text = strip_comments(query)
    m = _PREPARE.match(text)
    if m:
        text = strip_comments(text[m.end():])
    text = text.rstrip().rstrip(';').rstrip()
    low = text.lower()
    first = re.match(r'[a-z]+', low)
    if not first or first.group(0) not in EXPLAINABLE:
        return None, 'not a query (only {} are explained)'.format('/'.join(k.upper() for k in EXPLAINABLE))
    if any(kind == 'other' and value == ';' for kind, value in tokens(text)):
        return None, 'more than one statement in the text'
    if any(src in low for src in OWN_SOURCES):
        return None, 'reads system catalogs or the advisor sources'
    return text, None


def _ident(tok):
    kind, value = tok
    if kind == 'quoted':
        return value[1:-1].replace('""', '"')
    if kind == 'ident':
        return value
    return None


def tokens(expr):
    return [(m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN.finditer(expr or '')]


def qualified_columns(expr, alias):
    """Column names that ``alias.column`` references in an EXPLAIN VERBOSE expression, in order of appearance.

    EXPLAIN VERBOSE qualifies every column with its relation's alias and quotes identifiers that need it, so
    ``(x."co""l" = $1) AND (x.b ~~ 'a.b'::text)`` -> ``['co"l', 'b']``; literals are skipped.
    """
    toks = [t for t in tokens(expr) if t[0] != 'string']
    found = []
    for i in range(len(toks) - 2):
        if _ident(toks[i]) == alias and toks[i + 1][0] == 'dot':
            if i > 0 and toks[i - 1][0] == 'dot':
                continue  # schema.alias.column is not printed by EXPLAIN; a.b.c belongs to another relation
            col = _ident(toks[i + 2])
            if col is not None and col not in found:
                found.append(col)
    return found


def scan_nodes(plan):
    """Every plan node that reads a relation (has a Relation Name), depth first."""
    stack = [plan]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if 'Relation Name' in node:
            yield node
        stack.extend(reversed(node.get('Plans') or []))


def index_names_in_plan(plan):
    names = set()
    stack = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get('Index Name'):
                names.add(node['Index Name'])
            stack.extend(node.get('Plans') or [])
    return names


def filtered_columns(plan):
    """{(schema, table): [columns]} that the plan's scans filter on (Filter, Index Cond, Recheck Cond)."""
    out = {}
    for node in scan_nodes(plan):
        schema, table = node.get('Schema'), node['Relation Name']
        if schema is None or schema in SYSTEM_SCHEMAS or schema.startswith(('pg_', '_timescaledb')):
            continue
        alias = node.get('Alias', table)
        cols = out.setdefault((schema, table), [])
        for key in ('Index Cond', 'Recheck Cond', 'Filter'):
            for c in qualified_columns(node.get(key), alias):
                if c not in cols:
                    cols.append(c)
    return {k: v for k, v in out.items() if v}


def candidate_keys(columns, max_columns=2, limit=4):
    """Column lists to try as btree keys: every single column, then ordered pairs (then triples) of the first
    ``limit`` columns. ``[a, b]`` -> ``[(a,), (b,), (a, b), (b, a)]``."""
    cols = list(dict.fromkeys(columns))[:limit]
    keys = [(c,) for c in cols]
    if max_columns >= 2:
        keys += [(a, b) for a in cols for b in cols if a != b]
    if max_columns >= 3:
        keys += [(a, b, c) for a in cols for b in cols for c in cols if len({a, b, c}) == 3]
    return keys


def covered(existing, key):
    """True when an existing btree index's leading key columns are ``key`` (or start with it)."""
    return any(tuple(cols[:len(key)]) == tuple(key) for cols in existing)


def best(evaluations, tolerance=0.01):
    """The cheapest (key, cost) pair; among plans within ``tolerance`` of it, the one with fewest columns."""
    if not evaluations:
        return None
    low = min(cost for unused_key, cost in evaluations)
    near = [(k, c) for k, c in evaluations if c <= low * (1 + tolerance) + 1e-9]
    return min(near, key=lambda kc: (len(kc[0]), kc[1]))


def saving_pct(before, after):
    if before <= 0:
        return 0.0
    return round(100.0 * (before - after) / before, 2)


def gate(advice, min_saving_pct, index_write_cost):
    """Accept or reject one index proposal; returns (accepted, reason).

    ``advice`` carries ``workload_cost_before``/``workload_cost_after`` (calls x plan cost summed over the
    statements the index serves) and ``rows_written`` (inserted + updated rows of the table since its
    statistics were reset). The benefit is the workload cost saved; the write cost is rows_written x
    index_write_cost (planner cost units to maintain one index entry).
    """
    pct = saving_pct(advice['workload_cost_before'], advice['workload_cost_after'])
    benefit = advice['workload_cost_before'] - advice['workload_cost_after']
    write_cost = advice['rows_written'] * index_write_cost
    if pct < min_saving_pct:
        return False, f'estimated saving {pct} % is below min_saving_pct {min_saving_pct} %'
    if benefit <= write_cost:
        return False, (f'write cost {write_cost:.0f} ({advice["rows_written"]} rows written x {index_write_cost}) '
                       f'outweighs the estimated saving {benefit:.0f}')
    return True, f'saves {pct} % of the estimated cost of {len(advice["statements"])} statement(s)'


def index_name(table, key, suffix='_hcidx'):
    """``<table>_<col>_<col>_hcidx`` within PostgreSQL's 63 bytes (cut and made unique by a short hash)."""
    raw = '_'.join([table] + list(key)) + suffix
    if len(raw.encode('utf-8')) <= 63:
        return raw
    digest = hashlib.sha256(raw.encode('utf-8')).hexdigest()[:8]
    tail = f'_{digest}{suffix}'
    head = raw.encode('utf-8')[:63 - len(tail)].decode('utf-8', 'ignore')
    return head + tail


def comment_text(meta):
    """COMMENT ON INDEX text that marks an advisor-made index (and what it was made for)."""
    return COMMENT_PREFIX + json.dumps(meta, sort_keys=True, separators=(',', ':'))


def parse_comment(text):
    """The metadata of an advisor comment, or None for any other comment."""
    if not text or not text.startswith(COMMENT_PREFIX):
        return None
    try:
        meta = json.loads(text[len(COMMENT_PREFIX):])
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}
