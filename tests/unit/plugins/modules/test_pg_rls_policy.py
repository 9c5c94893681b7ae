# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of pg_rls_policy: input validation, role handling, and the drift plan."""

from __future__ import annotations

import pytest
from ansible_collections.hingecraft.enterprise_db.plugins.modules import (
    pg_rls_policy as m,
)
from psycopg import sql


def params(**kw):
    base = {"name": "p", "state": "present", "command": "ALL", "permissive": True, "roles": ["public"],
            "using": "true", "with_check": None, "enable": None, "force": None}
    base.update(kw)
    return base


def pol(**kw):
    base = {"command": "ALL", "permissive": True, "roles": ["public"], "using": "true", "with_check": None}
    base.update(kw)
    return base


@pytest.mark.parametrize(("kw", "fragment"), [
    ({"command": "INSERT", "using": "x"}, "using is not allowed for command=INSERT"),
    ({"command": "SELECT", "with_check": "x"}, "with_check is not allowed for command=SELECT"),
    ({"command": "DELETE", "with_check": "x"}, "with_check is not allowed for command=DELETE"),
    ({"using": None, "with_check": None}, "needs using or with_check"),
    ({"roles": []}, "roles must name"),
    ({"name": None, "enable": None, "force": None}, "nothing to manage"),
])
def test_validate_rejects(kw, fragment):
    assert fragment in m.validate_params(params(**kw))


def test_validate_accepts_and_absent_needs_no_expression():
    assert m.validate_params(params()) is None
    assert m.validate_params(params(state="absent", using=None)) is None
    assert m.validate_params(params(name=None, enable=True)) is None


def test_roles_normalized_and_missing():
    assert m.normalize_roles(["b", "PUBLIC", "a", "b"]) == ["a", "b", "public"]
    assert m.missing_roles(["public", "current_user", "x", "y"], {"y"}) == ["x"]


def test_plan_create_drop_nothing():
    assert m.plan_policy(None, pol()) == ("create", [])
    assert m.plan_policy(pol(), None) == ("drop", [])
    assert m.plan_policy(None, None) == (None, [])
    assert m.plan_policy(pol(), pol()) == (None, [])


def test_plan_alter_for_roles_and_expressions():
    assert m.plan_policy(pol(), pol(roles=["a"], using="(x = 1)")) == ("alter", ["roles", "using"])
    assert m.plan_policy(pol(with_check=None), pol(with_check="(y = 2)")) == ("alter", ["with_check"])


def test_plan_recreate_when_alter_cannot():
    assert m.plan_policy(pol(), pol(command="SELECT"))[0] == "recreate"
    assert m.plan_policy(pol(), pol(permissive=False))[0] == "recreate"
    # ALTER POLICY cannot remove a clause
    assert m.plan_policy(pol(with_check="(a)"), pol(with_check=None))[0] == "recreate"


def test_statements_quote_identifiers():
    hostile = 'x"; DROP TABLE y; --'
    d = pol(roles=[hostile, "public"], permissive=False, command="SELECT")
    text = m.create_policy_sql(hostile, sql.Identifier("s", hostile), d, "a = 1", None).as_string(None)
    assert text.startswith('CREATE POLICY "x""; DROP TABLE y; --" ON "s"."x""; DROP TABLE y; --" AS RESTRICTIVE')
    assert 'TO "x""; DROP TABLE y; --", PUBLIC USING (a = 1)' in text
    alter = m.alter_policy_sql("p", sql.Identifier("t"), d, ["roles"], None, None).as_string(None)
    assert alter == 'ALTER POLICY "p" ON "t" TO "x""; DROP TABLE y; --", PUBLIC'
