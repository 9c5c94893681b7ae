# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The warehouse (roles/schema/files/warehouse, applied by the schema role's analytics phase through pg_migrate) against PostgreSQL 17: dw.etl_run() loads
the star schema incrementally; counts and sums reconcile with the operational tables after inserts (late-arriving
rows included), updates (member SCD type 2) and reruns; a fact whose member is unknown waits below the watermark."""

from __future__ import annotations

import pytest
from helpers import DB, call, psql, psql_rows, psql_value, run_modules, run_playbook

# (tenant, campaign, month) -> count, sum: the source and the warehouse must agree row for row
DIFF = '''SELECT count(*) FROM (
  (SELECT tenant_id, campaign, date_trunc('month', donated_at AT TIME ZONE 'UTC') AS m, count(*), sum(amount)
   FROM app.donations GROUP BY 1, 2, 3
   EXCEPT SELECT f.tenant_id, f.campaign, date_trunc('month', d.day), count(*), sum(f.amount)
   FROM dw.fact_donation f JOIN dw.dim_date d USING (date_key) GROUP BY 1, 2, 3)
  UNION ALL
  (SELECT f.tenant_id, f.campaign, date_trunc('month', d.day), count(*), sum(f.amount)
   FROM dw.fact_donation f JOIN dw.dim_date d USING (date_key) GROUP BY 1, 2, 3
   EXCEPT SELECT tenant_id, campaign, date_trunc('month', donated_at AT TIME ZONE 'UTC'), count(*), sum(amount)
   FROM app.donations GROUP BY 1, 2, 3)) x'''


@pytest.fixture(scope='module')
def warehouse(pg_container):
    psql('''
        DROP SCHEMA IF EXISTS dw CASCADE; DROP SCHEMA IF EXISTS app CASCADE; DROP TABLE IF EXISTS public.hc_warehouse_history;
        CREATE EXTENSION IF NOT EXISTS pg_cron;
        CREATE SCHEMA app;
        CREATE TABLE app.members (member_id bigint NOT NULL, tenant_id text NOT NULL, country char(2) NOT NULL,
            email text NOT NULL, display_name text NOT NULL, status text NOT NULL DEFAULT 'active',
            joined_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (member_id, country));
        CREATE TABLE app.clubs (club_id bigint PRIMARY KEY, tenant_id text NOT NULL, name text NOT NULL,
            country char(2) NOT NULL);
        CREATE TABLE app.donations (donation_id bigint NOT NULL, tenant_id text NOT NULL, member_id bigint NOT NULL,
            campaign text NOT NULL, country char(2) NOT NULL, amount numeric(12,2) NOT NULL,
            currency char(3) NOT NULL DEFAULT 'USD', donated_at timestamptz NOT NULL, PRIMARY KEY (donation_id, donated_at));
        CREATE TABLE app.member_activity (activity_id bigint PRIMARY KEY, tenant_id text NOT NULL,
            member_id bigint NOT NULL, kind text NOT NULL, occurred_at timestamptz NOT NULL);
        INSERT INTO app.members (member_id, tenant_id, country, email, display_name, joined_at)
            SELECT g, (ARRAY['acme','globex'])[1 + g % 2], (ARRAY['US','DE','FR'])[1 + g % 3], 'm' || g || '@x',
                   'Member ' || g, now() - interval '400 days' FROM generate_series(1, 300) g;
        INSERT INTO app.clubs SELECT g, 'acme', 'Club ' || g, 'US' FROM generate_series(1, 10) g;
        INSERT INTO app.donations (donation_id, tenant_id, member_id, campaign, country, amount, donated_at)
            SELECT g, (ARRAY['acme','globex'])[1 + (g % 300 + 1) % 2], g % 300 + 1, 'c' || (g % 4),
                   (ARRAY['US','DE','FR'])[1 + (g % 300 + 1) % 3], (g % 97) + 0.5, now() - (g % 365) * interval '1 day'
            FROM generate_series(1, 3000) g;
        INSERT INTO app.member_activity SELECT g, 'acme', g % 300 + 1, 'login', now() - (g % 90) * interval '1 day'
            FROM generate_series(1, 2000) g;
    ''')
    # roles/schema's analytics phase with the warehouse on: pg_migrate (SQL passed from the controller; nothing is
    # copied to the host, so a new primary after a failover has nothing to change) and the ETL job
    first, second = run_playbook(role_tasks()), run_playbook(role_tasks())
    (stats1,), (stats2,) = first['stats'].values(), second['stats'].values()
    assert stats1['failures'] == 0 and stats1['changed'] == 2, stats1
    assert stats2['failures'] == 0 and stats2['changed'] == 0, stats2
    assert psql_value("SELECT count(*) FROM public.hc_warehouse_history") == 2
    yield
    psql("DROP SCHEMA dw CASCADE; DROP SCHEMA app CASCADE; DROP TABLE public.hc_warehouse_history; "
         f"SELECT cron.unschedule('hc_etl_{DB}.dw');")


def role_tasks():
    return [{'name': 'analytics phase', 'ansible.builtin.include_role': {
        'name': 'hingecraft.enterprise_db.schema', 'tasks_from': 'analytics'},
        'vars': {'ansible_become': False, 'schema_database': DB, 'schema_cron_database': DB, 'schema_name': 'app',
                 'schema_warehouse': True}}]


def etl():
    return {r['step']: r['rows_changed'] for r in psql_rows('SELECT * FROM dw.etl_run()')}


def reconcile():
    assert psql_value(DIFF) == 0, 'donations per tenant, campaign and month differ between app and dw'
    assert psql_value('SELECT count(*) FROM dw.fact_donation') == psql_value('SELECT count(*) FROM app.donations')
    assert psql_value('SELECT sum(amount) FROM dw.fact_donation') == psql_value('SELECT sum(amount) FROM app.donations')
    assert psql_value('SELECT count(*) FROM dw.fact_activity') == psql_value('SELECT count(*) FROM app.member_activity')
    assert psql_value('SELECT count(*) FROM dw.dim_member WHERE valid_to IS NULL') == psql_value(
        'SELECT count(*) FROM app.members')


def test_initial_load_reconciles_and_rerun_is_idempotent(warehouse):
    first = etl()
    assert first['fact_donation'] == 3000 and first['fact_activity'] == 2000 and first['dim_member_opened'] == 300
    reconcile()
    again = etl()
    assert again == {'dim_country': 0, 'dim_club': 0, 'dim_member_closed': 0, 'dim_member_opened': 0,
                     'fact_donation': 0, 'fact_activity': 0}, again
    assert psql_value("SELECT high_id FROM dw.etl_watermark WHERE source = 'donations'") == 3000


def test_inserts_updates_late_rows_and_unknown_members(warehouse):
    psql('''
        INSERT INTO app.donations (donation_id, tenant_id, member_id, campaign, country, amount, donated_at) VALUES
            (3001, 'acme', 2, 'c1', 'FR', 10.00, now()),
            (3002, 'acme', 2, 'c1', 'FR', 20.00, now() - interval '300 days'),   -- late-arriving
            (2999999, 'globex', 301, 'c2', 'PL', 7.00, now() - interval '2 days'),  -- member 301 not there yet
            (3003, 'globex', 3, 'c3', 'US', 5.00, now());
        UPDATE app.members SET status = 'closed' WHERE member_id IN (4, 5);
        UPDATE app.clubs SET name = 'Renamed' WHERE club_id = 1;
        INSERT INTO app.member_activity VALUES (2001, 'acme', 4, 'post', now() - interval '200 days');
    ''')
    run = etl()
    assert run['fact_donation'] == 3 and run['fact_activity'] == 1, run
    assert run['dim_member_closed'] == 2 and run['dim_member_opened'] == 2 and run['dim_club'] == 1, run
    # the donation of the unknown member waits; the watermark stays below it
    assert psql_value("SELECT high_id FROM dw.etl_watermark WHERE source = 'donations'") == 2999998
    assert psql_value('SELECT count(*) FROM dw.fact_donation WHERE donation_id = 2999999') == 0
    # SCD 2: the old version is closed, the new one current; a fact of 300 days ago keeps the old version
    assert psql_rows("SELECT status, valid_to IS NULL AS current FROM dw.dim_member WHERE member_id = 4 "
                     "ORDER BY valid_from") == [{'status': 'active', 'current': False},
                                                {'status': 'closed', 'current': True}]
    assert psql_value('SELECT m.status FROM dw.fact_activity f JOIN dw.dim_member m USING (member_key) '
                      'WHERE f.activity_id = 2001') == 'active'

    psql("INSERT INTO app.members (member_id, tenant_id, country, email, display_name) "
         "VALUES (301, 'globex', 'PL', 'm301@x', 'Member 301')")
    late = etl()
    assert late['fact_donation'] == 1 and late['dim_member_opened'] == 1, late
    reconcile()
    assert psql_value("SELECT high_id FROM dw.etl_watermark WHERE source = 'donations'") == 2999999
    assert etl()['fact_donation'] == 0


def test_etl_job_is_scheduled(warehouse):
    created, again = run_modules([
        call('pg_cron_job', {'name': 'hc_it_dw_etl', 'schedule': '*/15 * * * *',
                             'command': 'SELECT * FROM dw.etl_run()'}),
        call('pg_cron_job', {'name': 'hc_it_dw_etl', 'state': 'absent'}),
    ])
    assert psql_rows(f"SELECT schedule, command, database FROM cron.job WHERE jobname = 'hc_etl_{DB}.dw'") == [
        {'schedule': '*/15 * * * *', 'command': 'SELECT * FROM dw.etl_run()', 'database': DB}]
    assert created['changed'] and not created['failed'], created.get('msg')
    assert created['state']['command'] == 'SELECT * FROM dw.etl_run()'
    assert again['changed'] and again['state'] == {'exists': False}
