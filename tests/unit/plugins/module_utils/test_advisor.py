# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_index_advisor's pure logic: which texts are explained, which columns a plan filters on, which keys are
tried, which plan wins, the gates, names and the marker comment."""

from __future__ import annotations

import pytest
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils import advisor


@pytest.mark.parametrize('query, text', [
    ('SELECT * FROM t WHERE a = $1', 'SELECT * FROM t WHERE a = $1'),
    ('  -- from the app\n/* x */ select 1 from t;', 'select 1 from t'),
    ('PREPARE q1(text) AS SELECT * FROM t WHERE email = $1', 'SELECT * FROM t WHERE email = $1'),
    ('prepare "my q" as UPDATE t SET a = $1 WHERE b = $2', 'UPDATE t SET a = $1 WHERE b = $2'),
    ('SELECT count(*) FROM s."x""; DROP TABLE y; --" WHERE "c;" = $1',
     'SELECT count(*) FROM s."x""; DROP TABLE y; --" WHERE "c;" = $1'),
])
def test_statement_text_accepts(query, text):
    assert advisor.statement_text(query) == (text, None)


@pytest.mark.parametrize('query, reason', [
    ('', 'empty'),
    ('VACUUM t', 'not a query'),
    ('INSERT INTO t VALUES ($1)', 'not a query'),
    ('SELECT 1; DROP TABLE t', 'more than one statement'),
    ('SELECT * FROM pg_stat_statements', 'advisor sources'),
    ('SELECT * FROM public.hypopg_create_index($1)', 'advisor sources'),
])
def test_statement_text_refuses(query, reason):
    text, why = advisor.statement_text(query)
    assert text is None and reason in why


def test_qualified_columns_reads_the_alias_only_and_skips_literals():
    expr = '''((x."co""l" = $1) AND (x.b ~~ 'x.c'::text) AND (y.d = x.e) AND (x.b > 3))'''
    assert advisor.qualified_columns(expr, 'x') == ['co"l', 'b', 'e']
    assert advisor.qualified_columns(expr, 'y') == ['d']
    assert advisor.qualified_columns(None, 'x') == []


PLAN = {'Node Type': 'Aggregate', 'Total Cost': 2324.18, 'Plans': [
    {'Node Type': 'Hash Join', 'Plans': [
        {'Node Type': 'Seq Scan', 'Relation Name': 't', 'Schema': 'app', 'Alias': 't',
         'Filter': '((t.club = $1) AND (t.status = $2))'},
        {'Node Type': 'Bitmap Heap Scan', 'Relation Name': 'u', 'Schema': 'app', 'Alias': 'u',
         'Recheck Cond': '(u.id = $3)', 'Plans': [{'Node Type': 'Bitmap Index Scan', 'Index Name': 'u_pkey'}]},
        {'Node Type': 'Seq Scan', 'Relation Name': 'pg_class', 'Schema': 'pg_catalog', 'Alias': 'c',
         'Filter': '(c.relname = $4)'},
    ]}]}


def test_filtered_columns_per_relation_without_system_schemas():
    assert advisor.filtered_columns(PLAN) == {('app', 't'): ['club', 'status'], ('app', 'u'): ['id']}
    assert advisor.index_names_in_plan(PLAN) == {'u_pkey'}


def test_candidate_keys():
    assert advisor.candidate_keys(['a', 'b']) == [('a',), ('b',), ('a', 'b'), ('b', 'a')]
    assert advisor.candidate_keys(['a', 'b'], max_columns=1) == [('a',), ('b',)]
    assert len(advisor.candidate_keys(['a', 'b', 'c'], max_columns=3)) == 3 + 6 + 6
    assert len(advisor.candidate_keys(list('abcdef'))) == 4 + 12, 'at most four columns are combined'


def test_covered_and_best():
    assert advisor.covered([('a', 'b')], ('a',)) and advisor.covered([('a', 'b')], ('a', 'b'))
    assert not advisor.covered([('a', 'b')], ('b',)) and not advisor.covered([], ('a',))
    # the two-column key is only 0.5 % cheaper: the single column wins
    assert advisor.best([(('a', 'b'), 99.5), (('a',), 100.0), (('b',), 400.0)]) == (('a',), 100.0)
    assert advisor.best([(('a', 'b'), 10.0), (('a',), 100.0)]) == (('a', 'b'), 10.0)
    assert advisor.best([]) is None


def proposal(before, after, written, statements=1):
    return {'workload_cost_before': before, 'workload_cost_after': after, 'rows_written': written,
            'statements': [{}] * statements}


def test_gate_saving_and_write_cost():
    assert advisor.gate(proposal(1000, 100, 0), 20, 1.0) == (True, 'saves 90.0 % of the estimated cost of 1 statement(s)')
    ok, why = advisor.gate(proposal(1000, 900, 0), 20, 1.0)
    assert not ok and 'below min_saving_pct' in why
    # 40 % saving on a busy statement: a fixed 50 % threshold would miss it
    assert advisor.gate(proposal(1_000_000, 600_000, 1000), 20, 1.0)[0] is True
    ok, why = advisor.gate(proposal(41680, 161, 100000), 20, 1.0)
    assert not ok and 'write cost 100000' in why


def test_index_name_fits_63_bytes_and_stays_unique():
    assert advisor.index_name('members', ('email',)) == 'members_email_hcidx'
    long_a = advisor.index_name('t' * 60, ('a',))
    long_b = advisor.index_name('t' * 60, ('b',))
    assert len(long_a.encode()) <= 63 and long_a.endswith('_hcidx') and long_a != long_b
    assert len(advisor.index_name('ä' * 40, ('ö' * 10,)).encode()) <= 63


def test_comment_round_trip():
    text = advisor.comment_text({'created': 1, 'columns': ['a']})
    assert text.startswith(advisor.COMMENT_PREFIX)
    assert advisor.parse_comment(text) == {'created': 1, 'columns': ['a']}
    assert advisor.parse_comment('someone else') is None
    assert advisor.parse_comment(advisor.COMMENT_PREFIX + '{broken') == {}


def test_module_validate_names_the_bad_option():
    from ansible_collections.hingecraft.enterprise_db.plugins.modules.pg_index_advisor import ARGUMENTS, validate
    good = {k: v.get('default') for k, v in ARGUMENTS.items()}
    assert validate(good) is None
    assert validate(dict(good, statements=0)) == 'statements must be positive, got 0'
    assert validate(dict(good, min_saving_pct=-1)) == 'min_saving_pct must not be negative, got -1'
    assert validate(dict(good, tables=['a.b.c'])).startswith('tables: object name')
