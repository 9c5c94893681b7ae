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
    assert psql_value("SELECT 'it_pg_fts.members_search_vector_gin'::regclass::oid") is not None
    assert index_oid is not None
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
