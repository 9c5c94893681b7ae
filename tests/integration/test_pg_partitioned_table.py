# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_partitioned_table against PostgreSQL 17: monthly/daily range with premake and retention, list by country,
hash, default partition, invalid bounds and hostile names."""

from __future__ import annotations

import pytest
from helpers import call, catalog_snapshot, psql, psql_rows, psql_value, run_modules

S = 'it_pg_partitioned_table'


@pytest.fixture(scope='module')
def ns(schema):
    psql(f'CREATE TABLE {schema}.canary (id int)')
    return schema


def partitions(table):
    return {r['name']: r['bound'] for r in psql_rows(
        "SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i "
        f"JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{S}.{table}'::regclass")}


def donations(**kw):
    return dict({'name': f'{S}.donations', 'strategy': 'range', 'key': 'donated_at', 'interval': 'month',
                 'premake': 2, 'start': '2026-03-01', 'reference_date': '2026-06-15', 'default_partition': True,
                 'primary_key': ['id', 'donated_at'],
                 'columns': [{'name': 'id', 'type': 'bigint', 'not_null': True},
                             {'name': 'amount', 'type': 'numeric(12,2)', 'not_null': True},
                             {'name': 'donated_at', 'type': 'timestamptz', 'not_null': True}]}, **kw)


def members(**kw):
    return dict({'name': f'{S}.members', 'strategy': 'list', 'key': 'country', 'default_partition': True,
                 'primary_key': ['id', 'country'],
                 'columns': [{'name': 'id', 'type': 'bigint', 'not_null': True},
                             {'name': 'country', 'type': 'text', 'not_null': True}],
                 'partitions': [{'name': 'members_dach', 'values': ['DE', 'AT', 'CH']},
                                {'name': 'members_fr', 'values': ['FR']}]}, **kw)


def events(**kw):
    return dict({'name': f'{S}.events', 'strategy': 'range', 'key': 'at', 'interval': 'day', 'premake': 2,
                 'reference_date': '2026-06-15', 'columns': [{'name': 'at', 'type': 'date'}]}, **kw)


def sessions(**kw):
    return dict({'name': f'{S}.sessions', 'strategy': 'hash', 'key': 'id', 'hash_partitions': 4,
                 'columns': [{'name': 'id', 'type': 'uuid', 'not_null': True}]}, **kw)


def test_create_check_idempotent(ns):
    all_specs = [donations(), members(), events(), sessions()]
    before = catalog_snapshot()
    checked = run_modules([call('pg_partitioned_table', a, check_mode=True, diff=True) for a in all_specs])
    for r in checked:
        assert r['changed'] and not r['failed'], r.get('msg')
        assert r['diff']['before']['exists'] is False
    assert catalog_snapshot() == before, 'check mode changed the catalog'

    results = run_modules([call('pg_partitioned_table', a, diff=True) for a in all_specs]
                          + [call('pg_partitioned_table', a) for a in all_specs])
    for r in results[:4]:
        assert r['changed'] and not r['failed'], r.get('msg')
    for r in results[4:]:
        assert r['changed'] is False and r['queries'] == [], r.get('queries') or r.get('msg')

    d = partitions('donations')
    assert sorted(d) == ['donations_default', 'donations_p202603', 'donations_p202604', 'donations_p202605',
                         'donations_p202606', 'donations_p202607', 'donations_p202608']
    assert d['donations_default'] == 'DEFAULT'
    assert d['donations_p202606'].startswith("FOR VALUES FROM ('2026-06-01 00:00:00")
    assert psql_value(f"SELECT pg_get_partkeydef('{S}.donations'::regclass)") == 'RANGE (donated_at)'
    m = partitions('members')
    assert m == {'members_dach': "FOR VALUES IN ('DE', 'AT', 'CH')", 'members_fr': "FOR VALUES IN ('FR')",
                 'members_default': 'DEFAULT'}
    assert sorted(partitions('events')) == ['events_p20260615', 'events_p20260616', 'events_p20260617']
    h = partitions('sessions')
    assert sorted(h) == ['sessions_h0', 'sessions_h1', 'sessions_h2', 'sessions_h3']
    assert h['sessions_h3'] == 'FOR VALUES WITH (modulus 4, remainder 3)'

    psql(f"""INSERT INTO {S}.donations VALUES (1, 10, '2026-07-10 12:00+00'), (2, 20, '2030-01-01 00:00+00');
             INSERT INTO {S}.members VALUES (1, 'AT'), (2, 'PL');""")
    assert psql_value(f"SELECT tableoid::regclass::text FROM {S}.donations WHERE id = 1") == f'{S}.donations_p202607'
    assert psql_value(f"SELECT tableoid::regclass::text FROM {S}.donations WHERE id = 2") == f'{S}.donations_default'
    assert psql_value(f"SELECT tableoid::regclass::text FROM {S}.members WHERE id = 2") == f'{S}.members_default'
    # partition pruning works on the time key
    plan = psql(f"EXPLAIN (COSTS OFF) SELECT * FROM {S}.donations WHERE donated_at >= '2026-07-01' "
                "AND donated_at < '2026-08-01'").stdout
    assert 'donations_p202607' in plan and 'donations_p202606' not in plan, plan


def test_premake_and_retention_move_the_window(ns):
    later = donations(reference_date='2026-09-15', retention=2)
    check, applied, again = run_modules([
        call('pg_partitioned_table', later, check_mode=True),
        call('pg_partitioned_table', later, diff=True),
        call('pg_partitioned_table', later)])
    assert check['changed'] and check['dropped'] == applied['dropped']
    assert applied['dropped'] == ['donations_p202603', 'donations_p202604', 'donations_p202605',
                                  'donations_p202606']
    assert f'ALTER TABLE "{S}"."donations" DETACH PARTITION "{S}"."donations_p202603"' in applied['queries']
    assert again['changed'] is False
    assert sorted(partitions('donations')) == ['donations_default', 'donations_p202607', 'donations_p202608',
                                               'donations_p202609', 'donations_p202610', 'donations_p202611']
    assert psql_value(f"SELECT to_regclass('{S}.donations_p202603') IS NULL") is True
    assert psql_value(f'SELECT count(*) FROM {S}.donations WHERE id = 1') == 1  # July is kept


def test_invalid_input_fails_before_any_change(ns):
    before = catalog_snapshot()
    rng = {'name': f'{S}.ranges', 'strategy': 'range', 'key': 'n', 'columns': [{'name': 'n', 'type': 'integer'}]}
    bad = run_modules([
        call('pg_partitioned_table', dict(rng, partitions=[{'name': 'r1', 'from': 10, 'to': 1}])),
        call('pg_partitioned_table', dict(rng, partitions=[{'name': 'r1', 'from': 1, 'to': 10},
                                                           {'name': 'r2', 'from': 5, 'to': 20}])),
        call('pg_partitioned_table', dict(rng, key='nope')),
        call('pg_partitioned_table', members(name=f'{S}.m2', partitions=[{'name': 'a', 'values': ['DE']},
                                                                         {'name': 'b', 'values': ['DE']}])),
        call('pg_partitioned_table', dict(rng, primary_key=['n', 'missing'])),
        call('pg_partitioned_table', dict(rng, columns=[{'name': 'n', 'type': 'int; DROP TABLE canary'}])),
        call('pg_partitioned_table', donations(name=f'{S}.d2', primary_key=['id'])),
        call('pg_partitioned_table', sessions(hash_partitions=8)),
    ])
    assert all(r['failed'] for r in bad), [r.get('msg') for r in bad]
    assert 'partition r1: inverted range bounds' in bad[0]['msg']
    assert 'partitions r1 and r2 overlap' in bad[1]['msg']
    assert "unknown column 'nope' for the partition key" in bad[2]['msg']
    assert "list value 'DE' is in two partitions: a and b" in bad[3]['msg']
    assert 'unknown column(s) in primary_key: missing' in bad[4]['msg']
    assert 'unknown type' in bad[5]['msg']
    assert 'primary_key must include the partition key donated_at' in bad[6]['msg']
    assert 'hash_partitions cannot change to 8' in bad[7]['msg']
    assert catalog_snapshot() == before


def test_hostile_names_are_quoted(ns):
    hostile = 'x"; DROP TABLE canary; --'
    r1, r2 = run_modules([
        call('pg_partitioned_table', members(name=f'{S}.{hostile}', partitions=[
            {'name': 'p"; DROP TABLE canary; --', 'values': ["DE'); DROP TABLE canary; --"]}])),
        call('pg_partitioned_table', members(name=f'{S}.{hostile}', partitions=[
            {'name': 'p"; DROP TABLE canary; --', 'values': ["DE'); DROP TABLE canary; --"]}])),
    ])
    assert r1['changed'] and not r1['failed'], r1.get('msg')
    assert r2['changed'] is False
    assert psql_value(f"SELECT to_regclass('{S}.canary') IS NOT NULL") is True
    bounds = {r['name']: r['bound'] for r in r1['state']['partitions']}
    assert bounds['p"; DROP TABLE canary; --'] == "FOR VALUES IN ('DE''); DROP TABLE canary; --')"


def gifts(**kw):
    return dict({'name': f'{S}.gifts', 'strategy': 'range', 'key': 'given_at', 'interval': 'month', 'premake': 1,
                 'start': '2026-05-01', 'reference_date': '2026-06-15', 'period_format': '%Y_%m',
                 'default_partition': True, 'primary_key': ['id', 'given_at'],
                 'columns': [{'name': 'id', 'type': 'bigint', 'not_null': True},
                             {'name': 'amount', 'type': 'numeric(12,2)', 'not_null': True, 'check': 'amount > 0'},
                             {'name': 'status', 'type': 'text', 'not_null': True, 'default': "'open'"},
                             {'name': 'given_at', 'type': 'timestamptz', 'not_null': True, 'default': 'now()'}]},
                **kw)


def test_period_format_defaults_and_checks(ns):
    created, again = run_modules([call('pg_partitioned_table', gifts()), call('pg_partitioned_table', gifts())])
    assert created['changed'] and not created['failed'], created.get('msg')
    assert again['changed'] is False and again['queries'] == [], again['queries']
    assert sorted(partitions('gifts')) == ['gifts_default', 'gifts_p2026_05', 'gifts_p2026_06', 'gifts_p2026_07']
    psql(f"INSERT INTO {S}.gifts (id, amount) VALUES (1, 5)")
    assert psql_value(f"SELECT status FROM {S}.gifts WHERE id = 1") == 'open'
    r = psql(f"INSERT INTO {S}.gifts (id, amount) VALUES (2, -1)", check=False)
    assert r.returncode != 0 and 'check constraint' in r.stderr
    # retention understands the custom names too
    kept = run_modules([call('pg_partitioned_table', gifts(retention=0))])[0]
    assert kept['dropped'] == ['gifts_p2026_05'], kept
    bad = run_modules([call('pg_partitioned_table', gifts(period_format='%Y-%B'))])[0]
    assert bad['failed'] and "period_format '%Y-%B' may only contain" in bad['msg']


def test_same_name_other_bounds_fails_clearly(ns):
    # someone created members_fr for Belgium, and a month partition with the wrong range
    psql(f'''
        CREATE TABLE {S}.regions (id bigint NOT NULL, country text NOT NULL) PARTITION BY LIST (country);
        CREATE TABLE {S}.regions_fr PARTITION OF {S}.regions FOR VALUES IN ('BE');
        CREATE TABLE {S}.visits (at date NOT NULL) PARTITION BY RANGE (at);
        CREATE TABLE {S}.visits_p202606 PARTITION OF {S}.visits FOR VALUES FROM ('2026-06-01') TO ('2026-06-15');
    ''')
    before = catalog_snapshot()
    regions, visits, reordered = run_modules([
        call('pg_partitioned_table', {'name': f'{S}.regions', 'strategy': 'list', 'key': 'country',
                                      'partitions': [{'name': 'regions_de', 'values': ['DE']},
                                                     {'name': 'regions_fr', 'values': ['FR']}]}),
        call('pg_partitioned_table', {'name': f'{S}.visits', 'strategy': 'range', 'key': 'at', 'interval': 'month',
                                      'premake': 1, 'reference_date': '2026-06-15'}),
        call('pg_partitioned_table', members(partitions=[{'name': 'members_dach', 'values': ['CH', 'DE', 'AT']},
                                                         {'name': 'members_fr', 'values': ['FR']}])),
    ])
    assert regions['failed'] and f'partition {S}.regions_fr exists with other bounds' in regions['msg']
    assert "IN ('BE')" in regions['msg'] and "IN ('FR')" in regions['msg']
    assert visits['failed'] and f'partition {S}.visits_p202606 exists with other bounds' in visits['msg']
    assert catalog_snapshot() == before, 'a failed run changed the catalog'
    # the same list values in another order are the same bounds
    assert not reordered['failed'] and reordered['changed'] is False, reordered.get('msg')


def pledges(**kw):
    return dict({'name': f'{S}.pledges', 'strategy': 'range', 'key': 'pledged_at', 'interval': 'month', 'premake': 2,
                 'default_partition': True, 'partman': True, 'primary_key': ['id', 'pledged_at'],
                 'columns': [{'name': 'id', 'type': 'bigint', 'not_null': True},
                             {'name': 'pledged_at', 'type': 'timestamptz', 'not_null': True}]}, **kw)


def test_partman_mode(ns):
    before = catalog_snapshot()
    check = run_modules([call('pg_partitioned_table', pledges(), check_mode=True)])[0]
    assert check['changed'] and not check['failed'], check.get('msg')
    assert catalog_snapshot() == before, 'check mode changed the catalog'
    created, again = run_modules([call('pg_partitioned_table', pledges()), call('pg_partitioned_table', pledges())])
    assert created['changed'] and not created['failed'], created.get('msg')
    assert any('create_parent' in q for q in created['queries'])
    assert again['changed'] is False and again['queries'] == [], again['queries']
    cfg = created['state']['partman']
    assert cfg['partition_interval'] == '1 mon' and cfg['premake'] == 2 and cfg['retention'] is None
    names = sorted(partitions('pledges'))
    assert 'pledges_default' in names and len(names) >= 4, names  # current month, 2 ahead (+ pg_partman's past ones)
    # a row for next month lands in its own partition, made by pg_partman
    psql(f"INSERT INTO {S}.pledges VALUES (1, now() + interval '1 month')")
    assert psql_value(f"SELECT tableoid::regclass::text FROM {S}.pledges WHERE id = 1") != f'{S}.pledges_default'
    # premake and retention are kept in part_config
    changed = run_modules([call('pg_partitioned_table', pledges(premake=4, retention=6))])[0]
    assert changed['changed'] and not changed['failed'], changed.get('msg')
    assert changed['state']['partman']['premake'] == 4 and changed['state']['partman']['retention'] == '6 months'
    assert len(partitions('pledges')) > len(names)
    psql(f'''CREATE TABLE {S}.pre (at timestamptz NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE {S}.pre_old PARTITION OF {S}.pre FOR VALUES FROM ('2020-01-01') TO ('2020-02-01');''')
    bad = run_modules([call('pg_partitioned_table', pledges(name=f'{S}.pre', key='at', primary_key=[]))])[0]
    assert bad['failed'] and 'already has partitions' in bad['msg']
