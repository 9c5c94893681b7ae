# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_index against PostgreSQL 17: check mode, apply, catalog, idempotence, diff, rebuild, hostile/invalid input."""

from __future__ import annotations

import pytest
from helpers import call, catalog_snapshot, psql, psql_rows, psql_value, run_modules

HOSTILE = 'x"; DROP TABLE it_pg_index.y; --'


@pytest.fixture(scope='module')
def table(schema):
    psql(f'''
        CREATE EXTENSION IF NOT EXISTS vector;
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
        CREATE TABLE {schema}.members (id bigint PRIMARY KEY, email text NOT NULL, name text,
            created_at timestamptz NOT NULL DEFAULT now(), deleted_at timestamptz, embedding vector(3));
        INSERT INTO {schema}.members (id, email, name, embedding)
            SELECT g, 'm' || g || '@example.org', 'Member ' || g, ARRAY[g, g, g]::vector(3)
            FROM generate_series(1, 500) g;
        CREATE TABLE {schema}.y (id int);
    ''')
    return f'{schema}.members'


def indexes(schema):
    return {r['indexname']: r['indexdef'] for r in
            psql_rows(f"SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = '{schema}'")}


def specs(table):
    return [
        {'name': 'members_email_active_idx', 'table': table, 'columns': ['email'], 'include': ['name'],
         'unique': True, 'where': 'deleted_at IS NULL'},
        {'name': 'members_name_trgm', 'table': table, 'method': 'gin',
         'columns': [{'name': 'name', 'opclass': 'gin_trgm_ops'}]},
        {'name': 'members_embedding_hnsw', 'table': table, 'method': 'hnsw',
         'columns': [{'name': 'embedding', 'opclass': 'vector_cosine_ops'}],
         'storage_parameters': {'m': 16, 'ef_construction': 64}},
        {'name': 'members_created_desc', 'table': table,
         'columns': [{'expression': 'lower(email)'}, {'name': 'created_at', 'order': 'desc', 'nulls': 'last'}]},
    ]


def test_create_idempotent_and_check_mode(schema, table):
    before = catalog_snapshot()
    checked = run_modules([call('pg_index', a, check_mode=True, diff=True) for a in specs(table)])
    for r in checked:
        assert not r['failed'], r.get('msg')
        assert r['changed'] is True
        assert any('CREATE' in q and 'CONCURRENTLY' in q for q in r['queries'])
        assert r['diff']['before'] == {'exists': False}
    assert catalog_snapshot() == before, 'check mode changed the catalog'

    results = run_modules([call('pg_index', a, diff=True) for a in specs(table)]
                          + [call('pg_index', a) for a in specs(table)])
    applied, rerun = results[:4], results[4:]
    for r in applied:
        assert not r['failed'], r.get('msg')
        assert r['changed'] is True
        assert r['state']['exists'] and r['state']['valid']
        assert r['diff']['before'] == {'exists': False} and r['diff']['after']['exists'] is True
    for r in rerun:
        assert not r['failed'], r.get('msg')
        assert r['changed'] is False, r['queries']
        assert r['queries'] == []

    idx = indexes(schema)
    assert idx['members_email_active_idx'] == (
        f'CREATE UNIQUE INDEX members_email_active_idx ON {schema}.members USING btree (email) INCLUDE (name) '
        'WHERE (deleted_at IS NULL)')
    assert 'USING gin (name gin_trgm_ops)' in idx['members_name_trgm']
    assert 'USING hnsw (embedding vector_cosine_ops) WITH (' in idx['members_embedding_hnsw']
    assert "ef_construction='64', m='16'" in idx['members_embedding_hnsw']
    assert 'USING btree (lower(email), created_at DESC NULLS LAST)' in idx['members_created_desc']
    assert psql_value("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                      f"WHERE c.relnamespace = '{schema}'::regnamespace AND NOT i.indisvalid") == 0


def test_changed_definition_is_rebuilt_under_temp_name(schema, table):
    changed = dict(specs(table)[0], where='deleted_at IS NULL AND id > 0')
    before = catalog_snapshot()
    r_check = run_modules([call('pg_index', changed, check_mode=True, diff=True)])[0]
    assert r_check['changed'] and not r_check['failed']
    assert catalog_snapshot() == before
    r_apply, r_again = run_modules([call('pg_index', changed, diff=True), call('pg_index', changed)])
    assert r_apply['changed'] and not r_apply['failed'], r_apply.get('msg')
    q = r_apply['queries']
    # build the new one first, then drop the old one, then rename: never a moment without an index
    assert q[0].startswith('CREATE UNIQUE INDEX CONCURRENTLY "members_email_active_idx_hcnew"')
    assert q[1] == f'DROP INDEX CONCURRENTLY "{schema}"."members_email_active_idx"'
    assert q[2] == (f'ALTER INDEX "{schema}"."members_email_active_idx_hcnew" RENAME TO "members_email_active_idx"')
    assert r_apply['diff']['before']['where'] == 'deleted_at IS NULL'
    assert r_apply['diff']['after']['where'] == 'deleted_at IS NULL AND id > 0'
    assert r_again['changed'] is False
    idx = indexes(schema)
    assert 'members_email_active_idx_hcnew' not in idx
    assert idx['members_email_active_idx'].endswith('WHERE ((deleted_at IS NULL) AND (id > 0))')


def test_invalid_index_is_rebuilt(schema, table):
    psql(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{schema}.members_created_desc'::regclass")
    r1, r2 = run_modules([call('pg_index', specs(table)[3]), call('pg_index', specs(table)[3])])
    assert r1['changed'] and not r1['failed'], r1.get('msg')
    assert r2['changed'] is False
    assert psql_value(f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{schema}.members_created_desc'::regclass")


def test_hostile_and_invalid_inputs(schema, table):
    before = catalog_snapshot()
    bad = run_modules([
        call('pg_index', {'name': 'bad1', 'table': table, 'columns': ['email', 'nope']}),
        call('pg_index', {'name': 'bad2', 'table': f'{schema}.missing', 'columns': ['a']}),
        call('pg_index', {'name': 'bad3', 'table': table, 'method': 'gin', 'unique': True, 'columns': ['name']}),
        call('pg_index', {'name': 'bad4', 'table': table, 'columns': [{'name': 'email', 'order': 'sideways'}]}),
        call('pg_index', {'name': 'bad5', 'table': table, 'columns': ['email'], 'where': 'nope > 1'}),
        call('pg_index', {'name': 'bad6', 'table': f'"{schema}"."y; DROP TABLE y"', 'columns': ['id']}),
    ])
    assert all(r['failed'] for r in bad), [r.get('msg') for r in bad]
    assert 'unknown column(s)' in bad[0]['msg'] and 'nope' in bad[0]['msg']
    assert 'does not exist' in bad[1]['msg'] and 'missing' in bad[1]['msg']
    assert 'unique indexes need method btree' in bad[2]['msg']
    assert 'order must be asc or desc' in bad[3]['msg']
    assert 'nope' in bad[4]['msg']
    assert 'does not exist' in bad[5]['msg']
    assert catalog_snapshot() == before, 'failed calls changed the catalog'

    hostile = {'name': HOSTILE, 'table': table, 'columns': ['email']}
    r1, r2 = run_modules([call('pg_index', hostile), call('pg_index', hostile)])
    assert r1['changed'] and not r1['failed'], r1.get('msg')
    assert r2['changed'] is False
    after = catalog_snapshot()
    assert psql_value(f"SELECT count(*) FROM pg_class WHERE relname = 'y' AND relnamespace = '{schema}'::regnamespace") == 1
    new = [i for i in after['indexes'] if i not in before['indexes']]
    assert [i['indexname'] for i in new] == [HOSTILE]
    assert after['relations'] != before['relations']
    assert {r['relname'] for r in after['relations']} - {r['relname'] for r in before['relations']} == {HOSTILE}


def test_absent(schema, table):
    spec = {'name': 'members_name_trgm', 'table': table, 'state': 'absent'}
    r_check, r_apply, r_again = run_modules([call('pg_index', spec, check_mode=True), call('pg_index', spec, diff=True),
                                             call('pg_index', spec)])
    assert r_check['changed'] and r_check['queries'] == [f'DROP INDEX CONCURRENTLY "{schema}"."members_name_trgm"']
    assert r_apply['changed'] and r_apply['diff']['after'] == {'exists': False}
    assert r_again['changed'] is False
    assert 'members_name_trgm' not in indexes(schema)
