# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Time-series on TimescaleDB's Apache edition (Debian 13): pg_hypertable (existing table with rows, chunk
interval, retention by drop_chunks), pg_ts_rollup (time_bucket rollup refreshed incrementally, late rows within
the lookback counted), pg_cron_job (the schedules); check mode, reruns, bad and hostile input."""

from __future__ import annotations

import pytest
from helpers import DB, call, catalog_snapshot, psql, psql_rows, psql_value, run_modules

S = 'it_pg_hypertable'
T = f'{S}.activity'
HOSTILE = 'a"; DROP TABLE canary; --'
HOSTILE_SQL = '"a""; DROP TABLE canary; --"'
ROLLUP = f'{S}.activity_daily'
# buckets where the rollup and a fresh aggregate of the source differ (in either direction)
DIFFERENT_BUCKETS = f'''SELECT DISTINCT bucket::text FROM (
    (SELECT time_bucket('1 day', occurred_at) AS bucket, kind, count(*) AS events, count(DISTINCT member_id) AS members
     FROM {T} GROUP BY 1, 2 EXCEPT SELECT bucket, kind, events, members FROM {ROLLUP})
    UNION ALL
    (SELECT bucket, kind, events, members FROM {ROLLUP} EXCEPT
     SELECT time_bucket('1 day', occurred_at), kind, count(*), count(DISTINCT member_id) FROM {T} GROUP BY 1, 2)) d'''
RECONCILE = f'SELECT count(*) FROM ({DIFFERENT_BUCKETS}) b'


@pytest.fixture(scope='module')
def data(schema):
    psql(f'''
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        CREATE EXTENSION IF NOT EXISTS pg_cron;
        CREATE TABLE {T} (activity_id bigint NOT NULL, member_id bigint NOT NULL, kind text NOT NULL,
            occurred_at timestamptz NOT NULL, PRIMARY KEY (activity_id, occurred_at));
        INSERT INTO {T} SELECT g, g % 97, (ARRAY['login', 'post', 'donate'])[1 + g % 3],
            date_trunc('hour', now()) - g * interval '72 minutes' FROM generate_series(1, 2000) g;
        CREATE TABLE {S}.empty_ts (id bigint, at timestamptz NOT NULL);
        CREATE TABLE {S}.{HOSTILE_SQL} (id bigint, "t""s" timestamptz NOT NULL);
        CREATE TABLE {S}.canary (id int);
    ''')
    return schema


def ht(**kw):
    return dict({'name': T, 'time_column': 'occurred_at', 'chunk_interval': '7 days', 'retention': '30 days'}, **kw)


def test_hypertable(data):
    before = catalog_snapshot()
    check = run_modules([call('pg_hypertable', ht(), check_mode=True, diff=True)])[0]
    assert check['changed'] and not check['failed'], check.get('msg')
    assert check['diff']['before'] == {'hypertable': False} and check['diff']['after']['hypertable'] is True
    assert catalog_snapshot() == before, 'check mode changed the catalog'

    created, again, interval, again2, bad_col, bad_type, bad_interval, no_table, empty, hostile = \
        run_modules([
            call('pg_hypertable', ht(), diff=True),
            call('pg_hypertable', ht()),
            call('pg_hypertable', ht(chunk_interval='1 day')),
            call('pg_hypertable', ht(chunk_interval='24 hours')),
            call('pg_hypertable', ht(name=f'{S}.empty_ts', time_column='nope')),
            call('pg_hypertable', ht(name=f'{S}.empty_ts', time_column='id')),
            call('pg_hypertable', ht(name=f'{S}.empty_ts', time_column='at', chunk_interval='soon')),
            call('pg_hypertable', ht(name=f'{S}.missing')),
            call('pg_hypertable', {'name': f'{S}.empty_ts', 'time_column': 'at', 'migrate_data': False}),
            call('pg_hypertable', {'name': f'{S}.{HOSTILE}', 'time_column': 't"s', 'chunk_interval': '1 day'}),
        ])
    assert created['changed'] and not created['failed'], created.get('msg')
    assert created['state']['hypertable'] and created['state']['chunks'] >= 15, created['state']
    assert created['edition'] == 'apache'
    assert created['retention_command'] == (
        f'SELECT "public".drop_chunks(\'"{S}"."activity"\'::regclass, older_than => \'30 days\'::interval)')
    assert again['changed'] is False and again['queries'] == []
    assert interval['changed'] and 'set_chunk_time_interval' in interval['queries'][0]
    assert again2['changed'] is False, 'equal intervals written differently must compare equal'
    assert bad_col['failed'] and 'has no column nope' in bad_col['msg']
    assert bad_type['failed'] and 'time_column id is bigint' in bad_type['msg']
    assert bad_interval['failed'] and "chunk_interval: 'soon' is not an interval" in bad_interval['msg']
    assert no_table['failed'] and f'table {S}.missing does not exist' in no_table['msg']
    assert empty['changed'] and not empty['failed'], empty.get('msg')
    assert hostile['changed'] and not hostile['failed'], hostile.get('msg')
    assert psql_value(f"SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_schema = '{S}'") == 3
    assert psql_value(f"SELECT to_regclass('{S}.canary') IS NOT NULL") is True
    assert psql_value(f'SELECT count(*) FROM {T}') == 2000, 'migrate_data lost rows'

    # a table with rows is refused without migrate_data
    psql(f"CREATE TABLE {S}.with_rows (at timestamptz NOT NULL); INSERT INTO {S}.with_rows VALUES (now());")
    refused = run_modules([call('pg_hypertable', {'name': f'{S}.with_rows', 'time_column': 'at',
                                                  'migrate_data': False})])[0]
    assert refused['failed'] and 'has rows: set migrate_data' in refused['msg']


def test_retention(data):
    recent = psql_value(f"SELECT count(*) FROM {T} WHERE occurred_at > now() - interval '30 days'")
    old = psql_value(f"SELECT count(*) FROM {T} WHERE occurred_at < now() - interval '40 days'")
    assert old > 0
    enforced, again = run_modules([call('pg_hypertable', ht(chunk_interval='1 day', enforce_retention=True)),
                                   call('pg_hypertable', ht(chunk_interval='1 day', enforce_retention=True))])
    assert enforced['changed'] and enforced['queries'] == [enforced['retention_command']], enforced.get('msg')
    assert again['changed'] is False, 'no chunk is older than the retention any more'
    assert psql_value(f"SELECT count(*) FROM {T} WHERE occurred_at < now() - interval '40 days'") == 0
    assert psql_value(f"SELECT count(*) FROM {T} WHERE occurred_at > now() - interval '30 days'") == recent


def rollup(**kw):
    return dict({'name': ROLLUP, 'source': T, 'time_column': 'occurred_at', 'bucket': '1 day', 'group_by': ['kind'],
                 'aggregates': {'events': 'count(*)', 'members': 'count(DISTINCT member_id)'},
                 'lookback': '2 days'}, **kw)


def test_rollup_incremental_and_late_rows(data):
    before = catalog_snapshot()
    check = run_modules([call('pg_ts_rollup', rollup(), check_mode=True)])[0]
    assert check['changed'] and not check['failed'], check.get('msg')
    assert catalog_snapshot() == before, 'check mode changed the catalog'
    created, again, bad_col, dup = run_modules([
        call('pg_ts_rollup', rollup(), diff=True),
        call('pg_ts_rollup', rollup()),
        call('pg_ts_rollup', rollup(name=f'{S}.other', group_by=['nope'])),
        call('pg_ts_rollup', rollup(name=f'{S}.other', aggregates={'kind': 'count(*)'})),
    ])
    assert created['changed'] and not created['failed'], created.get('msg')
    assert created['refresh_command'] == f'SELECT "{S}"."activity_daily_refresh"()'
    assert again['changed'] is False and again['queries'] == []
    assert bad_col['failed'] and 'unknown column(s) in source' in bad_col['msg'] and 'nope' in bad_col['msg']
    assert dup['failed'] and 'output columns must be unique' in dup['msg']
    assert psql_value(RECONCILE) == 0
    assert psql_value(f'SELECT sum(events) FROM {ROLLUP}') == psql_value(f'SELECT count(*) FROM {T}')

    # new rows, a late row inside the lookback, a late row far behind it
    psql(f'''INSERT INTO {T} VALUES (900001, 1, 'post', now()), (900002, 2, 'login', now() - interval '1 day'),
             (900003, 3, 'donate', now() - interval '20 days');''')
    n = psql_value(f'SELECT {S}.activity_daily_refresh()')
    assert n > 0
    far = psql_value(f"SELECT events FROM {ROLLUP} WHERE bucket = time_bucket('1 day', now() - interval '20 days') "
                     "AND kind = 'donate'")
    assert psql_rows(DIFFERENT_BUCKETS) == [{'bucket': psql_value(
        "SELECT time_bucket('1 day', now() - interval '20 days')::text")}], \
        'after an incremental refresh only the bucket of the row behind the lookback differs'
    psql_value(f'SELECT {S}.activity_daily_refresh(true)')
    assert psql_value(RECONCILE) == 0
    assert psql_value(f"SELECT events FROM {ROLLUP} WHERE bucket = time_bucket('1 day', now() - interval '20 days') "
                      "AND kind = 'donate'") == (far or 0) + 1

    # a new aggregate: the rollup (derived data) is rebuilt and refilled
    changed = run_modules([call('pg_ts_rollup', rollup(aggregates={'events': 'count(*)',
                                                                   'members': 'count(DISTINCT member_id)',
                                                                   'first_at': 'min(occurred_at)'}))])[0]
    assert changed['changed'] and any(q.startswith('DROP TABLE') for q in changed['queries'])
    assert psql_value(f'SELECT count(*) FROM {ROLLUP} WHERE first_at IS NULL') == 0


def job(**kw):
    return dict({'name': 'hc_it_rollup', 'schedule': '*/5 * * * *', 'command': f'SELECT {S}.activity_daily_refresh()',
                 'database': DB}, **kw)


def test_cron_job(data):
    before = catalog_snapshot()
    check = run_modules([call('pg_cron_job', job(), check_mode=True)])[0]
    assert check['changed'] and not check['failed'], check.get('msg')
    assert catalog_snapshot() == before, 'check mode changed the catalog'
    created, again, altered, no_db, absent, absent_again = run_modules([
        call('pg_cron_job', job(), diff=True),
        call('pg_cron_job', job()),
        call('pg_cron_job', job(schedule='*/10 * * * *', active=False), diff=True),
        call('pg_cron_job', job(name='hc_it_other', database='no_such_db')),
        call('pg_cron_job', {'name': 'hc_it_rollup', 'state': 'absent'}),
        call('pg_cron_job', {'name': 'hc_it_rollup', 'state': 'absent'}),
    ])
    assert created['changed'] and created['state'] == {'exists': True, 'schedule': '*/5 * * * *',
                                                       'command': f'SELECT {S}.activity_daily_refresh()',
                                                       'database': DB, 'active': True}, created
    assert again['changed'] is False and again['queries'] == []
    assert altered['changed'] and altered['queries'][0].startswith('SELECT cron.alter_job(')
    assert altered['diff']['after']['schedule'] == '*/10 * * * *' and altered['diff']['after']['active'] is False
    assert no_db['failed'] and 'database no_such_db does not exist' in no_db['msg']
    assert absent['changed'] and absent_again['changed'] is False
    assert psql_value("SELECT count(*) FROM cron.job WHERE jobname LIKE 'hc_it_%'") == 0
