# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/schema's analytics phase (tasks_from analytics) against PostgreSQL 17: a hypertable with a retention
job, a rollup with its refresh job (pg_cron), the index advisor in report mode; a second run changes nothing."""

from __future__ import annotations

import pytest
from helpers import DB, psql, psql_rows, psql_value, run_playbook

S = 'it_schema_analytics'


@pytest.fixture(scope='module')
def data(schema):
    psql(f'''
        CREATE EXTENSION IF NOT EXISTS timescaledb; CREATE EXTENSION IF NOT EXISTS pg_cron;
        CREATE EXTENSION IF NOT EXISTS pg_stat_statements; CREATE EXTENSION IF NOT EXISTS hypopg;
        CREATE TABLE {S}.events (event_id bigint NOT NULL, tenant_id text NOT NULL, kind text NOT NULL,
            occurred_at timestamptz NOT NULL, PRIMARY KEY (event_id, occurred_at));
        INSERT INTO {S}.events SELECT g, (ARRAY['acme', 'globex'])[1 + g % 2], 'k' || (g % 3),
            now() - g * interval '1 hour' FROM generate_series(1, 1000) g;
    ''')
    return schema


def role_tasks():
    return [{'name': 'analytics phase', 'ansible.builtin.include_role': {
        'name': 'hingecraft.enterprise_db.schema', 'tasks_from': 'analytics'},
        'vars': {
            'ansible_become': False, 'schema_database': DB, 'schema_cron_database': DB, 'schema_name': S,
            'schema_hypertables': [{'table': 'events', 'time_column': 'occurred_at', 'chunk_interval': '1 day',
                                    'retention': '400 days'}],
            'schema_rollups': [{'name': 'events_daily', 'source': 'events', 'time_column': 'occurred_at',
                                'group_by': ['tenant_id', 'kind'], 'aggregates': {'events': 'count(*)'}}],
            'schema_index_advisor': True, 'schema_index_advisor_tables': ['events']}}]


def test_analytics_phase_converges_and_is_idempotent(data):
    first = run_playbook(role_tasks())
    second = run_playbook(role_tasks())
    stats1, stats2 = (next(iter(o['stats'].values())) for o in (first, second))
    assert stats1['failures'] == 0 and stats1['changed'] >= 4, stats1
    assert stats2['failures'] == 0 and stats2['changed'] == 0, stats2
    assert psql_value(f"SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_schema = '{S}'") == 1
    assert psql_value(f'SELECT sum(events) FROM {S}.events_daily') == 1000
    jobs = psql_rows(f"SELECT jobname, schedule, database FROM cron.job WHERE jobname LIKE '%{S}%' ORDER BY 1")
    assert jobs == [
        {'jobname': f'hc_retention_{DB}.{S}.events', 'schedule': '15 3 * * *', 'database': DB},
        {'jobname': f'hc_rollup_{DB}.{S}.events_daily', 'schedule': '*/5 * * * *', 'database': DB}]
    # the jobs' commands work as scheduled
    for cmd in psql_rows(f"SELECT command FROM cron.job WHERE jobname LIKE '%{S}%'"):
        psql(cmd['command'] + ';')
