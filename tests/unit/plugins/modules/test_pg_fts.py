# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

from ansible_collections.hingecraft.enterprise_db.plugins.modules.pg_fts import (
    idx_name,
    match_name,
    result_key,
)


def test_result_key_ignores_typmods_and_quotes():
    # pg_get_function_result() prints result columns without typmods: char(2) comes back as character
    assert result_key('TABLE(member_id bigint, country character, rank real)') == \
        result_key('TABLE("member_id" bigint, "country" character(2), rank real)')
    assert result_key('TABLE(a numeric(12, 2), rank real)') == 'TABLE(a numeric, rank real)'
    assert result_key('TABLE(a bigint, rank real)') != result_key('TABLE(b bigint, rank real)')


def test_names_fit_in_63_bytes():
    assert match_name('search_members') == 'search_members_match'
    assert len(match_name('s' * 63).encode()) == 63 and match_name('s' * 63).endswith('_match')
    assert idx_name('members', 'display_name', '_trgm') == 'members_display_name_trgm'
    assert len(idx_name('é' * 40, 'c', '_gin').encode()) <= 63
