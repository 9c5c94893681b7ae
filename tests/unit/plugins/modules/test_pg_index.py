# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible_collections.hingecraft.enterprise_db.plugins.modules.pg_index import (
    normalise_column_spec,
    signature,
    temp_name,
)


def test_normalise_column_spec():
    assert normalise_column_spec('email')['name'] == 'email'
    spec = normalise_column_spec({'expression': 'lower(email)', 'order': 'DESC', 'nulls': 'Last'})
    assert spec == {'name': None, 'expression': 'lower(email)', 'opclass': None, 'order': 'desc', 'nulls': 'last'}


@pytest.mark.parametrize('item, message', [
    ({'name': 'a', 'expression': 'b'}, 'exactly one of name or expression'),
    ({'name': 'a', 'order': 'up'}, 'order must be asc or desc'),
    ({'name': 'a', 'nulls': 'middle'}, 'nulls must be first or last'),
    ({'name': 'a', 'colour': 'red'}, 'unknown keys'),
    ('', 'empty column name'),
])
def test_normalise_column_spec_rejects(item, message):
    with pytest.raises(ValueError, match=message):
        normalise_column_spec(item)


def test_signature_renders_order_and_opclass():
    row = {'nkey': 2, 'cols': ['a', 'lower(b)', 'c'], 'opclasses': ['', 'text_pattern_ops'],
           'options_bits': [3, 0], 'method': 'btree', 'unique': False, 'where': None, 'options': None,
           'valid': True}
    sig = signature(row)
    assert sig['columns'] == ['a DESC', 'lower(b) text_pattern_ops']  # DESC implies NULLS FIRST
    assert sig['include'] == ['c']
    row['options_bits'] = [1, 2]
    assert signature(row)['columns'] == ['a DESC NULLS LAST', 'lower(b) text_pattern_ops NULLS FIRST']
    assert signature(None) == {'exists': False}


def test_temp_name_respects_63_bytes():
    assert temp_name('idx', '_hcnew') == 'idx_hcnew'
    long = 'ä' * 40  # 80 bytes
    out = temp_name(long, '_hcnew')
    assert len(out.encode()) <= 63 and out.endswith('_hcnew')
