# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_matview against PostgreSQL 17: create with unique index and pg_cron schedule, refresh, replace on definition
change (privileges kept), hostile/invalid input."""

from __future__ import annotations

import pytest
from helpers import call, catalog_snapshot, psql, psql_rows, psql_value, run_modules

Q1 = ('SELECT campaign, country, count(*) AS donations, sum(amount) AS total '
      'FROM it_pg_matview.donations GROUP BY campaign, country')
Q2 = ('SELECT campaign, country, count(*) AS donations, sum(amount) AS total, max(amount) AS largest '
      'FROM it_pg_matview.donations GROUP BY campaign, country')
MV = 'it_pg_matview.donation_summary'


@pytest.fixture(scope='module')
def data(schema):
    psql(f'''
        CREATE EXTENSION IF NOT EXISTS pg_cron;
        CREATE TABLE {schema}.donations (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, campaign text NOT NULL,
            country text NOT NULL, amount numeric(12,2) NOT NULL);
        INSERT INTO {schema}.donations (campaign, country, amount)
            SELECT 'c' || (g % 3), (ARRAY['DE','FR','PL'])[1 + g % 3], g FROM generate_series(1, 300) g;
        CREATE TABLE {schema}.canary (id int);
        DO $$ BEGIN CREATE ROLE it_mv_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
    ''')
    return schema


def spec(**kw):
    return dict({'name': MV, 'query': Q1, 'unique_index': ['campaign', 'country'], 'schedule': '*/5 * * * *'}, **kw)


def test_create_schedule_idempotent(data):
    before = catalog_snapshot()
    check = run_modules([call('pg_matview', spec(), check_mode=True, diff=True)])[0]
    assert check['changed'] and not check['failed'], check.get('msg')
    assert check['diff']['before']['exists'] is False and check['diff']['after']['exists'] is True
    assert catalog_snapshot() == before, 'check mode changed the catalog'

    hostile = f'{data}.x"; DROP TABLE canary; --'
    created, again, bad_col, no_query, hostile_r = run_modules([
        call('pg_matview', spec(), diff=True),
        call('pg_matview', spec()),
        call('pg_matview', spec(name=f'{data}.other', unique_index=['campaign', 'nope'])),
        call('pg_matview', spec(name=f'{data}.other', query='SELECT nope FROM it_pg_matview.donations')),
        call('pg_matview', {'name': hostile, 'query': 'SELECT 1 AS one'}),
    ])
    assert created['changed'] and not created['failed'], created.get('msg')
    assert created['queries'][0].startswith(f'CREATE MATERIALIZED VIEW "{data}"."donation_summary" AS SELECT')
    assert created['diff']['after']['unique_index'] == ['campaign', 'country']
    assert again['changed'] is False and again['queries'] == []
    assert bad_col['failed'] and 'unknown column(s) in unique_index: nope' in bad_col['msg']
    assert no_query['failed'] and 'nope' in no_query['msg']
    assert hostile_r['changed'] and not hostile_r['failed'], hostile_r.get('msg')

    assert psql_value(f'SELECT count(*) FROM {MV}') == 3
    assert psql_value(f"SELECT relispopulated FROM pg_class WHERE oid = '{MV}'::regclass")
    assert psql_value("SELECT indexdef FROM pg_indexes WHERE indexname = 'donation_summary_uidx'") == (
        f'CREATE UNIQUE INDEX donation_summary_uidx ON {MV} USING btree (campaign, country)')
    jobs = psql_rows(f"SELECT schedule, command FROM cron.job WHERE jobname = 'hc_refresh_{MV}'")
    assert jobs == [{'schedule': '*/5 * * * *', 'command': f'REFRESH MATERIALIZED VIEW CONCURRENTLY "{data}"."donation_summary"'}]
    assert psql_value(f"SELECT to_regclass('{data}.canary') IS NOT NULL") is True
    assert psql_value(f"SELECT to_regclass('{data}.other') IS NULL") is True
    assert psql_value("SELECT count(*) FROM pg_class WHERE relname = 'x\"; DROP TABLE canary; --' AND relkind = 'm'") == 1


def test_refresh_replace_and_unschedule(data):
    psql(f"GRANT SELECT ON {MV} TO it_mv_reader; INSERT INTO {data}.donations (campaign, country, amount) "
         "VALUES ('c9', 'DE', 5)")
    refreshed, replaced, again, unscheduled = run_modules([
        call('pg_matview', spec(refresh=True)),
        call('pg_matview', spec(query=Q2), diff=True),
        call('pg_matview', spec(query=Q2)),
        call('pg_matview', spec(query=Q2, schedule=None, schedule_state='absent'), diff=True),
    ])
    assert refreshed['changed'] and refreshed['queries'] == [
        f'REFRESH MATERIALIZED VIEW CONCURRENTLY "{data}"."donation_summary"']
    assert replaced['changed'] and not replaced['failed'], replaced.get('msg')
    assert 'largest' in replaced['diff']['after']['definition']
    assert 'largest' not in replaced['diff']['before']['definition']
    assert f'GRANT SELECT ON "{data}"."donation_summary" TO "it_mv_reader"' in replaced['queries']
    assert again['changed'] is False
    assert unscheduled['changed'] and unscheduled['diff']['after']['schedule'] is None
    assert psql_value(f'SELECT count(*) FROM {MV}') == 4
    assert psql_value(f"SELECT has_table_privilege('it_mv_reader', '{MV}', 'SELECT')") is True
    assert psql_value("SELECT count(*) FROM pg_class WHERE relname LIKE 'donation_summary%'") == 2  # view + index
    assert psql_value(f"SELECT count(*) FROM cron.job WHERE jobname = 'hc_refresh_{MV}'") == 0


def test_absent(data):
    check, dropped, again = run_modules([call('pg_matview', {'name': MV, 'state': 'absent'}, check_mode=True),
                                         call('pg_matview', {'name': MV, 'state': 'absent'}),
                                         call('pg_matview', {'name': MV, 'state': 'absent'})])
    assert check['changed'] and dropped['changed'] and again['changed'] is False
    assert psql_value(f"SELECT to_regclass('{MV}') IS NULL") is True
