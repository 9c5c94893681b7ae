# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_index_advisor against PostgreSQL 17 with pg_stat_statements, hypopg and pg_qualstats: a workload with a
missing index gets advice naming it with a cost reduction; an indexed table gets none; a write-heavy table's
proposal is rejected for its write cost; apply builds CONCURRENTLY and the query gets faster; a rerun changes
nothing; an invalid advisor index is rebuilt; unused advisor indexes are dropped; hostile names stay data."""

from __future__ import annotations

import json
import statistics

import pytest
from helpers import CONTAINER, DB, call, catalog_snapshot, psql, psql_value, run_modules, sh

S = 'it_pg_index_advisor'
HOSTILE = 'x"; DROP TABLE canary; --'
HOSTILE_SQL = '"x""; DROP TABLE canary; --"'
HOSTILE_COL_SQL = '"we""ird col"'
ROWS = 100_000


def bound(query, values, times):
    """psql lines that run query through the extended protocol (\\bind), as an application would."""
    args = ' '.join("'{}'".format(str(v).replace("'", "''")) for v in values)
    return f'{query} \\bind {args} \\g /dev/null\n' * times


def workload():
    psql(''.join([
        bound(f'SELECT * FROM {S}.members_adv WHERE email = $1', ['u77@example.org'], 10),
        bound(f'SELECT * FROM {S}.members_adv WHERE email = $1', ['u78@example.org'], 10),
        bound(f'SELECT id, name FROM {S}.clubs_adv WHERE name = $1', ['club 7'], 20),
        bound(f'SELECT count(*) FROM {S}.{HOSTILE_SQL} WHERE {HOSTILE_COL_SQL} = $1', [42], 20),
        bound(f'SELECT count(*) FROM {S}.events_adv WHERE kind = $1', ['k7'], 5),
    ]))


def exec_ms(query):
    """Median server execution time of a literal query (EXPLAIN ANALYZE, 5 runs), recorded in messages only."""
    return statistics.median(explain_analyze(query)['Execution Time'] for unused_run in range(5))


def blocks(query):
    """Shared buffers the query touches (hit + read, EXPLAIN (ANALYZE, BUFFERS)): the work the plan does, the same
    on a loaded machine as on a quiet one - unlike its time."""
    plan = explain_analyze(query, buffers=True)['Plan']
    return plan['Shared Hit Blocks'] + plan['Shared Read Blocks']


def explain_analyze(query, buffers=False):
    opts = 'ANALYZE, BUFFERS, FORMAT JSON' if buffers else 'ANALYZE, FORMAT JSON'
    out = sh(['docker', 'exec', '-i', '-u', 'postgres', CONTAINER, 'psql', '-X', '-q', '-A', '-t', '-v',
              'ON_ERROR_STOP=1', '-d', DB, '-c', f'EXPLAIN ({opts}) {query}']).stdout
    return json.loads(out)[0]


PROBE = f"SELECT * FROM {S}.members_adv WHERE email = 'u4242@example.org'"


@pytest.fixture(scope='module')
def data(schema):
    psql(f'''
        CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
        CREATE EXTENSION IF NOT EXISTS hypopg;
        CREATE EXTENSION IF NOT EXISTS pg_qualstats;
        CREATE TABLE {S}.members_adv (id bigint PRIMARY KEY, email text NOT NULL, club int NOT NULL,
            status text NOT NULL);
        INSERT INTO {S}.members_adv SELECT g, 'u' || g || '@example.org', g % 500, 'active'
            FROM generate_series(1, {ROWS}) g;
        CREATE TABLE {S}.clubs_adv (id bigint PRIMARY KEY, name text NOT NULL);
        INSERT INTO {S}.clubs_adv SELECT g, 'club ' || g FROM generate_series(1, 50000) g;
        CREATE INDEX clubs_adv_name_idx ON {S}.clubs_adv (name);
        CREATE TABLE {S}.{HOSTILE_SQL} (id bigint, {HOSTILE_COL_SQL} int);
        INSERT INTO {S}.{HOSTILE_SQL} SELECT g, g % 1000 FROM generate_series(1, 50000) g;
        CREATE TABLE {S}.events_adv (id bigint, kind text);
        CREATE TABLE {S}.canary (id int);
        ANALYZE {S}.members_adv, {S}.clubs_adv, {S}.{HOSTILE_SQL};
    ''')
    # a session of its own: the loading session's counters reach the statistics when it ends
    psql('SELECT pg_stat_statements_reset(); SELECT pg_stat_reset(); SELECT pg_qualstats_reset();')
    # the write-heavy table: 200,000 rows written since the reset, few reads
    psql(f"INSERT INTO {S}.events_adv SELECT g, 'k' || (g % 100) FROM generate_series(1, 200000) g; "
         f'ANALYZE {S}.events_adv;')
    workload()
    return {'before_ms': exec_ms(PROBE), 'before_blocks': blocks(PROBE)}


def adv(**kw):
    return dict({'tables': [f'{S}.members_adv', f'{S}.clubs_adv', f'{S}.{HOSTILE}', f'{S}.events_adv'],
                 'min_calls': 5}, **kw)


def by_table(items):
    return {x['table']: x for x in items}


def test_advice_check_mode_and_bad_input(data):
    psql('DROP DATABASE IF EXISTS it_advisor_nohypo; CREATE DATABASE it_advisor_nohypo;')
    psql('CREATE EXTENSION pg_stat_statements;', db='it_advisor_nohypo')
    before = catalog_snapshot()
    report, check, missing, no_table, bad_number = run_modules([
        call('pg_index_advisor', adv()),
        call('pg_index_advisor', adv(apply=True), check_mode=True, diff=True),
        call('pg_index_advisor', {'db': 'it_advisor_nohypo'}),
        call('pg_index_advisor', adv(tables=[f'{S}.nope'])),
        call('pg_index_advisor', adv(statements=0)),
    ])
    assert catalog_snapshot() == before, 'the report or check mode changed the catalog'
    assert not report['failed'], report.get('msg')
    assert report['changed'] is False and report['queries'] == []
    advice = by_table(report['advice'])
    members = advice[f'{S}.members_adv']
    assert members['name'] == 'members_adv_email_hcidx' and members['columns'] == ['email']
    assert members['saving_pct'] >= 90, members
    assert members['workload_cost_after'] < members['workload_cost_before'] / 10
    assert sum(x['calls'] for x in members['statements']) == 20
    assert all(x['cost_after'] < x['cost_before'] for x in members['statements'])
    hostile = advice[f'{S}.{HOSTILE}']
    assert hostile['columns'] == ['we"ird col'], hostile
    assert f'{S}.clubs_adv' not in advice and f'{S}.clubs_adv' not in by_table(report['rejected']), \
        'an indexed table got advice'
    events = by_table(report['rejected'])[f'{S}.events_adv']
    assert 'write cost' in events['reason'] and events['rows_written'] >= 200000, events
    assert report['qualstats'] == 'used'

    assert check['changed'] and not check['failed'], check.get('msg')
    assert f'CREATE INDEX CONCURRENTLY "members_adv_email_hcidx" ON "{S}"."members_adv" USING "btree" ("email")' \
        in check['queries']
    assert check['diff']['after']['advisor_indexes'] == sorted([members['name'], hostile['name']])

    assert missing['failed'] and 'not installed in database it_advisor_nohypo: hypopg (' in missing['msg']
    assert no_table['failed'] and f'table {S}.nope (in tables) does not exist' in no_table['msg']
    assert bad_number['failed'] and 'statements must be positive' in bad_number['msg']
    psql('DROP DATABASE it_advisor_nohypo;')


def test_apply_verify_and_rerun(data):
    applied, again = run_modules([call('pg_index_advisor', adv(apply=True), diff=True),
                                  call('pg_index_advisor', adv(apply=True))])
    assert applied['changed'] and not applied['failed'], applied.get('msg')
    made = by_table(applied['advice'])
    assert made[f'{S}.members_adv']['created'] and made[f'{S}.members_adv']['verified']['index_used']
    assert made[f'{S}.{HOSTILE}']['verified']['index_used'], made[f'{S}.{HOSTILE}']
    assert psql_value(f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{S}.members_adv_email_hcidx'::regclass")
    assert psql_value(f"SELECT obj_description('{S}.members_adv_email_hcidx'::regclass, 'pg_class') "
                      "LIKE 'hingecraft.enterprise_db.pg_index_advisor %'")
    assert psql_value(f"SELECT to_regclass('{S}.canary') IS NOT NULL") is True
    assert psql_value(f"SELECT count(*) FROM pg_indexes WHERE schemaname = '{S}' AND tablename = '{HOSTILE}'") == 1
    # the query itself does a tenth of the work or less (shared buffers touched; a timed assertion failed under
    # make test's load with the index used); the times are reported, not asserted
    after_blocks, after_ms = blocks(PROBE), exec_ms(PROBE)
    assert after_blocks * 10 <= data['before_blocks'], (
        f"before {data['before_blocks']} blocks ({data['before_ms']} ms), after {after_blocks} ({after_ms} ms)")

    assert not again['failed'], again.get('msg')
    assert again['changed'] is False and again['queries'] == []
    assert again['advice'] == []
    assert sorted(x['name'] for x in again['advisor_indexes']) == sorted(x['name'] for x in applied['advice'])


def test_invalid_rebuilt_and_unused_dropped(data):
    # a failed concurrent build leaves an invalid index behind: the advisor drops and rebuilds its own
    psql(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{S}.members_adv_email_hcidx'::regclass")
    rebuilt = run_modules([call('pg_index_advisor', adv(apply=True))])[0]
    assert rebuilt['changed'] and not rebuilt['failed'], rebuilt.get('msg')
    assert rebuilt['queries'][:2] == [f'DROP INDEX CONCURRENTLY "{S}"."members_adv_email_hcidx"',
                                      (f'CREATE INDEX CONCURRENTLY "members_adv_email_hcidx" ON "{S}"."members_adv" '
                                       'USING "btree" ("email")')]
    assert psql_value(f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{S}.members_adv_email_hcidx'::regclass")

    # members' index is scanned, the hostile table's is not: only the unused one goes
    psql(bound(f'SELECT * FROM {S}.members_adv WHERE email = $1', ['u5@example.org'], 3))
    hostile_index = psql_value(f"SELECT indexname FROM pg_indexes WHERE schemaname = '{S}' AND tablename = '{HOSTILE}'")
    check = run_modules([call('pg_index_advisor', adv(drop_unused=True, unused_min_age_hours=0), check_mode=True)])[0]
    assert check['changed'] and [x['name'] for x in check['dropped']] == [hostile_index]
    assert check['queries'] == [f'DROP INDEX CONCURRENTLY "{S}".{hostile_index_sql(hostile_index)}']
    assert psql_value(f"SELECT count(*) FROM pg_indexes WHERE schemaname = '{S}' AND tablename = '{HOSTILE}'") == 1
    dropped, again = run_modules([
        call('pg_index_advisor', adv(drop_unused=True, unused_min_age_hours=0), diff=True),
        call('pg_index_advisor', adv(drop_unused=True, unused_min_age_hours=0)),
    ])
    assert dropped['changed'] and not dropped['failed'], dropped.get('msg')
    assert [x['name'] for x in dropped['dropped']] == [hostile_index]
    assert dropped['diff']['after']['advisor_indexes'] == ['members_adv_email_hcidx']
    assert psql_value(f"SELECT count(*) FROM pg_indexes WHERE schemaname = '{S}' AND tablename = '{HOSTILE}'") == 0
    assert psql_value(f"SELECT to_regclass('{S}.members_adv_email_hcidx') IS NOT NULL") is True
    assert psql_value(f"SELECT to_regclass('{S}.clubs_adv_name_idx') IS NOT NULL") is True, 'dropped a user index'
    # the rerun keeps the scanned index and, without apply, proposes the dropped one again but builds nothing
    assert again['changed'] is False, again['queries']
    assert [x['table'] for x in again['advice']] == [f'{S}.{HOSTILE}']


def hostile_index_sql(name):
    return '"{}"'.format(name.replace('"', '""'))
