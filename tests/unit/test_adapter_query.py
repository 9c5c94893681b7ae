"""roles/adapter: Wix filters -> parameterised SQL. Hostile identifiers and values stay data; unknown fields,
operators and collections raise BadRequest (the adapter answers 400). The SQL text is rendered with a fake
cursor-free context (as_string(None)), so the assertions read what PostgreSQL would receive."""

import pathlib
import sys

import pytest

sys.dont_write_bytecode = True  # no __pycache__ in the role's files (the role copies the directory)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "roles" / "adapter" / "files"))

from hc_adapter import query
from hc_adapter.query import BadRequest

MEMBERS = query.COLLECTIONS["members"]
HOSTILE = 'x"; DROP TABLE members; --'


class FakeCursor:
    """Records what would be sent: the rendered statement and its parameters, nothing executed."""

    def __init__(self):
        self.sent = []

    def execute(self, q, params):
        text = q.as_string(None)
        assert text.count("%s") == len(params), (text, params)
        self.sent.append((text, list(params)))


def render(q_params):
    cur = FakeCursor()
    cur.execute(*q_params)
    return cur.sent[0]


def test_eq_filter_is_identifier_and_parameter():
    text, params = render(query.find(MEMBERS, {"operator": "$eq", "fieldName": "email", "value": "a@b.c"},
                                     None, 0, 10))
    assert 'WHERE "email" = %s' in text
    assert params == ["a@b.c", 10, 0]


def test_hostile_value_is_a_parameter_only():
    value = "' OR 1=1; DROP TABLE members; --"
    text, params = render(query.find(MEMBERS, {"operator": "$eq", "fieldName": "display_name", "value": value},
                                     None, 0, 10))
    assert value not in text and "DROP" not in text
    assert params[0] == value


@pytest.mark.parametrize("field", [HOSTILE, "tenant_id", "email; --", '"email"', "EMAIL", 7, None, ["email"]])
def test_unknown_or_hostile_field_is_refused(field):
    with pytest.raises(BadRequest, match="unknown field"):
        query.find(MEMBERS, {"operator": "$eq", "fieldName": field, "value": 1}, None, 0, 10)


@pytest.mark.parametrize("op", ["$regex", "= 1 OR 1=1 --", "$where", None, "$EQ"])
def test_unknown_operator_is_refused(op):
    with pytest.raises(BadRequest, match="unknown operator"):
        query.count(MEMBERS, {"operator": op, "fieldName": "email", "value": 1})


def test_hostile_sort_field_and_direction_refused():
    with pytest.raises(BadRequest, match="unknown field"):
        query.find(MEMBERS, {}, [{"fieldName": HOSTILE}], 0, 10)
    with pytest.raises(BadRequest, match="direction"):
        query.find(MEMBERS, {}, [{"fieldName": "email", "direction": "asc; DROP TABLE x"}], 0, 10)


def test_nested_logic_and_text_operators():
    flt = {"operator": "$and", "value": [
        {"operator": "$or", "value": [
            {"operator": "$startsWith", "fieldName": "display_name", "value": "Ann%"},
            {"operator": "$endsWith", "fieldName": "email", "value": "_x"}]},
        {"operator": "$not", "value": {"operator": "$contains", "fieldName": "bio", "value": "spam"}},
        {"operator": "$hasSome", "fieldName": "country", "value": ["US", "GB"]},
        {"operator": "$eq", "fieldName": "bio", "value": None}]}
    text, params = render(query.count(MEMBERS, flt))
    assert text.startswith('SELECT count(*) FROM "app"."members" WHERE ((starts_with("display_name"::text, %s) OR ')
    assert '"country" = ANY(%s)' in text and '"bio" IS NULL' in text
    # LIKE wildcards are not interpreted: the text operators compare literally
    assert "LIKE" not in text
    assert params == ["Ann%", "_x", "_x", "spam", ["US", "GB"]]


def test_id_maps_to_key_and_must_be_an_integer():
    text, params = render(query.get(MEMBERS, "42"))
    assert 'WHERE "member_id" = %s LIMIT 1' in text and params == [42]
    for bad in ["42 OR 1=1", "1; DROP TABLE members", True, "", "4.2"]:
        with pytest.raises(BadRequest, match="integer"):
            query.get(MEMBERS, bad)


@pytest.mark.parametrize("value", [{"$gt": ""}, {"a": 1}, [[1]], object()])
def test_structured_values_are_refused(value):
    with pytest.raises(BadRequest):
        query.find(MEMBERS, {"operator": "$eq", "fieldName": "email", "value": value}, None, 0, 10)


def test_filter_size_is_bounded():
    flt = {"operator": "$or", "value": [{"operator": "$eq", "fieldName": "email", "value": str(i)}
                                        for i in range(query.MAX_FILTER_NODES + 1)]}
    with pytest.raises(BadRequest, match="too large"):
        query.count(MEMBERS, flt)


@pytest.mark.parametrize("skip,limit", [(-1, 10), (0, 0), (0, 1001), ("0", 10), (0, True), (10**9, 10)])
def test_paging_is_bounded(skip, limit):
    with pytest.raises(BadRequest):
        query.paging(skip, limit, 50, 1000)


def test_paging_defaults():
    assert query.paging(None, None, 50, 1000) == (0, 50)


def test_insert_sets_tenant_from_setting_and_refuses_tenant_field():
    item = {"_id": "7", "country": "US", "email": "e@x", "display_name": HOSTILE}
    text, params = render(query.insert(MEMBERS, item, "app.tenant_id"))
    assert text.startswith('INSERT INTO "app"."members" ("member_id", "country", "email", "display_name", "tenant_id") '
                           "VALUES (%s, %s, %s, %s, current_setting('app.tenant_id'))")
    assert params == [7, "US", "e@x", HOSTILE]
    with pytest.raises(BadRequest, match="unknown field"):
        query.insert(MEMBERS, {**item, "tenant_id": "globex"}, "app.tenant_id")
    with pytest.raises(BadRequest, match="required"):
        query.insert(MEMBERS, {"_id": 8}, "app.tenant_id")


def test_update_and_remove():
    text, params = render(query.update(MEMBERS, {"_id": 7, "bio": "b"}))
    assert text.startswith('UPDATE "app"."members" SET "bio" = %s WHERE "member_id" = %s RETURNING ')
    assert params == ["b", 7]
    with pytest.raises(BadRequest, match="no fields"):
        query.update(MEMBERS, {"_id": 7})
    text, params = render(query.remove(MEMBERS, 7))
    assert text.startswith('DELETE FROM "app"."members" WHERE "member_id" = %s RETURNING ') and params == [7]


def test_unknown_collection():
    for name in ["tenants", "members; DROP TABLE members", None, "pg_authid"]:
        with pytest.raises(BadRequest, match="unknown collection"):
            query.collection(name)


def test_other_schema_is_quoted():
    coll = query.with_schema('x"; DROP SCHEMA app; --')["clubs"]
    text, params = render(query.count(coll, {}))
    assert text == 'SELECT count(*) FROM "x""; DROP SCHEMA app; --"."clubs" WHERE TRUE' and params == []


def test_schema_lists_every_field_and_no_tenant():
    for coll in query.COLLECTIONS.values():
        s = query.schema(coll, 1000)
        assert set(s["fields"]) == {"_id", *coll.fields} and "tenant_id" not in s["fields"]
