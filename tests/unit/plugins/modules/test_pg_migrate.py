# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import hashlib

import pytest
from ansible_collections.hingecraft.enterprise_db.plugins.modules.pg_migrate import (
    MigrationError,
    check_sequence,
    plan,
    scan,
    scan_given,
)


def write(d, name, text):
    (d / name).write_text(text, encoding='utf-8')


@pytest.fixture
def files(tmp_path):
    for v in (1, 2, 3):
        write(tmp_path, f'V{v}__step_{v}.sql', f'SELECT {v};')
        write(tmp_path, f'U{v}__step_{v}.sql', f'SELECT -{v};')
    write(tmp_path, 'README.md', 'ignored')
    return scan(str(tmp_path))


def hist(files, *versions, kind='migrate'):
    return [{'version': v, 'description': f'step {v}', 'checksum': files['V'][v]['checksum'], 'kind': kind}
            for v in versions]


def test_scan_checksums_and_ignores_other_files(files, tmp_path):
    assert sorted(files['V']) == [1, 2, 3]
    assert files['V'][2]['checksum'] == hashlib.sha256(b'SELECT 2;').hexdigest()


@pytest.mark.parametrize('name, message', [
    ('V1_bad.sql', 'does not match'),
    ('U9__orphan.sql', 'has no V9 file'),
    ('V01__dup.sql', 'duplicate version V1'),
    ('V0__zero.sql', 'versions start at 1'),
])
def test_scan_rejects(tmp_path, name, message):
    write(tmp_path, 'V1__first.sql', 'SELECT 1;')
    write(tmp_path, name, 'SELECT 1;')
    with pytest.raises(MigrationError, match=message):
        scan(str(tmp_path))


def test_files_given_as_data_match_the_same_files_on_disk(files):
    given = scan_given({f'{k}{v}__step_{v}.sql': f'SELECT {"-" if k == "U" else ""}{v};'
                        for k in 'VU' for v in (1, 2, 3)})
    for kind in 'VU':
        assert {v: f['checksum'] for v, f in given[kind].items()} == {v: f['checksum'] for v, f in files[kind].items()}


@pytest.mark.parametrize('given, message', [
    ({'V1__a.sql': 'SELECT 1;', 'V1_b.sql': 'SELECT 2;'}, 'does not match'),
    ({'../V1__a.sql': 'SELECT 1;'}, 'not a file name'),
    ({'V1__a.txt': 'SELECT 1;'}, 'not a file name'),
    ({'V1__a.sql': 1}, 'must be the SQL text'),
    ({'V1__a.sql': 'SELECT 1;', 'U2__b.sql': 'SELECT 1;'}, 'has no V2 file'),
])
def test_files_given_as_data_are_validated(given, message):
    with pytest.raises(MigrationError, match=message):
        scan_given(given)


def test_gap_is_named():
    with pytest.raises(MigrationError, match='V2 is missing before V3'):
        check_sequence([1, 3], 0)
    with pytest.raises(MigrationError, match='V2 to V4 are missing before V5'):
        check_sequence([1, 5], 0)
    check_sequence([4, 5], 3)


def test_plan_up_target_and_rollback(files):
    assert plan(files, [], None, None)['up'] == [1, 2, 3]
    assert plan(files, [], '2', None)['up'] == [1, 2]
    p = plan(files, hist(files, 1, 2, 3), '1', None)
    assert p['down'] == [3, 2] and p['up'] == []
    assert plan(files, hist(files, 1, 2, 3), None, None)['up'] == []


def test_plan_baseline(files):
    p = plan(files, [], None, 2)
    assert p['baseline'] == 2 and p['up'] == [3]
    recorded = [{'version': 2, 'description': '<< baseline >>', 'checksum': '', 'kind': 'baseline'}]
    assert plan(files, recorded, None, None)['up'] == [3]
    with pytest.raises(MigrationError, match='below the baseline'):
        plan(files, recorded, '1', None)


def test_plan_refuses_changed_checksum(files):
    h = hist(files, 1)
    h[0]['checksum'] = '0' * 64
    with pytest.raises(MigrationError, match='checksum of applied migration V1__step_1.sql changed'):
        plan(files, h, None, None)


def test_plan_refuses_missing_down_file(files, tmp_path):
    (tmp_path / 'U3__step_3.sql').unlink()
    f = scan(str(tmp_path))
    with pytest.raises(MigrationError, match='no down file for V3'):
        plan(f, hist(f, 1, 2, 3), '1', None)


def test_plan_refuses_target_beyond_files(files):
    with pytest.raises(MigrationError, match='has no migration file'):
        plan(files, [], '7', None)
