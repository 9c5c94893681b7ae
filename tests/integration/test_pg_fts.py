# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_fts against PostgreSQL 17: weighted generated tsvector, GIN, unaccent config, trigram index, ranked search."""

from __future__ import annotations

import pytest
from helpers import call, catalog_snapshot, psql, psql_rows, psql_value, run_modules

T = 'it_pg_fts.members'


@pytest.fixture(scope='module')
def data(schema):
    psql(f'''
        CREATE TABLE {T} (id bigint PRIMARY KEY, display_name text NOT NULL, city text, bio text);
        INSERT INTO {T} VALUES
            (1, 'Jürgen Müller', 'München', 'Woodworker and teacher'),
            (2, 'Zoë Dubois', 'Lyon', 'Learns from Müller every week'),
            (3, 'Ana Kowalska', 'Kraków', 'Builds chairs'),
            (4, 'Piotr Nowak', 'Gdańsk', 'Carpentry, chairs and tables');
        CREATE TABLE {schema}.nokey (name text);
        CREATE TABLE {schema}.canary (id int);
    ''')
    return schema


def spec(**kw):
    return dict({'table': T, 'weights': [{'column': 'display_name', 'weight': 'A'}, {'column': 'city', 'weight': 'B'},
                                         {'column': 'bio', 'weight': 'C'}],
                 'config': 'it_pg_fts.hc_unaccent', 'config_source': 'simple', 'trigram_column': 'display_name',
                 'search_function': 'it_pg_fts.search_members'}, **kw)


def test_apply_search_idempotent(data):
    before = catalog_snapshot()
    check = run_modules([call('pg_fts', spec(), check_mode=True, diff=True)])[0]
    assert check['changed'] and not check['failed'], check.get('msg')
    assert check['diff']['before']['expression'] is None and check['diff']['after']['expression']
    assert catalog_snapshot() == before, 'check mode changed the catalog'

    applied, again = run_modules([call('pg_fts', spec(), diff=True), call('pg_fts', spec())])
    assert applied['changed'] and not applied['failed'], applied.get('msg')
    assert again['changed'] is False and again['queries'] == [], again['queries']
    st = applied['state']
    assert st['config'] == {'hword': ['unaccent', 'simple'], 'hword_part': ['unaccent', 'simple'],
                            'word': ['unaccent', 'simple']}
    assert "setweight(to_tsvector('it_pg_fts.hc_unaccent'::regconfig" in st['expression']
    assert st['index'] == f'CREATE INDEX members_search_vector_gin ON {T} USING gin (search_vector)'
    assert st['trigram_index'].endswith('USING gin (display_name gin_trgm_ops)')
    assert st['function'] == ('it_pg_fts.search_members(search_query text, max_results integer) '
                              'RETURNS TABLE(id bigint, rank real)')

    # accents are ignored and a name match (weight A) ranks above a bio match (weight C)
    hits = psql_rows("SELECT id, rank FROM it_pg_fts.search_members('muller')")
    assert [h['id'] for h in hits] == [1, 2]
    assert hits[0]['rank'] > hits[1]['rank']
    assert [h['id'] for h in psql_rows("SELECT id FROM it_pg_fts.search_members('krakow chairs')")] == [3]
    assert [h['id'] for h in psql_rows("SELECT id FROM it_pg_fts.search_members('chairs', 1)")] == [3]
    assert psql_value(f"SELECT count(*) FROM {T} WHERE display_name % 'Jurgen Mueller'") >= 1


def test_changed_weights_use_set_expression(data):
    index_oid = psql_value("SELECT 'it_pg_fts.members_search_vector_gin'::regclass::oid")
    new = spec(weights=[{'column': 'display_name', 'weight': 'A'}, {'column': 'bio', 'weight': 'B'}])
    changed, again = run_modules([call('pg_fts', new, diff=True), call('pg_fts', new)])
    assert changed['changed'] and not changed['failed'], changed.get('msg')
    assert changed['queries'][0].startswith('ALTER TABLE "it_pg_fts"."members" ALTER COLUMN "search_vector" SET '
                                            'EXPRESSION AS')
    assert 'city' in changed['diff']['before']['expression'] and 'city' not in changed['diff']['after']['expression']
    assert again['changed'] is False
    # SET EXPRESSION rewrites the table and rebuilds the column's indexes (a new OID, like ALTER COLUMN TYPE):
    # the index is back under its name, valid and ready, exactly GIN on the generated column
    assert index_oid is not None
    assert psql_value("SELECT indisvalid AND indisready FROM pg_index "
                      "WHERE indexrelid = 'it_pg_fts.members_search_vector_gin'::regclass") is True
    assert psql_value("SELECT pg_get_indexdef('it_pg_fts.members_search_vector_gin'::regclass)") == (
        'CREATE INDEX members_search_vector_gin ON it_pg_fts.members USING gin (search_vector)')
    assert [h['id'] for h in psql_rows("SELECT id FROM it_pg_fts.search_members('lyon')")] == []


def test_invalid_and_hostile(data):
    before = catalog_snapshot()
    unknown, nokey, badcfg = run_modules([
        call('pg_fts', spec(weights=[{'column': 'display_name'}, {'column': 'nope'}])),
        call('pg_fts', {'table': f'{data}.nokey', 'weights': [{'column': 'name'}], 'search_function': f'{data}.s2'}),
        call('pg_fts', spec(config='it_pg_fts.missing_cfg', config_source=None)),
    ])
    assert unknown['failed'] and 'unknown column(s) in table it_pg_fts.members: nope' in unknown['msg']
    assert nokey['failed'] and 'no single-column primary key' in nokey['msg']
    assert badcfg['failed'] and 'missing_cfg' in badcfg['msg']
    assert catalog_snapshot() == before

    hostile = 'v"; DROP TABLE canary; --'
    r = run_modules([call('pg_fts', {'table': T, 'column': hostile, 'weights': [{'column': 'bio'}],
                                     'index_name': 'hostile_gin', 'search_function': 'x"; DROP TABLE canary; --'})])[0]
    assert r['changed'] and not r['failed'], r.get('msg')
    assert psql_value(f"SELECT to_regclass('{data}.canary') IS NOT NULL") is True
    assert psql_value(f"SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '{T}'::regclass "
                      "AND attname = 'v\"; DROP TABLE canary; --'") == 'tsvector'
    assert psql_value("SELECT count(*) FROM pg_proc WHERE proname = 'x\"; DROP TABLE canary; --'") == 1


# --- row-level security: the index-backed match under SECURITY DEFINER keeps tenants apart ---------------------

N = 'it_pg_fts.notes'


@pytest.fixture(scope='module')
def tenant_notes(data):
    """A tenant table with FORCE'd RLS: tenant isolation keyed on a caller-evaluated function, plus a restrictive
    policy for the trusted app role. it_fts_app is trusted (chooses a tenant through a setting); it_fts_tenant_a is
    a tenant's own role (always tenant a, whatever it sets)."""
    psql(f'''
        CREATE ROLE it_fts_owner NOLOGIN BYPASSRLS;
        CREATE ROLE it_fts_plain_owner NOLOGIN;
        CREATE ROLE it_fts_app NOLOGIN;
        CREATE ROLE it_fts_tenant_a NOLOGIN;
        CREATE FUNCTION it_pg_fts.current_tenant() RETURNS text LANGUAGE sql STABLE AS $$
            SELECT CASE WHEN pg_has_role(current_user, 'it_fts_app', 'MEMBER')
                        THEN nullif(current_setting('it.tenant', true), '')
                        WHEN current_user = 'it_fts_tenant_a' THEN 'a' END $$;
        CREATE TABLE {N} (id bigint PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL);
        INSERT INTO {N} VALUES (1, 'a', 'walnut bowl'), (2, 'a', 'walnut secret plans'), (3, 'b', 'walnut spoon'),
                               (4, 'b', 'maple chair');
        ALTER TABLE {N} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {N} FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant ON {N} USING (tenant_id = it_pg_fts.current_tenant());
        CREATE POLICY no_secrets ON {N} AS RESTRICTIVE FOR SELECT TO it_fts_app USING (body NOT LIKE '%secret%');
        GRANT USAGE ON SCHEMA it_pg_fts TO it_fts_app, it_fts_tenant_a;
        GRANT SELECT ON {N} TO it_fts_app, it_fts_tenant_a;
    ''')
    return N


def notes_spec(**kw):
    return dict({'table': N, 'column': 'search', 'weights': [{'column': 'body', 'weight': 'A'}],
                 'config': 'english', 'search_function': 'it_pg_fts.search_notes', 'match_owner': 'it_fts_owner',
                 'match_roles': ['it_fts_app'], 'tenant_column': 'tenant_id',
                 'tenant_function': 'it_pg_fts.current_tenant'}, **kw)


def as_role(role, sql_text, tenant=None):
    setting = f"SET it.tenant = '{tenant}';" if tenant else ''
    return [r for r in psql(f"SET ROLE {role}; {setting} COPY ({sql_text}) TO STDOUT;").stdout.split('\n') if r]


def test_match_under_rls_keeps_tenants_apart(tenant_notes):
    before = catalog_snapshot()
    check = run_modules([call('pg_fts', notes_spec(), check_mode=True)])[0]
    assert check['changed'] and not check['failed'], check.get('msg')
    assert catalog_snapshot() == before, 'check mode changed the catalog'
    applied, again = run_modules([call('pg_fts', notes_spec(), diff=True), call('pg_fts', notes_spec())])
    assert applied['changed'] and not applied['failed'], applied.get('msg')
    assert again['changed'] is False and again['queries'] == [], again['queries']
    assert applied['state']['match_function'] == (
        'it_pg_fts.search_notes_match(search_query text, tenant text, max_rows integer, skip_rows integer) '
        'RETURNS TABLE(id bigint, rank real) SECURITY DEFINER OWNER it_fts_owner')
    assert psql_value("SELECT p.proconfig::text FROM pg_proc p WHERE p.proname = 'search_notes_match'") == \
        '{"search_path=pg_catalog, pg_temp"}'
    # only the named role may run the match directly; PUBLIC may not
    assert psql_value("SELECT has_function_privilege('public', 'it_pg_fts.search_notes_match(text, text, integer, integer)', "
                      "'EXECUTE')") is False
    assert psql_value("SELECT has_function_privilege('it_fts_tenant_a', 'it_pg_fts.search_notes_match(text, text, integer, integer)', "
                      "'EXECUTE')") is False
    # the owner got column privileges only
    assert psql_value("SELECT has_table_privilege('it_fts_owner', 'it_pg_fts.notes', 'SELECT')") is False
    assert psql_value("SELECT has_column_privilege('it_fts_owner', 'it_pg_fts.notes', 'body', 'SELECT')") is False

    # trusted app role: its chosen tenant only, and the restrictive policy still hides the secret note
    search = "SELECT id FROM it_pg_fts.search_notes('walnut') ORDER BY id"
    assert as_role('it_fts_app', search, tenant='a') == ['1']
    assert as_role('it_fts_app', search, tenant='b') == ['3']
    assert as_role('it_fts_app', search) == []  # no tenant chosen: nothing
    # a tenant's own role goes through the plain RLS query: its own rows, whatever tenant it names
    assert as_role('it_fts_tenant_a', search, tenant='b') == ['1', '2']
    r = psql("SET ROLE it_fts_tenant_a; SELECT * FROM it_pg_fts.search_notes_match('walnut', 'b');", check=False)
    assert r.returncode != 0 and 'permission denied for function search_notes_match' in r.stderr
    # more hidden matches than the match's first window (2 * max_results + 20), all ranked above the visible one:
    # the search continues after the window and still finds it
    psql(f"INSERT INTO {N} SELECT i, 'a', 'walnut walnut walnut secret' FROM generate_series(100, 129) i")
    assert as_role('it_fts_app', "SELECT id FROM it_pg_fts.search_notes('walnut', 1)", tenant='a') == ['1']
    assert as_role('it_fts_tenant_a', "SELECT id FROM it_pg_fts.search_notes('walnut', 3)", tenant='a') == \
        ['100', '101', '102']
    psql(f"DELETE FROM {N} WHERE id >= 100")
    # RLS is not active for the superuser: the plain query, every tenant
    assert [r['id'] for r in psql_rows(search)] == [1, 2, 3]
    # tenant b's word is not found from tenant a
    assert as_role('it_fts_app', "SELECT id FROM it_pg_fts.search_notes('spoon')", tenant='a') == []
    assert as_role('it_fts_tenant_a', "SELECT id FROM it_pg_fts.search_notes('spoon')", tenant='b') == []


def test_match_uses_the_gin_index_where_rls_cannot(tenant_notes):
    """Why the match exists: as the RLS-bound role the GIN index cannot serve `@@`; the match's owner can."""
    query = ("EXPLAIN (COSTS OFF) SELECT id FROM it_pg_fts.notes t WHERE t.search @@ "
             "websearch_to_tsquery('english', 'walnut') AND t.tenant_id = 'a'")
    as_app = psql(f"SET enable_seqscan = off; SET ROLE it_fts_app; SET it.tenant = 'a'; {query};").stdout
    as_owner = psql(f"SET enable_seqscan = off; SET ROLE it_fts_owner; {query};").stdout
    assert 'notes_search_gin' not in as_app, as_app
    assert 'Bitmap Index Scan on notes_search_gin' in as_owner, as_owner


def test_match_owner_must_be_bypassrls_and_not_superuser(tenant_notes):
    before = catalog_snapshot()
    superuser, plain, nobody, nofn = run_modules([
        call('pg_fts', notes_spec(match_owner='postgres')),
        call('pg_fts', notes_spec(match_owner='it_fts_plain_owner')),
        call('pg_fts', notes_spec(match_roles=['it_fts_nobody'])),
        call('pg_fts', notes_spec(tenant_function='it_pg_fts.nope')),
    ])
    assert nofn['failed'] and 'tenant_function it_pg_fts.nope() does not exist' in nofn['msg']
    assert catalog_snapshot() == before
    assert superuser['failed'] and 'is a superuser' in superuser['msg']
    assert plain['failed'] and 'needs BYPASSRLS' in plain['msg']
    assert nobody['failed'] and 'unknown role(s) it_fts_nobody' in nobody['msg']


def test_without_match_owner_the_match_is_dropped(tenant_notes):
    spec = notes_spec(match_owner=None, match_roles=[], tenant_column=None, tenant_function=None)
    dropped, again = run_modules([call('pg_fts', spec), call('pg_fts', spec)])
    assert dropped['changed'] and not dropped['failed'], dropped.get('msg')
    assert dropped['state']['match_function'] is None
    assert again['changed'] is False
    # plain SECURITY INVOKER search: RLS still applies
    assert as_role('it_fts_app', "SELECT id FROM it_pg_fts.search_notes('walnut') ORDER BY id", tenant='a') == ['1']
