# Copyright: HingeCraft
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenant_id convention: a tenants registry, per-tenant roles, and RLS keyed on a trusted session setting."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_tenant
short_description: Multi-tenancy by tenant_id column and row-level security keyed on a trusted session setting
version_added: "0.1.0"
description:
  - Keeps a tenants registry (O(registry_schema).C(tenants)), three functions, per-tenant roles, and one
    row-level security policy per tenant-scoped table, all from a declarative list of tenants and tables.
  - 'Trust model. PostgreSQL lets any role C(SET) a custom setting such as C(app.tenant_id), so the setting alone
    proves nothing. The policies therefore compare the tenant column with C(<registry_schema>.current_tenant()),
    which honours the setting only when the current role is a member of one of O(trusted_roles) (the
    application''s role, reached through the pooler); for any other role it answers with the tenant that the
    role itself belongs to (a per-tenant role created here), or NULL - no rows - otherwise. Trusted roles
    select a tenant with C(SELECT <registry_schema>.set_tenant(''acme'')), a C(SECURITY DEFINER) function that
    refuses unknown and retired tenants and is executable only by O(trusted_roles). The choice holds until the end
    of the current transaction (C(set_config(..., true))): behind a pooler in transaction mode (PgBouncer, the
    platform''s default) a server connection passes from client to client between transactions, and a
    session-wide tenant would follow it to the next client. Call C(set_tenant) at the start of every transaction
    (in autocommit mode, in the same statement string as the queries). A trusted role is trusted:
    code that runs as it can choose any tenant, which is why it must never run end-user SQL. Superusers, roles
    with C(BYPASSRLS) are not subject to RLS at all; table owners are, because the policy tables are forced.'
  - Retiring a tenant (O(tenants[].state=retired)) keeps its rows, marks it retired, makes C(set_tenant) refuse it,
    makes its role see no rows, and removes the tenant role from the groups in O(tenant_role_member_of).
  - Tenants not listed are left alone. Each tenant-scoped table must already have the O(tenant_column) column.
author:
  - HingeCraft platform engineering (@hingecraft)
extends_documentation_fragment:
  - hingecraft.enterprise_db.postgres
attributes:
  check_mode:
    support: full
    description: Statements run inside a transaction that is rolled back.
  diff_mode:
    support: full
    description: Returns the state before and after.
options:
  registry_schema:
    description: Schema for the tenants registry table and the tenancy functions.
    type: str
    default: tenancy
  setting:
    description: Session setting that carries the current tenant for trusted roles.
    type: str
    default: app.tenant_id
  trusted_roles:
    description: Roles allowed to choose a tenant through the setting and C(set_tenant()). They must exist.
    type: list
    elements: str
    default: []
  tables:
    description: Tenant-scoped tables (optionally schema-qualified) that get RLS enabled, forced, and the policy.
    type: list
    elements: str
    default: []
  tenant_column:
    description: Column holding the tenant id in every table of O(tables).
    type: str
    default: tenant_id
  policy_name:
    description: Name of the isolation policy created on each table.
    type: str
    default: hc_tenant_isolation
  tenant_role_prefix:
    description: Per-tenant role names are this prefix followed by the tenant id.
    type: str
    default: tenant_
  tenant_role_member_of:
    description:
      - Group roles every active tenant role is a member of (for table privileges). They must exist and must not be,
        or be members of, a trusted role.
    type: list
    elements: str
    default: []
  tenants:
    description: Tenants to create or retire.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: Tenant id, lower-case letters, digits and underscores, 1-40 characters.
        type: str
        required: true
      name:
        description: Display name.
        type: str
      state:
        description: V(present) (active) or V(retired).
        type: str
        choices: [present, retired]
        default: present
seealso:
  - name: Row security policies
    description: PostgreSQL manual, row security policies.
    link: https://www.postgresql.org/docs/17/ddl-rowsecurity.html
  - name: Custom options
    description: Why any role can set a custom setting (and why the setting is only trusted for trusted roles).
    link: https://www.postgresql.org/docs/17/runtime-config-custom.html
  - module: hingecraft.enterprise_db.pg_rls_policy
"""

EXAMPLES = r"""
- name: Two tenants, members and donations isolated by tenant_id; the application role may switch tenants
  hingecraft.enterprise_db.pg_tenant:
    db: hingecraft
    trusted_roles: [app_rw]
    tables: [public.members, public.donations]
    tenant_role_member_of: [app_tenant]
    tenants:
      - {id: acme, name: ACME Woodworks}
      - {id: globex, name: Globex Guild}

- name: Retire a tenant (its rows stay, nobody can select it any more)
  hingecraft.enterprise_db.pg_tenant:
    db: hingecraft
    tenants:
      - {id: globex, state: retired}
"""

RETURN = r"""
changed:
  description: Whether any statement was needed.
  returned: always
  type: bool
queries:
  description: Statements executed (rolled back in check mode), in order.
  returned: always
  type: list
  elements: str
state:
  description: Final state.
  returned: always
  type: dict
  sample:
    infrastructure: true
    tenants: {acme: {name: ACME Woodworks, status: active, role: tenant_acme}}
    tables: {public.members: true}
    trusted_roles: [app_rw]
diff:
  description: Before and after states, in diff mode.
  returned: when diff mode is on
  type: dict
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import (
    PgSession,
    ensure_psycopg,
    postgres_common_argument_spec,
    psycopg,
    split_qualified,
    sql,
)

TENANT_ID_RE = re.compile(r"^[a-z0-9_]{1,40}$")

REGISTRY_DDL = """CREATE TABLE {tbl} (
    tenant_id text PRIMARY KEY CHECK (tenant_id ~ '^[a-z0-9_]{{1,40}}$'),
    name text,
    role_name name NOT NULL UNIQUE,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
)"""

# role_tenant(role): the active tenant a per-tenant role belongs to. SECURITY DEFINER so that tenant roles need
# no privilege on the registry; it only answers for the name it is given.
ROLE_TENANT_BODY = """SELECT t.tenant_id FROM {tbl} t WHERE t.role_name = p_role AND t.status = 'active'"""

# current_tenant(): SECURITY INVOKER on purpose - current_user must be the caller.
CURRENT_TENANT_BODY = """SELECT CASE
    WHEN EXISTS (SELECT 1 FROM unnest({trusted}::text[]) AS r(name)
                 WHERE pg_catalog.pg_has_role(current_user, r.name, 'MEMBER'))
    THEN nullif(pg_catalog.current_setting({setting}, true), '')
    ELSE {role_tenant}(current_user)
END"""

SET_TENANT_BODY = """
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {tbl} t WHERE t.tenant_id = p_tenant AND t.status = 'active') THEN
        RAISE EXCEPTION 'unknown or retired tenant: %', p_tenant USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.set_config({setting}, p_tenant, true);
    RETURN p_tenant;
END
"""


def validate(p):
    """Pure input checks; returns an error message or None."""
    if "." not in p["setting"]:
        return "setting must be a custom setting name with a dot, like app.tenant_id"
    seen = set()
    for t in p["tenants"]:
        if not TENANT_ID_RE.match(t["id"] or ""):
            return "tenants: invalid tenant id {!r} (lower-case letters, digits, underscores, 1-40 chars)".format(t["id"])
        if t["id"] in seen:
            return "tenants: duplicate tenant id {!r}".format(t["id"])
        seen.add(t["id"])
        if len(p["tenant_role_prefix"] + t["id"]) > 63:
            return "tenants: role name {}{} is longer than 63 bytes".format(p["tenant_role_prefix"], t["id"])
    overlap = set(p["trusted_roles"]) & set(p["tenant_role_member_of"])
    if overlap:
        return "tenant_role_member_of must not contain trusted roles: {}".format(", ".join(sorted(overlap)))
    return None


def function_texts(p):
    schema = p["registry_schema"]
    tbl = sql.Identifier(schema, "tenants")
    role_tenant = sql.Identifier(schema, "role_tenant")
    quoted = ['"{}"'.format(r.replace("\\", "\\\\").replace('"', '\\"')) for r in sorted(p["trusted_roles"])]
    trusted = sql.Literal("{" + ",".join(quoted) + "}")
    return {
        "role_tenant": sql.SQL(ROLE_TENANT_BODY).format(tbl=tbl).as_string(None),
        "current_tenant": sql.SQL(CURRENT_TENANT_BODY).format(
            trusted=trusted, setting=sql.Literal(p["setting"]), role_tenant=role_tenant).as_string(None),
        "set_tenant": sql.SQL(SET_TENANT_BODY).format(tbl=tbl, setting=sql.Literal(p["setting"])).as_string(None),
    }


def function_sql(schema, name, body):
    ident = sql.Identifier(schema, name)
    if name == "role_tenant":
        return sql.SQL("CREATE OR REPLACE FUNCTION {}(p_role name) RETURNS text LANGUAGE sql STABLE "
                       "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {}").format(ident, sql.Literal(body))
    if name == "current_tenant":
        return sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS text LANGUAGE sql STABLE "
                       "SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS {}").format(ident, sql.Literal(body))
    return sql.SQL("CREATE OR REPLACE FUNCTION {}(p_tenant text) RETURNS text LANGUAGE plpgsql VOLATILE "
                   "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {}").format(ident, sql.Literal(body))


FUNC_SIGNATURES = {"role_tenant": "name", "current_tenant": "", "set_tenant": "text"}


def deparse_policy(s, schema, table, expr):
    """PostgreSQL's own text for the policy expression on this table: a probe policy created in a savepoint,
    read back from pg_policies and rolled back (not a change, so not recorded)."""
    with s.conn.cursor() as cur:
        cur.execute("SAVEPOINT hc_tenant_probe")
        cur.execute(sql.SQL("CREATE POLICY hc_tenant_probe ON {} USING ({})").format(
            sql.Identifier(schema, table), expr))
        cur.execute("SELECT qual FROM pg_policies WHERE schemaname = %s AND tablename = %s "
                    "AND policyname = 'hc_tenant_probe'", (schema, table))
        qual = cur.fetchone()[0]
        cur.execute("ROLLBACK TO SAVEPOINT hc_tenant_probe")
    return qual


def policy_expr(p):
    return sql.SQL("{col} = {fn}()").format(
        col=sql.Identifier(p["tenant_column"]), fn=sql.Identifier(p["registry_schema"], "current_tenant"))


def plan_tenants(p, current):
    """current: {id: {name, status, role}}. Returns a list of (action, tenant dict)."""
    actions = []
    for t in p["tenants"]:
        cur = current.get(t["id"])
        if t["state"] == "present":
            if cur is None:
                actions.append(("create", t))
            elif cur["status"] != "active":
                actions.append(("reactivate", t))
            elif t.get("name") is not None and cur["name"] != t["name"]:
                actions.append(("rename", t))
        else:
            if cur is None:
                actions.append(("create_retired", t))
            elif cur["status"] != "retired":
                actions.append(("retire", t))
    return actions


def read_state(s, p):
    schema = p["registry_schema"]
    texts = function_texts(p)
    st = {"schema": bool(s.query("SELECT 1 AS x FROM pg_namespace WHERE nspname = %s", (schema,))),
          "registry": False, "functions": {}, "tenants": {}, "tables": {}, "set_tenant_grantees": [],
          "memberships": {}}
    st["registry"] = bool(s.query(
        "SELECT 1 AS x FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = 'tenants' AND c.relkind = 'r'", (schema,)))
    for name, body in texts.items():
        rows = s.query(
            "SELECT p.prosrc, p.proconfig, p.proacl::text[] AS acl FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s "
            "AND pg_catalog.oidvectortypes(p.proargtypes) = %s", (schema, name, FUNC_SIGNATURES[name]))
        st["functions"][name] = bool(rows) and rows[0]["prosrc"] == body
    rows = s.query(
        "SELECT coalesce(r.rolname, 'public') AS grantee FROM pg_proc p JOIN pg_namespace n "
        "ON n.oid = p.pronamespace, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a "
        "LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE n.nspname = %s AND p.proname = 'set_tenant' "
        "AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'", (schema,))
    st["set_tenant_grantees"] = sorted({r["grantee"] for r in rows})
    if st["registry"]:
        for r in s.query(sql.SQL("SELECT tenant_id, name, role_name::text AS role_name, status FROM {}").format(
                sql.Identifier(schema, "tenants"))):
            st["tenants"][r["tenant_id"]] = {"name": r["name"], "status": r["status"], "role": r["role_name"]}
    for t in p["tables"]:
        sch, rel = split_qualified(t)
        rows = s.query(
            "SELECT c.relrowsecurity AS en, c.relforcerowsecurity AS fo FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s", (sch, rel))
        pol = s.query("SELECT cmd, permissive, roles::text[] AS roles, qual, with_check FROM pg_policies "
                      "WHERE schemaname = %s AND tablename = %s AND policyname = %s", (sch, rel, p["policy_name"]))
        st["tables"][f"{sch}.{rel}"] = {
            "enabled": bool(rows and rows[0]["en"]), "forced": bool(rows and rows[0]["fo"]),
            "policy": pol[0] if pol else None}
    roles = [p["tenant_role_prefix"] + t["id"] for t in p["tenants"]]
    if roles:
        for r in s.query(
                "SELECT m.rolname AS member, g.rolname AS grp FROM pg_auth_members am "
                "JOIN pg_roles m ON m.oid = am.member JOIN pg_roles g ON g.oid = am.roleid "
                "WHERE m.rolname = ANY(%s)", (roles,)):
            st["memberships"].setdefault(r["member"], []).append(r["grp"])
    return st


def summary(st):
    return {"infrastructure": bool(st["schema"] and st["registry"] and all(st["functions"].values())),
            "tenants": st["tenants"],
            "tables": {k: bool(v["enabled"] and v["forced"] and v["policy"]) for k, v in st["tables"].items()},
            "trusted_roles": st["set_tenant_grantees"]}


def role_ident(name):
    return sql.Identifier(name)


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        registry_schema={"type": "str", "default": "tenancy"},
        setting={"type": "str", "default": "app.tenant_id"},
        trusted_roles={"type": "list", "elements": "str", "default": []},
        tables={"type": "list", "elements": "str", "default": []},
        tenant_column={"type": "str", "default": "tenant_id"},
        policy_name={"type": "str", "default": "hc_tenant_isolation"},
        tenant_role_prefix={"type": "str", "default": "tenant_"},
        tenant_role_member_of={"type": "list", "elements": "str", "default": []},
        tenants={"type": "list", "elements": "dict", "default": [], "options": {
            "id": {"type": "str", "required": True},
            "name": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "retired"], "default": "present"},
        }},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    err = validate(p)
    if err:
        module.fail_json(msg=err)
    ensure_psycopg(module)
    schema = p["registry_schema"]
    reg = sql.Identifier(schema, "tenants")

    s = PgSession(module, autocommit=False)
    try:
        # Preflight: every named role and table exists, every table has the tenant column.
        named = sorted(set(p["trusted_roles"]) | set(p["tenant_role_member_of"]))
        have = {r["rolname"] for r in s.query("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (named,))}
        missing = [r for r in named if r not in have]
        if missing:
            raise PreflightError("role(s) do not exist: {}".format(", ".join(missing)))
        for g in p["tenant_role_member_of"]:
            for tr in p["trusted_roles"]:
                if s.query("SELECT pg_has_role(%s, %s, 'MEMBER') AS m", (g, tr))[0]["m"]:
                    raise PreflightError(f"tenant_role_member_of role {g} is a member of trusted role {tr}")
        for t in p["tenants"]:
            role = p["tenant_role_prefix"] + t["id"]
            for tr in p["trusted_roles"]:
                if s.query("SELECT pg_has_role(r.oid, %s, 'MEMBER') AS m FROM pg_roles r WHERE r.rolname = %s",
                           (tr, role)) and s.query("SELECT pg_has_role(%s, %s, 'MEMBER') AS m", (role, tr))[0]["m"]:
                    raise PreflightError(f"tenant role {role} is a member of trusted role {tr}: it could choose any "
                                         "tenant; revoke that membership first")
        for t in p["tables"]:
            sch, rel = split_qualified(t)
            if not s.query("SELECT 1 AS x FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                           "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
                           "AND a.attname = %s AND NOT a.attisdropped AND c.relkind IN ('r', 'p')",
                           (sch, rel, p["tenant_column"])):
                raise PreflightError("table {}.{} does not exist or has no column {}".format(sch, rel, p["tenant_column"]))

        st = read_state(s, p)
        before = summary(st)
        texts = function_texts(p)

        if not st["schema"]:
            s.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            s.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(sql.Identifier(schema)))
        if not st["registry"]:
            s.execute(sql.SQL(REGISTRY_DDL).format(tbl=reg))
            s.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(reg))
        for name in ("role_tenant", "current_tenant", "set_tenant"):
            if not st["functions"].get(name):
                s.execute(function_sql(schema, name, texts[name]))
                if name == "set_tenant":
                    s.execute(sql.SQL("REVOKE ALL ON FUNCTION {}(text) FROM PUBLIC").format(
                        sql.Identifier(schema, name)))
        grantees = set(st["set_tenant_grantees"]) if st["functions"].get("set_tenant") else set()
        for r in sorted(grantees - set(p["trusted_roles"])):
            s.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {}(text) FROM {}").format(
                sql.Identifier(schema, "set_tenant"), sql.SQL("PUBLIC") if r == "public" else role_ident(r)))
        for r in sorted(set(p["trusted_roles"]) - grantees):
            s.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}(text) TO {}").format(
                sql.Identifier(schema, "set_tenant"), role_ident(r)))

        existing_roles = {r["rolname"] for r in s.query(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
            ([p["tenant_role_prefix"] + t["id"] for t in p["tenants"]],))}
        for action, t in plan_tenants(p, st["tenants"]):
            role = p["tenant_role_prefix"] + t["id"]
            if action in ("create", "create_retired"):
                if role not in existing_roles:
                    s.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role_ident(role)))
                s.execute(sql.SQL("INSERT INTO {} (tenant_id, name, role_name, status, retired_at) "
                                  "VALUES ({}, {}, {}, {}, {})").format(
                    reg, sql.Literal(t["id"]), sql.Literal(t.get("name")), sql.Literal(role),
                    sql.Literal("active" if action == "create" else "retired"),
                    sql.SQL("NULL" if action == "create" else "now()")))
            elif action == "reactivate":
                s.execute(sql.SQL("UPDATE {} SET status = 'active', retired_at = NULL{} WHERE tenant_id = {}").format(
                    reg, sql.SQL(", name = {}").format(sql.Literal(t["name"])) if t.get("name") is not None
                    else sql.SQL(""), sql.Literal(t["id"])))
            elif action == "rename":
                s.execute(sql.SQL("UPDATE {} SET name = {} WHERE tenant_id = {}").format(
                    reg, sql.Literal(t["name"]), sql.Literal(t["id"])))
            elif action == "retire":
                s.execute(sql.SQL("UPDATE {} SET status = 'retired', retired_at = now() WHERE tenant_id = {}").format(
                    reg, sql.Literal(t["id"])))
        # Memberships of tenant roles: active -> member of every group; retired -> of none of them.
        for t in p["tenants"]:
            role = p["tenant_role_prefix"] + t["id"]
            groups = set(st["memberships"].get(role, []))
            if t["state"] == "present":
                for g in p["tenant_role_member_of"]:
                    if g not in groups:
                        s.execute(sql.SQL("GRANT {} TO {}").format(role_ident(g), role_ident(role)))
            else:
                for g in sorted(groups & set(p["tenant_role_member_of"])):
                    s.execute(sql.SQL("REVOKE {} FROM {}").format(role_ident(g), role_ident(role)))

        # Policies on tenant-scoped tables. Compare in PostgreSQL's deparsed form.
        expr = policy_expr(p)
        for t in p["tables"]:
            sch, rel = split_qualified(t)
            want_qual = deparse_policy(s, sch, rel, expr)
            key = f"{sch}.{rel}"
            cur = st["tables"][key]
            tid = sql.Identifier(sch, rel)
            if not cur["enabled"]:
                s.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(tid))
            if not cur["forced"]:
                s.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(tid))
            pol = cur["policy"]
            ok = (pol is not None and pol["cmd"] == "ALL" and pol["permissive"] == "PERMISSIVE"
                  and pol["roles"] == ["public"] and pol["qual"] == want_qual and pol["with_check"] == want_qual)
            if not ok:
                if pol is not None:
                    s.execute(sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(p["policy_name"]), tid))
                s.execute(sql.SQL("CREATE POLICY {} ON {} AS PERMISSIVE FOR ALL TO PUBLIC USING ({}) "
                                  "WITH CHECK ({})").format(sql.Identifier(p["policy_name"]), tid, expr, expr))

        changed = bool(s.queries)
        after = summary(read_state(s, p))
        s.finish(changed)
    except PreflightError as e:
        s.fail(str(e))
    except psycopg.Error as e:  # a statement outside PgSession.query/execute failed
        s.fail(f"pg_tenant failed: {e}")
    s.close()
    result = {"changed": changed, "queries": list(s.queries), "state": after}
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


class PreflightError(Exception):
    pass


if __name__ == "__main__":
    main()
