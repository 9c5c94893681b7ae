# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_audit_trail against a real PostgreSQL 17: check mode, apply, catalog, idempotence, diff, quoting, invalid
input, and behaviour - changes are recorded with who/what/when, and the trail refuses UPDATE/DELETE/TRUNCATE."""

from __future__ import annotations

import pytest
from helpers import call, catalog_snapshot, psql, psql_rows, psql_value, run_modules

AUDITOR = 'it_audit_reader'
WRITER = 'it_audit_writer'
HOSTILE = 'a"; DROP TABLE it_audit_victim; --'


@pytest.fixture(scope='module')
def tables(schema):
    psql(f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{AUDITOR}') THEN CREATE ROLE {AUDITOR}; END IF;
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WRITER}') THEN CREATE ROLE {WRITER}; END IF;
        END $$;
        CREATE TABLE "{schema}".members (id int PRIMARY KEY, email text, country text);
        CREATE TABLE "{schema}".donations (id int, amount numeric, at date NOT NULL) PARTITION BY RANGE (at);
        CREATE TABLE "{schema}".donations_2026 PARTITION OF "{schema}".donations
          FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        GRANT USAGE ON SCHEMA "{schema}" TO {WRITER};
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {WRITER};
        CREATE TABLE "{schema}".it_audit_victim (id int);
    """)
    return [f'{schema}.members', f'{schema}.donations']


def audit_args(schema, tables, **kw):
    args = {'tables': tables, 'audit_schema': f'{schema}_audit', 'readers': [AUDITOR]}
    args.update(kw)
    return args


def test_check_apply_idempotent_and_records_changes(tables, schema):
    psql(f'DROP SCHEMA IF EXISTS "{schema}_audit" CASCADE')
    before = catalog_snapshot()
    [chk] = run_modules([call('pg_audit_trail', audit_args(schema, tables), check_mode=True, diff=True)])
    assert chk['changed'] and not chk['failed'], chk
    assert chk['diff']['before']['infrastructure'] is False and chk['diff']['after']['infrastructure'] is True
    assert catalog_snapshot() == before, 'check mode changed the catalog'

    apply, again = run_modules([call('pg_audit_trail', audit_args(schema, tables), diff=True),
                                call('pg_audit_trail', audit_args(schema, tables))])
    assert apply['changed'] and not apply['failed'], apply
    assert apply['state']['audited_tables'] == sorted(tables) and apply['state']['readers'] == [AUDITOR]
    assert not again['changed'] and again['queries'] == [], again

    fn = psql_rows(f"SELECT p.prosecdef, p.proconfig::text AS cfg FROM pg_proc p JOIN pg_namespace n "
                   f"ON n.oid = p.pronamespace WHERE n.nspname = '{schema}_audit' AND p.proname = 'log_change'")
    assert fn == [{'prosecdef': True, 'cfg': '{"search_path=pg_catalog, pg_temp"}'}]
    # the trigger on the partitioned table is cloned to its partition
    assert psql_value(f"SELECT count(*) FROM pg_trigger WHERE tgname = 'hc_audit' "
                      f"AND tgrelid = '\"{schema}\".donations_2026'::regclass") == 1

    # behaviour: an application session writes; the trail has who, what, old/new, changed columns
    psql(f"""SET ROLE {WRITER}; SET app.username = 'alice';
             INSERT INTO "{schema}".members VALUES (1, 'a@x', 'DE');
             BEGIN;
             UPDATE "{schema}".members SET country = 'FR' WHERE id = 1;
             INSERT INTO "{schema}".donations VALUES (7, 12.5, '2026-03-01');
             COMMIT;
             DELETE FROM "{schema}".members WHERE id = 1;""")
    rows = psql_rows(f'SELECT db_user, app_user, operation, table_name, changed_columns, old_row, new_row, txid '
                     f'FROM "{schema}_audit".log ORDER BY id')
    assert [(r['operation'], r['table_name']) for r in rows] == [
        ('INSERT', 'members'), ('UPDATE', 'members'), ('INSERT', 'donations_2026'), ('DELETE', 'members')]
    assert {r['app_user'] for r in rows} == {'alice'} and {r['db_user'] for r in rows} == {'postgres'}
    assert rows[1]['changed_columns'] == ['country']
    assert rows[1]['old_row']['country'] == 'DE' and rows[1]['new_row']['country'] == 'FR'
    assert rows[3]['new_row'] is None and rows[3]['old_row']['email'] == 'a@x'
    # the UPDATE and the donation ran in one transaction, the INSERT before it in another
    assert rows[1]['txid'] == rows[2]['txid'] != rows[0]['txid']


def test_trail_is_append_only(tables, schema):
    log = f'"{schema}_audit".log'
    for stmt in (f'UPDATE {log} SET app_user = NULL', f'DELETE FROM {log}', f'TRUNCATE {log}'):
        p = psql(stmt, check=False)
        assert p.returncode != 0 and 'append-only' in p.stderr, (stmt, p.stderr)
    for stmt in (f'UPDATE {log} SET app_user = NULL', f'DELETE FROM {log}',
                 f"INSERT INTO {log} (table_schema, table_name, operation) VALUES ('x', 'y', 'INSERT')"):
        p = psql(f'SET ROLE {WRITER}; {stmt}', check=False)
        assert p.returncode != 0 and 'permission denied' in p.stderr, (stmt, p.stderr)
    # the auditor reads it
    assert int(psql(f'SET ROLE {AUDITOR};\n\\pset tuples_only on\nSELECT count(*) FROM {log};').stdout.split()[-1]) == 4


def test_drift_guard_disabled_or_grant_added_is_corrected(tables, schema):
    log = f'"{schema}_audit".log'
    psql(f'ALTER TABLE {log} DISABLE TRIGGER hc_audit_append_only; GRANT DELETE ON {log} TO {WRITER};')
    fix, again = run_modules([call('pg_audit_trail', audit_args(schema, tables)),
                              call('pg_audit_trail', audit_args(schema, tables))])
    assert fix['changed'], fix
    assert any('CREATE TRIGGER "hc_audit_append_only"' in q for q in fix['queries'])
    assert f'REVOKE DELETE ON "{schema}_audit"."log" FROM "{WRITER}"' in fix['queries']
    assert not again['changed']
    assert 'append-only' in psql(f'DELETE FROM {log}', check=False).stderr


def test_detach(tables, schema):
    members = tables[0]
    r1, r2 = run_modules([call('pg_audit_trail', audit_args(schema, [members], state='absent')),
                          call('pg_audit_trail', audit_args(schema, [members], state='absent'))])
    assert r1['changed'] and r1['queries'] == [f'DROP TRIGGER "hc_audit" ON "{schema}"."members"'], r1
    assert not r2['changed']
    n = psql_value(f'SELECT count(*) FROM "{schema}_audit".log')
    psql(f"INSERT INTO {members} VALUES (2, 'b@x', 'NL')")
    assert psql_value(f'SELECT count(*) FROM "{schema}_audit".log') == n


def test_hostile_identifiers_are_quoted(schema):
    esc = HOSTILE.replace('"', '""')
    psql(f'CREATE TABLE "{schema}"."{esc}" (id int)')
    before = catalog_snapshot()
    [r] = run_modules([call('pg_audit_trail', {'tables': [f'{schema}.{HOSTILE}'], 'audit_schema': HOSTILE,
                                               'app_user_setting': "app.x'); DROP TABLE it_audit_victim; --"})])
    assert r['changed'] and not r['failed'], r
    assert psql_value("SELECT count(*) FROM pg_class WHERE relname = 'it_audit_victim'") == 1
    assert psql_value(f"SELECT count(*) FROM pg_namespace WHERE nspname = '{HOSTILE}'") == 1
    new_rel = [x['relname'] for x in catalog_snapshot()['relations'] if x not in before['relations']]
    assert sorted(new_rel) == ['log', 'log_id_seq', 'log_pkey', 'log_table_schema_table_name_logged_at_idx']
    psql(f'INSERT INTO "{schema}"."{esc}" VALUES (1)')
    assert psql_value(f'SELECT count(*) FROM "{esc}".log') == 1


def test_invalid_input_fails_clearly_and_changes_nothing(tables, schema):
    before = catalog_snapshot()
    no_table, no_reader, bad_setting, itself = run_modules([
        call('pg_audit_trail', audit_args(schema, [f'{schema}.nope'])),
        call('pg_audit_trail', audit_args(schema, tables, readers=['it_audit_nobody'])),
        call('pg_audit_trail', audit_args(schema, tables, app_user_setting='nodot')),
        call('pg_audit_trail', audit_args(schema, [f'{schema}_audit.log'])),
    ])
    assert no_table['failed'] and f'{schema}.nope' in no_table['msg']
    assert no_reader['failed'] and 'it_audit_nobody' in no_reader['msg']
    assert bad_setting['failed'] and 'app_user_setting' in bad_setting['msg']
    assert itself['failed'] and 'cannot audit itself' in itself['msg']
    assert catalog_snapshot() == before
