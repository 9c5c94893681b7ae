# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of pg_audit_trail: the attach/detach plan and the quoting inside the function body."""

from __future__ import annotations

from ansible_collections.hingecraft.enterprise_db.plugins.modules import (
    pg_audit_trail as m,
)


def test_plan_tables_present_and_absent():
    wanted = [("public", "a"), ("public", "b")]
    assert m.plan_tables("present", wanted, {("public", "a")}) == ([("public", "b")], [])
    assert m.plan_tables("present", wanted, set(wanted)) == ([], [])
    assert m.plan_tables("absent", wanted, {("public", "a")}) == ([], [("public", "a")])


def test_func_body_quotes_table_and_setting():
    body = m.func_body('a"u', "l'g", "app.x'; DROP TABLE t; --")
    assert 'INSERT INTO "a""u"."l\'g"' in body
    assert "current_setting('app.x''; DROP TABLE t; --', true)" in body
    # the '{}' of the empty changed-column array survives formatting
    assert "'{}'" in body


def test_function_sql_is_security_definer_with_pinned_search_path():
    text = m.function_sql("audit", "log_change", "BEGIN RETURN NULL; END").as_string(None)
    assert "SECURITY DEFINER SET search_path = pg_catalog, pg_temp" in text
    assert text.startswith('CREATE OR REPLACE FUNCTION "audit"."log_change"()')
    assert text.endswith("AS 'BEGIN RETURN NULL; END'")
