# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_rls_policy against a real PostgreSQL 17: check mode, apply, catalog, idempotence, diff, drift, quoting,
invalid input, and the behaviour that matters - a policy really hides rows from a role."""

from __future__ import annotations

import pytest
from helpers import call, catalog_snapshot, psql, psql_rows, psql_value, run_modules

READER = 'it_rls_reader'
HOSTILE = 'x"; DROP TABLE it_rls_victim; --'


@pytest.fixture(scope='module')
def docs(schema):
    psql(f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER}') THEN CREATE ROLE {READER}; END IF;
        END $$;
        CREATE TABLE "{schema}".docs (id int PRIMARY KEY, owner text NOT NULL, body text);
        INSERT INTO "{schema}".docs SELECT g, CASE WHEN g % 2 = 0 THEN '{READER}' ELSE 'someone' END, 'b'
          FROM generate_series(1, 10) g;
        GRANT USAGE ON SCHEMA "{schema}" TO {READER};
        GRANT SELECT ON "{schema}".docs TO {READER};
        CREATE TABLE "{schema}".it_rls_victim (id int);
    """)
    return f'{schema}.docs'


def policy(table, **kw):
    args = {'table': table, 'enable': True, 'force': True, 'name': 'own_rows', 'command': 'SELECT',
            'roles': [READER], 'using': 'owner = current_user'}
    args.update(kw)
    return args


def _as_reader(query):
    out = psql(f"\\pset tuples_only on\n\\pset format unaligned\nSET ROLE {READER};\n{query};\n").stdout
    return out.strip().splitlines()[-1]


def test_lifecycle_check_apply_idempotent_and_hides_rows(docs, schema):
    assert int(_as_reader(f'SELECT count(*) FROM "{schema}".docs')) == 10
    before = catalog_snapshot()
    [chk] = run_modules([call('pg_rls_policy', policy(docs), check_mode=True, diff=True)])
    assert chk['changed'] and not chk['failed'], chk
    assert chk['diff']['after']['policy']['using'] == '(owner = CURRENT_USER)'
    assert catalog_snapshot() == before, 'check mode changed the catalog'

    apply, again = run_modules([call('pg_rls_policy', policy(docs), diff=True), call('pg_rls_policy', policy(docs))])
    assert apply['changed'] and not apply['failed'], apply
    assert apply['diff']['before']['policy'] is None and apply['diff']['before']['enabled'] is False
    assert apply['queries'] == [
        f'ALTER TABLE "{schema}"."docs" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{schema}"."docs" FORCE ROW LEVEL SECURITY',
        (f'CREATE POLICY "own_rows" ON "{schema}"."docs" AS PERMISSIVE FOR SELECT TO "{READER}" '
         'USING (owner = current_user)')]
    assert not again['changed'] and again['queries'] == [], again
    rows = psql_rows(f"SELECT c.relrowsecurity, c.relforcerowsecurity FROM pg_class c WHERE c.oid = '{docs}'::regclass")
    assert rows == [{'relrowsecurity': True, 'relforcerowsecurity': True}]
    pol = psql_rows(f"SELECT cmd, roles::text AS roles, qual FROM pg_policies WHERE schemaname = '{schema}'")
    assert pol == [{'cmd': 'SELECT', 'roles': '{' + READER + '}', 'qual': '(owner = CURRENT_USER)'}]
    # behaviour: the reader sees only its own five rows now
    assert int(_as_reader(f'SELECT count(*) FROM "{schema}".docs')) == 5


def test_drift_is_detected_and_corrected(docs, schema):
    run_modules([call('pg_rls_policy', policy(docs))])
    # someone widens the policy by hand -> ALTER POLICY puts it back
    psql(f'ALTER POLICY own_rows ON {docs} USING (true)')
    assert int(_as_reader(f'SELECT count(*) FROM "{schema}".docs')) == 10
    [fix] = run_modules([call('pg_rls_policy', policy(docs), diff=True)])
    assert fix['changed'] and fix['queries'] == [
        f'ALTER POLICY "own_rows" ON "{schema}"."docs" USING (owner = current_user)'], fix
    assert fix['diff']['before']['policy']['using'] == 'true'
    assert int(_as_reader(f'SELECT count(*) FROM "{schema}".docs')) == 5
    # changed command and roles: ALTER cannot change the command -> drop and create in one transaction
    psql(f'DROP POLICY own_rows ON {docs}; CREATE POLICY own_rows ON {docs} FOR ALL TO PUBLIC USING (true);')
    [fix2, again] = run_modules([call('pg_rls_policy', policy(docs)), call('pg_rls_policy', policy(docs))])
    assert fix2['changed'] and fix2['queries'][0] == f'DROP POLICY "own_rows" ON "{schema}"."docs"', fix2
    assert fix2['queries'][1].startswith('CREATE POLICY "own_rows"')
    assert not again['changed']
    assert psql_value(f"SELECT cmd FROM pg_policies WHERE schemaname = '{schema}' AND policyname = 'own_rows'") \
        == 'SELECT'


def test_state_absent_removes_policy(docs, schema):
    r1, r2 = run_modules([call('pg_rls_policy', {'table': docs, 'name': 'own_rows', 'state': 'absent'}),
                          call('pg_rls_policy', {'table': docs, 'name': 'own_rows', 'state': 'absent'})])
    assert r1['changed'] and r1['queries'] == [f'DROP POLICY "own_rows" ON "{schema}"."docs"']
    assert not r2['changed']
    # RLS is still forced and no policy exists -> default deny for the reader
    assert int(_as_reader(f'SELECT count(*) FROM "{schema}".docs')) == 0


def test_hostile_identifiers_are_quoted(schema):
    psql(f'CREATE TABLE "{schema}"."{HOSTILE.replace(chr(34), chr(34) * 2)}" (owner text)')
    before = catalog_snapshot()
    table = f'{schema}.{HOSTILE}'
    [r] = run_modules([call('pg_rls_policy', {'table': table, 'enable': True, 'name': HOSTILE,
                                              'using': "owner = 'a''; DROP TABLE x; --'"})])
    assert r['changed'] and not r['failed'], r
    after = catalog_snapshot()
    assert after['relations'] != before['relations']  # RLS flag flipped on the hostile table, nothing else:
    assert [x for x in after['relations'] if x not in before['relations']] == [
        {**x, 'relrowsecurity': True} for x in before['relations'] if x['relname'] == HOSTILE]
    assert psql_value("SELECT count(*) FROM pg_class WHERE relname = 'it_rls_victim'") == 1
    assert psql_value(f"SELECT policyname FROM pg_policies WHERE schemaname = '{schema}' "
                      f"AND tablename = '{HOSTILE.replace(chr(39), chr(39) * 2)}'") == HOSTILE


def test_invalid_input_fails_clearly_and_changes_nothing(docs, schema):
    before = catalog_snapshot()
    missing_role, bad_expr, no_table, bad_combo = run_modules([
        call('pg_rls_policy', policy(docs, name='p2', roles=[READER, 'it_rls_nobody'])),
        call('pg_rls_policy', policy(docs, name='p3', using='no_such_column = 1')),
        call('pg_rls_policy', policy(f'{schema}.no_such_table')),
        call('pg_rls_policy', policy(docs, command='INSERT')),
    ])
    assert missing_role['failed'] and 'it_rls_nobody' in missing_role['msg'] and 'do not exist' in missing_role['msg']
    assert bad_expr['failed'] and 'no_such_column' in bad_expr['msg']
    assert no_table['failed'] and 'does not exist' in no_table['msg']
    assert bad_combo['failed'] and 'command=INSERT' in bad_combo['msg']
    assert catalog_snapshot() == before
