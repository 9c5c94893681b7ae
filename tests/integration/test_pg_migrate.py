# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_migrate against PostgreSQL 17: check mode lists pending, apply/target/rollback, checksums, gaps, baseline,
advisory lock, hostile history table name."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest
from helpers import (
    CONTAINER,
    DB,
    call,
    catalog_snapshot,
    copy_to_container,
    psql,
    psql_rows,
    psql_value,
    run_modules,
    sh,
)

FILES = os.path.join(os.path.dirname(__file__), 'files', 'migrations')
REMOTE = '/var/lib/postgresql/it-migrations'
HIST = 'it_pg_migrate.schema_history'


@pytest.fixture(scope='module')
def dirs(schema):
    copy_to_container(os.path.join(FILES, 'ok'), f'{REMOTE}/ok')
    copy_to_container(os.path.join(FILES, 'gap'), f'{REMOTE}/gap')
    psql(f'CREATE TABLE {schema}.canary (id int); CREATE TABLE IF NOT EXISTS public.it_pg_migrate_canary (id int)')
    return {'ok': f'{REMOTE}/ok', 'gap': f'{REMOTE}/gap'}


def mig(path, **kw):
    return dict({'path': path, 'history_table': HIST}, **kw)


def test_check_apply_target_rollback(schema, dirs):
    before = catalog_snapshot()
    r_check, r_gap = run_modules([call('pg_migrate', mig(dirs['ok']), check_mode=True, diff=True),
                                  call('pg_migrate', mig(dirs['gap']), check_mode=True)])
    assert r_check['changed'] and not r_check['failed'], r_check.get('msg')
    assert r_check['pending'] == [1, 2, 3]
    assert r_check['queries'] == ['V1__create_members.sql', 'V2__add_clubs.sql', 'V3__member_display_name.sql']
    assert r_check['diff'] == {'before': {'version': 0}, 'after': {'version': 3}}
    assert r_gap['failed'] and 'version gap: V2 is missing before V3' in r_gap['msg']
    assert catalog_snapshot() == before, 'check mode changed the catalog'

    gap, to2, to2_again, latest, latest_again, check_back = run_modules([
        call('pg_migrate', mig(dirs['gap'])),
        call('pg_migrate', mig(dirs['ok'], target_version='2'), diff=True),
        call('pg_migrate', mig(dirs['ok'], target_version='2')),
        call('pg_migrate', mig(dirs['ok'])),
        call('pg_migrate', mig(dirs['ok'])),
        call('pg_migrate', mig(dirs['ok'], target_version='1'), check_mode=True),
    ])
    assert gap['failed'] and 'version gap' in gap['msg']
    assert to2['changed'] and to2['applied'] == [1, 2] and to2['diff']['after'] == {'version': 2}, to2.get('msg')
    assert to2_again['changed'] is False and to2_again['queries'] == []
    assert latest['changed'] and latest['applied'] == [3] and latest['version'] == 3
    assert latest_again['changed'] is False
    assert check_back['changed'] and check_back['rolled_back'] == [3, 2]
    assert check_back['queries'] == ['U3__member_display_name.sql', 'U2__add_clubs.sql']

    hist = psql_rows(f'SELECT version, checksum, kind, script FROM {HIST} ORDER BY version')
    assert [h['version'] for h in hist] == [1, 2, 3]
    for h in hist:
        with open(os.path.join(FILES, 'ok', h['script']), 'rb') as f:
            assert h['checksum'] == hashlib.sha256(f.read()).hexdigest()
    assert psql_value(f'SELECT display_name FROM {schema}.members') == 'first'
    assert psql_value(f'SELECT note FROM {schema}.members') == '100% {not a placeholder}'
    assert psql_value(f"SELECT to_regclass('{schema}.should_never_exist') IS NULL") is True

    back, forward = run_modules([call('pg_migrate', mig(dirs['ok'], target_version='1'), diff=True),
                                 call('pg_migrate', mig(dirs['ok']))])
    assert back['changed'] and back['rolled_back'] == [3, 2] and back['diff']['after'] == {'version': 1}
    assert forward['applied'] == [2, 3]
    assert psql_value(f'SELECT count(*) FROM {HIST}') == 3


def test_changed_checksum_and_bad_target_refused(schema, dirs):
    before = catalog_snapshot()
    # the target beyond the files is refused on the untouched directory (so no earlier check fails first)
    too_high, not_a_number = run_modules([
        call('pg_migrate', mig(dirs['ok'], target_version='9')),
        call('pg_migrate', mig(dirs['ok'], target_version='2; DROP TABLE it_pg_migrate.canary')),
    ])
    assert too_high['failed'] and too_high['msg'] == 'target_version 9 has no migration file (newest is V3)', too_high
    assert not_a_number['failed'] and 'target_version must be' in not_a_number['msg']
    assert catalog_snapshot() == before
    sh(['docker', 'exec', '-u', 'postgres', CONTAINER, 'sh', '-c',
        f'echo "-- edited after it was applied" >> {dirs["ok"]}/V1__create_members.sql'])
    try:
        (edited,) = run_modules([call('pg_migrate', mig(dirs['ok']))])
        assert edited['failed'] and 'checksum of applied migration V1__create_members.sql changed' in edited['msg']
        assert catalog_snapshot() == before
    finally:
        copy_to_container(os.path.join(FILES, 'ok'), dirs['ok'])  # restore the original file


def test_baseline_with_hostile_history_table(schema, dirs):
    name = 'x"; DROP TABLE it_pg_migrate_canary; --'
    hostile = f'{schema}.{name}'
    first, again = run_modules([call('pg_migrate', {'path': dirs['ok'], 'history_table': hostile,
                                                    'baseline_version': 3}, diff=True),
                                call('pg_migrate', {'path': dirs['ok'], 'history_table': hostile})])
    assert first['changed'] and first['applied'] == [] and first['version'] == 3, first.get('msg')
    assert first['diff'] == {'before': {'version': 0}, 'after': {'version': 3}}
    assert again['changed'] is False and again['version'] == 3
    tables = {r['relname'] for r in psql_rows(
        f"SELECT relname FROM pg_class WHERE relnamespace = '{schema}'::regnamespace AND relkind = 'r'")}
    assert name in tables
    assert psql_value("SELECT to_regclass('public.it_pg_migrate_canary') IS NOT NULL") is True
    assert psql_rows(f'SELECT version, kind FROM {schema}."x""; DROP TABLE it_pg_migrate_canary; --"') == [
        {'version': 3, 'kind': 'baseline'}]


def test_advisory_lock_blocks_a_second_run(schema, dirs):
    lock = f'hingecraft.pg_migrate:{schema}.locked_history'
    holder = subprocess.Popen(
        ['docker', 'exec', '-u', 'postgres', CONTAINER, 'psql', '-X', '-d', DB, '-c',
         f"SELECT pg_advisory_lock(hashtext('{lock}')), pg_sleep(40)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not psql_value(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"):
            time.sleep(0.3)
        r = run_modules([call('pg_migrate', {'path': dirs['ok'], 'history_table': f'{schema}.locked_history',
                                             'lock_timeout': 2})])[0]
        assert r['failed'] and 'lock timeout' in r['msg'], r.get('msg')
        assert psql_value(f"SELECT to_regclass('{schema}.locked_history') IS NULL") is True
    finally:
        holder.kill()
        holder.wait(timeout=30)
        psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(40)%' "
             'AND pid <> pg_backend_pid()')
