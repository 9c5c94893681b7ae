# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_tenant against a real PostgreSQL 17: check mode, apply, catalog, idempotence, diff, quoting, invalid input,
and behaviour - tenant A cannot read tenant B's rows, an untrusted role cannot pick a tenant, retiring works."""

from __future__ import annotations

import pytest
from helpers import call, catalog_snapshot, psql, psql_rows, psql_value, run_modules

TRUSTED = 'it_tenant_app'
GROUP = 'it_tenant_group'
OTHER = 'it_tenant_other'
PREFIX = 'it_tenant_'


@pytest.fixture(scope='module')
def setup(schema):
    psql(f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{TRUSTED}') THEN CREATE ROLE {TRUSTED}; END IF;
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{GROUP}') THEN CREATE ROLE {GROUP}; END IF;
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{OTHER}') THEN CREATE ROLE {OTHER}; END IF;
        END $$;
        DROP SCHEMA IF EXISTS "{schema}_reg" CASCADE;
        DO $$ DECLARE r text; BEGIN
          FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('{PREFIX}acme', '{PREFIX}globex') LOOP
            EXECUTE format('DROP OWNED BY %I; DROP ROLE %I', r, r);
          END LOOP;
        END $$;
        CREATE TABLE "{schema}".notes (id int PRIMARY KEY, tenant_id text NOT NULL, body text);
        INSERT INTO "{schema}".notes SELECT g, CASE WHEN g <= 3 THEN 'acme' ELSE 'globex' END, 'n' || g
          FROM generate_series(1, 10) g;
        CREATE TABLE "{schema}".plain (id int);
        GRANT USAGE ON SCHEMA "{schema}" TO {TRUSTED}, {GROUP}, {OTHER};
        GRANT SELECT, INSERT, UPDATE, DELETE ON "{schema}".notes TO {TRUSTED}, {GROUP}, {OTHER};
    """)
    return schema


def args(schema, **kw):
    a = {'registry_schema': f'{schema}_reg', 'trusted_roles': [TRUSTED], 'tables': [f'{schema}.notes'],
         'tenant_role_prefix': PREFIX, 'tenant_role_member_of': [GROUP],
         'tenants': [{'id': 'acme', 'name': 'ACME'}, {'id': 'globex', 'name': 'Globex'}]}
    a.update(kw)
    return a


def as_role(role, sql_text):
    """`sql_text` as `role` in one transaction (set_tenant's choice lasts until the end of its transaction)."""
    out = psql(f'\\pset tuples_only on\n\\pset format unaligned\nSET ROLE {role};\nBEGIN;\n{sql_text};\nCOMMIT;\n',
               check=False)
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 else 'ERROR: ' + out.stderr.strip()


def test_check_apply_idempotent(setup):
    schema = setup
    before = catalog_snapshot()
    [chk] = run_modules([call('pg_tenant', args(schema), check_mode=True, diff=True)])
    assert chk['changed'] and not chk['failed'], chk
    assert chk['diff']['before']['tenants'] == {} and set(chk['diff']['after']['tenants']) == {'acme', 'globex'}
    assert catalog_snapshot() == before, 'check mode changed the catalog'

    apply, again = run_modules([call('pg_tenant', args(schema), diff=True), call('pg_tenant', args(schema))])
    assert apply['changed'] and not apply['failed'], apply
    assert not again['changed'] and again['queries'] == [], again
    reg = psql_rows(f'SELECT tenant_id, name, role_name, status FROM "{schema}_reg".tenants ORDER BY 1')
    assert reg == [{'tenant_id': 'acme', 'name': 'ACME', 'role_name': f'{PREFIX}acme', 'status': 'active'},
                   {'tenant_id': 'globex', 'name': 'Globex', 'role_name': f'{PREFIX}globex', 'status': 'active'}]
    assert psql_rows(f"SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = '{schema}.notes'::regclass") \
        == [{'relrowsecurity': True, 'relforcerowsecurity': True}]
    assert psql_value(f"SELECT pg_has_role('{PREFIX}acme', '{GROUP}', 'MEMBER')") is True


def test_tenants_are_isolated(setup):
    schema = setup
    notes = f'"{schema}".notes'
    reg = f'"{schema}_reg"'
    # the trusted application role picks a tenant through set_tenant() and sees only its rows
    assert as_role(TRUSTED, f"SELECT {reg}.set_tenant('acme'); SELECT string_agg(DISTINCT tenant_id, ',') || "
                            f"':' || count(*) FROM {notes}") == 'acme:3'
    assert as_role(TRUSTED, f"SELECT {reg}.set_tenant('globex'); SELECT count(*) FROM {notes} "
                            "WHERE tenant_id = 'acme'") == '0'
    # without a tenant it sees nothing; it cannot write into another tenant
    assert as_role(TRUSTED, f'SELECT count(*) FROM {notes}') == '0'
    err = as_role(TRUSTED, f"SELECT {reg}.set_tenant('acme'); INSERT INTO {notes} VALUES (99, 'globex', 'x')")
    assert 'row-level security' in err, err
    # a per-tenant role sees its tenant only, and setting the variable does not let it switch
    assert as_role(f'{PREFIX}acme', f"SET app.tenant_id = 'globex'; SELECT count(*) || ':' || "
                                    f"min(tenant_id) FROM {notes}") == '3:acme'
    # an untrusted role can neither call set_tenant nor use the setting
    assert 'permission denied' in as_role(OTHER, f"SELECT {reg}.set_tenant('acme')")
    assert as_role(OTHER, f"SET app.tenant_id = 'acme'; SELECT count(*) FROM {notes}") == '0'
    # unknown tenants are refused
    assert 'unknown or retired tenant' in as_role(TRUSTED, f"SELECT {reg}.set_tenant('initech')")


def test_tenant_choice_ends_with_its_transaction(setup):
    # Behind PgBouncer in transaction mode the next transaction on this server connection may be another client's:
    # the tenant chosen in one transaction must not be there in the next one on the same session.
    schema = setup
    out = psql(f"""\\pset tuples_only on
\\pset format unaligned
SET ROLE {TRUSTED};
BEGIN;
SELECT "{schema}_reg".set_tenant('acme');
SELECT 'inside:' || count(*) FROM "{schema}".notes;
COMMIT;
SELECT 'after:' || count(*) || ':' || coalesce("{schema}_reg".current_tenant(), 'none') FROM "{schema}".notes;
""").stdout.split()
    assert out[-2:] == ['inside:3', 'after:0:none'], out


def test_retire_tenant(setup):
    schema = setup
    retired = args(schema, tenants=[{'id': 'acme', 'name': 'ACME'}, {'id': 'globex', 'state': 'retired'}])
    r1, r2 = run_modules([call('pg_tenant', retired, diff=True), call('pg_tenant', retired)])
    assert r1['changed'] and r1['diff']['after']['tenants']['globex']['status'] == 'retired', r1
    assert f'REVOKE "{GROUP}" FROM "{PREFIX}globex"' in r1['queries']
    assert not r2['changed']
    assert 'unknown or retired tenant' in as_role(TRUSTED, f"SELECT \"{schema}_reg\".set_tenant('globex')")
    # the retired tenant's role has left the privilege group: it cannot even reach the table
    assert 'permission denied' in as_role(f'{PREFIX}globex', f'SELECT count(*) FROM "{schema}".notes')
    assert psql_value(f"SELECT count(*) FROM \"{schema}\".notes WHERE tenant_id = 'globex'") == 7  # rows kept


def test_drift_policy_replaced_by_hand_is_corrected(setup):
    schema = setup
    psql(f'DROP POLICY hc_tenant_isolation ON "{schema}".notes; '
         f'CREATE POLICY hc_tenant_isolation ON "{schema}".notes USING (true); '
         f'ALTER TABLE "{schema}".notes NO FORCE ROW LEVEL SECURITY;')
    a = args(schema, tenants=[])
    fix, again = run_modules([call('pg_tenant', a), call('pg_tenant', a)])
    assert fix['changed'] and f'ALTER TABLE "{schema}"."notes" FORCE ROW LEVEL SECURITY' in fix['queries'], fix
    assert any(q.startswith('CREATE POLICY "hc_tenant_isolation"') for q in fix['queries'])
    assert not again['changed']


def test_hostile_values_are_quoted(setup):
    schema = setup
    before = catalog_snapshot()
    hostile_schema = 'r"; DROP TABLE plain; --'
    hostile_args = args(schema, registry_schema=hostile_schema, tables=[], tenant_role_member_of=[],
                        tenants=[{'id': 'zeta', 'name': "Z'); DROP TABLE plain; --"}])
    [r] = run_modules([call('pg_tenant', hostile_args)])
    assert r['changed'] and not r['failed'], r
    assert psql_value(f"SELECT count(*) FROM pg_class WHERE oid = '{schema}.plain'::regclass") == 1
    esc = hostile_schema.replace('"', '""')
    assert psql_value(f'SELECT name FROM "{esc}".tenants') == "Z'); DROP TABLE plain; --"
    new_rel = sorted(x['relname'] for x in catalog_snapshot()['relations'] if x not in before['relations'])
    assert new_rel == ['tenants', 'tenants_pkey', 'tenants_role_name_key']
    psql(f'DROP SCHEMA "{esc}" CASCADE; DROP ROLE {PREFIX}zeta;')


def test_invalid_input_fails_clearly_and_changes_nothing(setup):
    schema = setup
    before = catalog_snapshot()
    bad_id, no_role, no_column, group_is_trusted = run_modules([
        call('pg_tenant', args(schema, tenants=[{'id': 'Bad-Id'}])),
        call('pg_tenant', args(schema, trusted_roles=['it_tenant_nobody'])),
        call('pg_tenant', args(schema, tables=[f'{schema}.plain'])),
        call('pg_tenant', args(schema, tenant_role_member_of=[TRUSTED])),
    ])
    assert bad_id['failed'] and "invalid tenant id 'Bad-Id'" in bad_id['msg']
    assert no_role['failed'] and 'it_tenant_nobody' in no_role['msg']
    assert no_column['failed'] and 'has no column tenant_id' in no_column['msg']
    assert group_is_trusted['failed'] and 'must not contain trusted roles' in group_is_trusted['msg']
    assert catalog_snapshot() == before


def test_tenant_role_inside_a_trusted_role_is_refused(setup):
    schema = setup
    psql(f'GRANT {TRUSTED} TO {PREFIX}acme')
    try:
        before = catalog_snapshot()
        [r] = run_modules([call('pg_tenant', args(schema))])
        assert r['failed'] and f'tenant role {PREFIX}acme is a member of trusted role {TRUSTED}' in r['msg'], r
        assert catalog_snapshot() == before
    finally:
        psql(f'REVOKE {TRUSTED} FROM {PREFIX}acme')
