# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of pg_tenant: validation, the tenant plan, and the generated function texts."""

from __future__ import annotations

import pytest
from ansible_collections.hingecraft.enterprise_db.plugins.modules import pg_tenant as m


def params(**kw):
    base = {"registry_schema": "tenancy", "setting": "app.tenant_id", "trusted_roles": ["app_rw"],
            "tenant_role_prefix": "tenant_", "tenant_role_member_of": ["app_tenant"], "tables": [],
            "tenant_column": "tenant_id", "policy_name": "iso",
            "tenants": [{"id": "acme", "name": "Acme", "state": "present"}]}
    base.update(kw)
    return base


@pytest.mark.parametrize(("kw", "fragment"), [
    ({"setting": "tenant"}, "custom setting name with a dot"),
    ({"tenants": [{"id": "Acme", "name": None, "state": "present"}]}, "invalid tenant id 'Acme'"),
    ({"tenants": [{"id": "a;b", "name": None, "state": "present"}]}, "invalid tenant id"),
    ({"tenants": [{"id": "a", "name": None, "state": "present"}] * 2}, "duplicate tenant id"),
    ({"tenant_role_prefix": "x" * 60}, "longer than 63"),
    ({"tenant_role_member_of": ["app_rw"]}, "must not contain trusted roles: app_rw"),
])
def test_validate_rejects(kw, fragment):
    assert fragment in m.validate(params(**kw))


def test_validate_accepts():
    assert m.validate(params()) is None


def test_plan_tenants():
    p = params(tenants=[
        {"id": "new", "name": "N", "state": "present"},
        {"id": "same", "name": None, "state": "present"},
        {"id": "renamed", "name": "R2", "state": "present"},
        {"id": "back", "name": None, "state": "present"},
        {"id": "bye", "name": None, "state": "retired"},
        {"id": "gone", "name": None, "state": "retired"},
        {"id": "never", "name": None, "state": "retired"},
    ])
    current = {"same": {"name": "S", "status": "active"}, "renamed": {"name": "R1", "status": "active"},
               "back": {"name": "B", "status": "retired"}, "bye": {"name": None, "status": "active"},
               "gone": {"name": None, "status": "retired"}}
    plan = [(a, t["id"]) for a, t in m.plan_tenants(p, current)]
    assert plan == [("create", "new"), ("rename", "renamed"), ("reactivate", "back"), ("retire", "bye"),
                    ("create_retired", "never")]


def test_function_texts_quote_roles_and_setting():
    texts = m.function_texts(params(trusted_roles=['we"ird', "app_rw"], setting="app.t'x"))
    ct = texts["current_tenant"]
    assert "'{\"app_rw\",\"we\\\\\"ird\"}'::text[]" in ct
    assert "current_setting('app.t''x', true)" in ct
    assert '"tenancy"."role_tenant"(current_user)' in ct
    assert 'FROM "tenancy"."tenants"' in texts["set_tenant"]
    # transaction-scoped: behind a transaction-mode pooler a session-wide tenant would pass to the next client
    assert "pg_catalog.set_config('app.t''x', p_tenant, true)" in texts["set_tenant"]


def test_set_tenant_is_security_definer_current_tenant_is_invoker():
    assert "SECURITY DEFINER" in m.function_sql("s", "set_tenant", "x").as_string(None)
    assert "SECURITY DEFINER" in m.function_sql("s", "role_tenant", "x").as_string(None)
    assert "SECURITY INVOKER" in m.function_sql("s", "current_tenant", "x").as_string(None)
