"""Wix External Database Collections requests -> parameterised SQL (psycopg.sql), against an allow-list.

Nothing a request carries becomes SQL text: field names are looked up in the collection's allow-list and
emitted as sql.Identifier of the *allow-listed* name; operators are looked up in a fixed table; every value is
a query parameter. Anything unknown raises BadRequest (HTTP 400). This module needs psycopg only, so the unit
tests import it without the web stack.
"""

from dataclasses import dataclass, field, replace

from psycopg import sql

MAX_LIMIT_DEFAULT = 1000
MAX_SKIP_DEFAULT = 100000
MAX_FILTER_NODES = 64
MAX_IN_VALUES = 100


class BadRequest(ValueError):
    """The request cannot be served as written (HTTP 400); the message names the problem, never echoes SQL."""


@dataclass(frozen=True)
class Collection:
    """One Wix collection: table, key column (exposed as `_id`), and the allow-listed fields with their types."""

    name: str
    table: str
    key: str
    fields: dict = field(default_factory=dict)  # name -> wix type: text | number | boolean | datetime | object
    schema: str = "app"  # always schema-qualified: the session's search_path plays no part

    @property
    def ident(self):
        return sql.Identifier(self.schema, self.table)

    def column(self, name):
        if name == "_id":
            return self.key
        if not isinstance(name, str) or name not in self.fields:
            raise BadRequest("unknown field")
        return name


# The HingeCraft collections (roles/schema); tenant_id is not exposed: the adapter sets it from the caller's token.
COLLECTIONS = {
    "members": Collection("members", "members", "member_id", {
        "country": "text", "email": "text", "display_name": "text", "bio": "text", "status": "text",
        "joined_at": "datetime"}),
    "clubs": Collection("clubs", "clubs", "club_id", {
        "name": "text", "description": "text", "country": "text", "created_at": "datetime"}),
    "donations": Collection("donations", "donations", "donation_id", {
        "member_id": "number", "campaign": "text", "country": "text", "amount": "number", "currency": "text",
        "donated_at": "datetime"}),
    "messages": Collection("messages", "messages", "message_id", {
        "club_id": "number", "member_id": "number", "body": "text", "sent_at": "datetime"}),
}

# Columns the database fills when an insert leaves them out (DEFAULT in roles/schema).
DEFAULTED = {"status", "joined_at", "created_at", "currency", "sent_at"}

COMPARISONS = {"$eq": "=", "$ne": "<>", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
LOGICAL = {"$and": " AND ", "$or": " OR "}
TEXT_OPS = ("$contains", "$startsWith", "$endsWith")
OPERATORS = sorted(list(COMPARISONS) + list(LOGICAL) + list(TEXT_OPS) + ["$not", "$hasSome"])

SCALARS = (str, int, float, bool)


def with_schema(schema):
    """The collections in another schema than roles/schema's default `app` (adapter_db_schema)."""
    return {k: replace(v, schema=schema) for k, v in COLLECTIONS.items()}


def collection(name, collections=None):
    collections = COLLECTIONS if collections is None else collections
    if not isinstance(name, str) or name not in collections:
        raise BadRequest("unknown collection")
    return collections[name]


def _scalar(value):
    if value is None or isinstance(value, SCALARS):
        return value
    raise BadRequest("filter values must be strings, numbers, booleans or null")


def _key_value(coll, col, value):
    """Key columns (and *_id number fields) are bigint: a value that is not an integer is a 400, not a SQL error."""
    if col == coll.key or coll.fields.get(col) == "number" and col.endswith("_id"):
        if isinstance(value, bool):
            raise BadRequest("_id must be an integer")
        try:
            return int(str(value), 10)
        except ValueError:
            raise BadRequest("_id must be an integer") from None
    return value


def where(coll, node, params, budget=None):
    """Translate one filter node into sql.Composable, appending values to params."""
    budget = budget if budget is not None else [MAX_FILTER_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise BadRequest("filter too large")
    if not isinstance(node, dict):
        raise BadRequest("filter must be an object")
    if not node:
        return sql.SQL("TRUE")
    op = node.get("operator")
    if op in LOGICAL:
        parts = node.get("value")
        if not isinstance(parts, list) or not parts:
            raise BadRequest(f"{op} needs a non-empty list")
        inner = sql.SQL(LOGICAL[op]).join(where(coll, p, params, budget) for p in parts)
        return sql.SQL("({})").format(inner)
    if op == "$not":
        return sql.SQL("(NOT COALESCE({}, FALSE))").format(where(coll, node.get("value"), params, budget))
    if op not in OPERATORS:
        raise BadRequest("unknown operator")
    col = coll.column(node.get("fieldName"))
    ident = sql.Identifier(col)
    value = node.get("value")
    if op == "$hasSome":
        if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
            raise BadRequest(f"$hasSome needs a list of 1 to {MAX_IN_VALUES} values")
        params.append([_key_value(coll, col, _scalar(v)) for v in value])
        return sql.SQL("{} = ANY(%s)").format(ident)
    value = _key_value(coll, col, _scalar(value))
    if op in TEXT_OPS:
        if not isinstance(value, str):
            raise BadRequest(f"{op} needs a string")
        params.append(value)
        fn = {"$contains": "strpos({}::text, %s) > 0", "$startsWith": "starts_with({}::text, %s)",
              "$endsWith": "right({}::text, char_length(%s)) = %s"}[op]
        if op == "$endsWith":
            params.append(value)
        return sql.SQL(fn).format(ident)
    if value is None:
        if op == "$eq":
            return sql.SQL("{} IS NULL").format(ident)
        if op == "$ne":
            return sql.SQL("{} IS NOT NULL").format(ident)
        raise BadRequest(f"{op} cannot compare with null")
    params.append(value)
    return sql.SQL("{} {} %s").format(ident, sql.SQL(COMPARISONS[op]))


def order_by(coll, sort):
    if sort in (None, []):
        return sql.SQL(" ORDER BY {}").format(sql.Identifier(coll.key))
    if not isinstance(sort, list) or len(sort) > 8:
        raise BadRequest("sort must be a list of at most 8 entries")
    parts = []
    for s in sort:
        if not isinstance(s, dict):
            raise BadRequest("sort entries must be objects")
        direction = str(s.get("direction", "asc")).lower()
        if direction not in ("asc", "desc"):
            raise BadRequest("sort direction must be asc or desc")
        parts.append(sql.SQL("{} {}").format(sql.Identifier(coll.column(s.get("fieldName"))),
                                             sql.SQL(direction.upper())))
    parts.append(sql.Identifier(coll.key))
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(parts)


def paging(skip, limit, default_limit, max_limit, max_skip=MAX_SKIP_DEFAULT):
    skip = 0 if skip is None else skip
    limit = default_limit if limit is None else limit
    if isinstance(skip, bool) or not isinstance(skip, int) or not 0 <= skip <= max_skip:
        raise BadRequest(f"skip must be an integer from 0 to {max_skip}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= max_limit:
        raise BadRequest(f"limit must be an integer from 1 to {max_limit}")
    return skip, limit


def _columns(coll):
    return sql.SQL(", ").join(sql.Identifier(c) for c in [coll.key, *coll.fields])


def find(coll, flt, sort, skip, limit):
    params = []
    cond = where(coll, flt or {}, params)
    q = sql.SQL("SELECT {} FROM {} WHERE {}").format(_columns(coll), coll.ident, cond)
    q += order_by(coll, sort) + sql.SQL(" LIMIT %s OFFSET %s")
    return q, [*params, limit, skip]


def count(coll, flt):
    params = []
    cond = where(coll, flt or {}, params)
    return sql.SQL("SELECT count(*) FROM {} WHERE {}").format(coll.ident, cond), params


def get(coll, item_id):
    q = sql.SQL("SELECT {} FROM {} WHERE {} = %s LIMIT 1").format(
        _columns(coll), coll.ident, sql.Identifier(coll.key))
    return q, [_key_value(coll, coll.key, item_id)]


def _item_fields(coll, item):
    if not isinstance(item, dict):
        raise BadRequest("item must be an object")
    values = {}
    for name, value in item.items():
        if name in ("_owner", "_createdDate", "_updatedDate"):
            continue
        col = coll.column(name)
        if coll.fields.get(col) == "object":
            values[col] = value
        else:
            values[col] = _key_value(coll, col, _scalar(value))
    return values


def insert(coll, item, tenant_setting):
    values = _item_fields(coll, item)
    if coll.key not in values:
        raise BadRequest("item needs an _id")
    missing = [f for f in coll.fields if f not in values and f not in DEFAULTED and f != "bio" and f != "description"]
    if missing:
        raise BadRequest("item misses required fields: " + ", ".join(sorted(missing)))
    cols = [sql.Identifier(c) for c in values] + [sql.Identifier("tenant_id")]
    marks = [sql.Placeholder()] * len(values) + [sql.SQL("current_setting({})").format(sql.Literal(tenant_setting))]
    q = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
        coll.ident, sql.SQL(", ").join(cols), sql.SQL(", ").join(marks), _columns(coll))
    return q, list(values.values())


def update(coll, item):
    values = _item_fields(coll, item)
    if coll.key not in values:
        raise BadRequest("item needs an _id")
    key = values.pop(coll.key)
    if not values:
        raise BadRequest("item has no fields to update")
    sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values)
    q = sql.SQL("UPDATE {} SET {} WHERE {} = %s RETURNING {}").format(
        coll.ident, sets, sql.Identifier(coll.key), _columns(coll))
    return q, [*values.values(), key]


def remove(coll, item_id):
    q = sql.SQL("DELETE FROM {} WHERE {} = %s RETURNING {}").format(
        coll.ident, sql.Identifier(coll.key), _columns(coll))
    return q, [_key_value(coll, coll.key, item_id)]


def row_to_item(coll, row):
    """A result row (key first, then the fields in allow-list order) as a Wix item with `_id`."""
    item = {"_id": str(row[0])}
    for name, value in zip(coll.fields, row[1:]):
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif value is not None and not isinstance(value, (str, int, float, bool, dict, list)):
            value = float(value) if coll.fields[name] == "number" else str(value)
        item[name] = value
    return item


def schema(coll, max_limit):
    ops = {"text": ["$eq", "$ne", "$contains", "$startsWith", "$endsWith", "$hasSome", "$lt", "$lte", "$gt", "$gte"],
           "number": ["$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$hasSome"],
           "datetime": ["$eq", "$ne", "$lt", "$lte", "$gt", "$gte"],
           "boolean": ["$eq", "$ne"], "object": []}
    fields = {"_id": {"displayName": "_id", "type": "text", "queryOperators": ["$eq", "$ne", "$hasSome"]}}
    for name, typ in coll.fields.items():
        fields[name] = {"displayName": name, "type": typ, "queryOperators": ops[typ]}
    return {"id": coll.name, "displayName": coll.name, "allowedOperations": [
        "get", "find", "count", "insert", "update", "remove"], "maxPageSize": max_limit, "ttl": 3600,
        "fields": fields}
