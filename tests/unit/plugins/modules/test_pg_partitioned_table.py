# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import datetime

import pytest
from ansible_collections.hingecraft.enterprise_db.plugins.modules.pg_partitioned_table import (
    add_periods,
    check_period_format,
    expired,
    fail_on_list_duplicates,
    normalise_bound,
    parse_partition_name,
    partition_name,
    partman_interval,
    wanted_periods,
)

D = datetime.date


def test_add_periods_crosses_years():
    assert add_periods(D(2026, 11, 1), 'month', 3) == D(2027, 2, 1)
    assert add_periods(D(2026, 1, 1), 'month', -1) == D(2025, 12, 1)
    assert add_periods(D(2026, 12, 31), 'day', 1) == D(2027, 1, 1)


def test_names_round_trip():
    assert partition_name('donations', D(2026, 6, 1), 'month') == 'donations_p202606'
    assert partition_name('events', D(2026, 6, 15), 'day') == 'events_p20260615'
    assert parse_partition_name('donations', 'donations_p202606', 'month') == D(2026, 6, 1)
    assert parse_partition_name('donations', 'donations_default', 'month') is None
    assert parse_partition_name('donations', 'donations_p202613', 'month') is None
    long = 'x' * 63
    name = partition_name(long, D(2026, 6, 1), 'month')
    assert len(name.encode()) <= 63
    assert parse_partition_name(long, name, 'month') == D(2026, 6, 1)


def test_wanted_periods_premake_start_and_retention():
    assert wanted_periods(D(2026, 6, 15), 'month', 2) == [D(2026, 6, 1), D(2026, 7, 1), D(2026, 8, 1)]
    assert wanted_periods(D(2026, 6, 15), 'month', 0, start=D(2026, 4, 9)) == [D(2026, 4, 1), D(2026, 5, 1),
                                                                               D(2026, 6, 1)]
    # retention narrows a start that lies further back
    assert wanted_periods(D(2026, 6, 15), 'month', 0, start=D(2025, 1, 1), retention=1) == [
        D(2026, 5, 1), D(2026, 6, 1)]
    assert wanted_periods(D(2026, 6, 15), 'day', 1) == [D(2026, 6, 15), D(2026, 6, 16)]


def test_expired_keeps_the_window():
    names = ['d_p202603', 'd_p202604', 'd_p202605', 'd_p202606', 'd_default', 'other']
    assert expired(names, 'd', D(2026, 6, 15), 'month', 2) == ['d_p202603']
    assert expired(names, 'd', D(2026, 6, 15), 'month', 0) == ['d_p202603', 'd_p202604', 'd_p202605']


def test_list_duplicates_named():
    with pytest.raises(ValueError, match="list value 'DE' is in two partitions: a and b"):
        fail_on_list_duplicates([{'name': 'a', 'values': ['DE']}, {'name': 'b', 'values': ['FR', 'DE']}])
    fail_on_list_duplicates([{'name': 'a', 'values': ['DE']}, {'name': 'b', 'values': ['FR']}])


def test_period_format_names_round_trip_and_retention():
    assert partition_name('donations', D(2026, 3, 1), 'month', '%Y_%m') == 'donations_p2026_03'
    assert parse_partition_name('donations', 'donations_p2026_03', 'month', '%Y_%m') == D(2026, 3, 1)
    assert parse_partition_name('donations', 'donations_p202603', 'month', '%Y_%m') is None
    assert parse_partition_name('donations', 'donations_p2026_3', 'month', '%Y_%m') is None
    assert partition_name('events', D(2026, 6, 5), 'day', '%Y_%m_%d') == 'events_p2026_06_05'
    long = 'y' * 63
    name = partition_name(long, D(2026, 6, 1), 'month', '%Y_%m')
    assert len(name.encode()) <= 63 and parse_partition_name(long, name, 'month', '%Y_%m') == D(2026, 6, 1)
    names = ['donations_p2026_01', 'donations_p2026_02', 'donations_p2026_03', 'donations_default']
    assert expired(names, 'donations', D(2026, 3, 15), 'month', 1, '%Y_%m') == ['donations_p2026_01']


def test_check_period_format():
    assert check_period_format('%Y_%m', 'month') is None
    assert check_period_format('%Y%m%d', 'day') is None
    assert 'must contain %d' in check_period_format('%Y%m', 'day')
    assert 'may only contain' in check_period_format('%Y-%m', 'month')
    assert 'may only contain' in check_period_format("%Y%m'; DROP", 'month')


def test_normalise_bound_sorts_list_values_only():
    assert normalise_bound("FOR VALUES IN ('DE', 'AT')", 'list') == "FOR VALUES IN ('AT', 'DE')"
    assert normalise_bound("FOR VALUES FROM ('b') TO ('a')", 'range') == "FOR VALUES FROM ('b') TO ('a')"
    assert normalise_bound(None, 'list') is None


def test_partman_interval_text():
    assert partman_interval('month') == '1 month'
    assert partman_interval('day') == '1 day'
    assert partman_interval('month', 6) == '6 months'
    assert partman_interval('day', 0) == '0 days'
