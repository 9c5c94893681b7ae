# Copyright: HingeCraft
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Row-level security on a table: ENABLE / FORCE, and one policy, kept as declared."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_rls_policy
short_description: Enable and force row-level security on a table and keep one policy as declared
version_added: "0.1.0"
description:
  - Reads C(pg_class.relrowsecurity), C(pg_class.relforcerowsecurity) and C(pg_policies), compares them with the
    desired state and runs the smallest set of statements that makes them match.
  - A changed expression or role list is corrected with C(ALTER POLICY). A changed command or permissive/restrictive
    type (which C(ALTER POLICY) cannot change), or a clause that must disappear, is corrected by C(DROP POLICY) and
    C(CREATE POLICY) in one transaction, so no session ever sees the table without the policy.
  - The desired expressions are compared in PostgreSQL's own deparsed form - the module creates a probe policy
    inside a savepoint, reads it back from C(pg_policies) and rolls the savepoint back - so a rerun with the same
    text reports C(changed=false) whatever spacing or casts the text uses.
  - Every role named in O(roles) must exist; otherwise the module fails before it changes anything.
  - Identifiers (table, policy, roles) are always quoted. O(using) and O(with_check) are SQL expressions and are
    inserted as SQL on purpose; take them from the playbook author, never from end users.
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
  table:
    description: Table, optionally schema-qualified (V(schema.table)); without a schema V(public) is assumed.
    type: str
    required: true
  enable:
    description:
      - Whether row-level security is enabled on the table (C(ALTER TABLE ... ENABLE/DISABLE ROW LEVEL SECURITY)).
      - Leave unset to keep the current setting.
    type: bool
  force:
    description:
      - Whether row-level security also applies to the table owner (C(FORCE ROW LEVEL SECURITY)).
      - Leave unset to keep the current setting. Superusers and roles with BYPASSRLS are never subject to RLS.
    type: bool
  name:
    description: Policy name. Without it only O(enable) and O(force) are managed.
    type: str
  state:
    description: Whether the policy O(name) exists.
    type: str
    choices: [present, absent]
    default: present
  command:
    description: Command the policy applies to.
    type: str
    choices: [ALL, SELECT, INSERT, UPDATE, DELETE]
    default: ALL
  permissive:
    description: V(true) for a permissive policy (combined with OR), V(false) for a restrictive one (combined with AND).
    type: bool
    default: true
  roles:
    description: Roles the policy applies to. V(public), V(current_user), V(current_role) and V(session_user) are keywords.
    type: list
    elements: str
    default: [public]
  using:
    description: The C(USING) expression (rows visible / updatable). Not allowed for O(command=INSERT).
    type: str
  with_check:
    description: The C(WITH CHECK) expression (rows that may be written). Not allowed for O(command=SELECT) or V(DELETE).
    type: str
seealso:
  - name: CREATE POLICY
    description: PostgreSQL manual page for CREATE POLICY.
    link: https://www.postgresql.org/docs/17/sql-createpolicy.html
  - name: Row security policies
    description: PostgreSQL manual, row security policies.
    link: https://www.postgresql.org/docs/17/ddl-rowsecurity.html
  - module: hingecraft.enterprise_db.pg_tenant
  - module: community.postgresql.postgresql_user
"""

EXAMPLES = r"""
- name: Members see only their own row, forced also for the owner
  hingecraft.enterprise_db.pg_rls_policy:
    db: hingecraft
    table: public.members
    enable: true
    force: true
    name: members_self
    command: SELECT
    roles: [app_ro]
    using: "member_id = current_setting('app.member_id', true)::bigint"

- name: A restrictive policy that blocks writes outside business hours
  hingecraft.enterprise_db.pg_rls_policy:
    db: hingecraft
    table: public.donations
    name: donations_hours
    command: INSERT
    permissive: false
    roles: [app_rw]
    with_check: "extract(hour from now()) BETWEEN 6 AND 22"

- name: Remove a policy
  hingecraft.enterprise_db.pg_rls_policy:
    db: hingecraft
    table: public.members
    name: members_self
    state: absent
"""

RETURN = r"""
changed:
  description: Whether any statement was needed.
  returned: always
  type: bool
queries:
  description: Statements executed (or, in check mode, executed and rolled back), in order.
  returned: always
  type: list
  elements: str
  sample: ['ALTER TABLE "public"."members" ENABLE ROW LEVEL SECURITY']
state:
  description: Final state of the table's RLS flags and of the policy (C(policy) is null when it does not exist).
  returned: always
  type: dict
  sample:
    table: public.members
    enabled: true
    forced: true
    policy: {name: members_self, command: SELECT, permissive: true, roles: [app_ro], using: "(member_id = 1)", with_check: null}
diff:
  description: Before and after states, in diff mode.
  returned: when diff mode is on
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import (
    PgSession,
    ensure_psycopg,
    postgres_common_argument_spec,
    psycopg,
    split_qualified,
    sql,
)

ROLE_KEYWORDS = {"public": "PUBLIC", "current_user": "CURRENT_USER", "current_role": "CURRENT_ROLE",
                 "session_user": "SESSION_USER"}
PROBE_NAME = "hc_rls_probe"


def validate_params(p):
    """Return an error message for inconsistent parameters, or None."""
    if p.get("state") == "present" and p.get("name"):
        cmd = p["command"]
        if cmd == "INSERT" and p.get("using"):
            return "using is not allowed for command=INSERT (only with_check)"
        if cmd in ("SELECT", "DELETE") and p.get("with_check"):
            return f"with_check is not allowed for command={cmd} (only using)"
        if not p.get("using") and not p.get("with_check"):
            return "a present policy needs using or with_check"
        if not p.get("roles"):
            return "roles must name at least one role (or public)"
    if p.get("name") is None and p.get("enable") is None and p.get("force") is None:
        return "nothing to manage: give name, enable or force"
    return None


def normalize_roles(roles):
    """Roles as pg_policies reports them: keywords lower-case, sorted, unique."""
    out = set()
    for r in roles or []:
        out.add(r.lower() if r.lower() in ROLE_KEYWORDS else r)
    return sorted(out)


def missing_roles(wanted, existing):
    return [r for r in wanted if r.lower() not in ROLE_KEYWORDS and r not in existing]


def plan_policy(current, desired):
    """Decide how to turn the current policy into the desired one.

    current/desired: dicts with command, permissive, roles (normalized), using, with_check (deparsed) or None.
    Returns one of: None (nothing), 'create', 'drop', 'recreate', or 'alter' with the list of parts to alter.
    """
    if desired is None:
        return ("drop", []) if current is not None else (None, [])
    if current is None:
        return ("create", [])
    if current["command"] != desired["command"] or current["permissive"] != desired["permissive"]:
        return ("recreate", [])
    # ALTER POLICY can set, but not remove, a USING or WITH CHECK clause.
    for clause in ("using", "with_check"):
        if current[clause] is not None and desired[clause] is None:
            return ("recreate", [])
    parts = [k for k in ("roles", "using", "with_check") if current[k] != desired[k]]
    return ("alter", parts) if parts else (None, [])


def role_list_sql(roles):
    items = []
    for r in roles:
        if r.lower() in ROLE_KEYWORDS:
            items.append(sql.SQL(ROLE_KEYWORDS[r.lower()]))
        else:
            items.append(sql.Identifier(r))
    return sql.SQL(", ").join(items)


def create_policy_sql(name, table_ident, d, raw_using, raw_check):
    parts = [sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
        sql.Identifier(name), table_ident,
        sql.SQL("PERMISSIVE" if d["permissive"] else "RESTRICTIVE"),
        sql.SQL(d["command"]), role_list_sql(d["roles"]))]
    if raw_using:
        parts.append(sql.SQL("USING ({})").format(sql.SQL(raw_using)))
    if raw_check:
        parts.append(sql.SQL("WITH CHECK ({})").format(sql.SQL(raw_check)))
    return sql.SQL(" ").join(parts)


def alter_policy_sql(name, table_ident, d, parts, raw_using, raw_check):
    out = [sql.SQL("ALTER POLICY {} ON {}").format(sql.Identifier(name), table_ident)]
    if "roles" in parts:
        out.append(sql.SQL("TO {}").format(role_list_sql(d["roles"])))
    if "using" in parts:
        out.append(sql.SQL("USING ({})").format(sql.SQL(raw_using)))
    if "with_check" in parts:
        out.append(sql.SQL("WITH CHECK ({})").format(sql.SQL(raw_check)))
    return sql.SQL(" ").join(out)


def read_table(s, schema, table):
    rows = s.query(
        "SELECT c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced, c.relkind::text AS relkind "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, table))
    return rows[0] if rows else None


def read_policy(s, schema, table, name):
    rows = s.query(
        "SELECT policyname, permissive, roles::text[] AS roles, cmd, qual, with_check FROM pg_policies "
        "WHERE schemaname = %s AND tablename = %s AND policyname = %s", (schema, table, name))
    if not rows:
        return None
    r = rows[0]
    return {"name": r["policyname"], "command": r["cmd"], "permissive": r["permissive"] == "PERMISSIVE",
            "roles": normalize_roles(r["roles"]), "using": r["qual"], "with_check": r["with_check"]}


def deparse(s, schema, table, table_ident, d, raw_using, raw_check):
    """Let PostgreSQL deparse the desired expressions: probe policy in a savepoint, read back, roll back.

    Runs on the session's connection directly: the probe is not a change and is never recorded. Raises
    ValueError with PostgreSQL's message when an expression is invalid.
    """
    probe_sql = create_policy_sql(PROBE_NAME, table_ident, d, raw_using, raw_check)
    with s.conn.cursor() as cur:
        cur.execute("SAVEPOINT hc_rls_probe")
        try:
            cur.execute(probe_sql)
            cur.execute("SELECT qual, with_check FROM pg_policies WHERE schemaname = %s AND tablename = %s "
                        "AND policyname = %s", (schema, table, PROBE_NAME))
            row = cur.fetchone()
        except psycopg.Error as e:  # the expression is invalid
            cur.execute("ROLLBACK TO SAVEPOINT hc_rls_probe")
            raise ValueError(str(e).strip().splitlines()[0])
        cur.execute("ROLLBACK TO SAVEPOINT hc_rls_probe")
    return row[0], row[1]


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        table={"type": "str", "required": True},
        enable={"type": "bool"},
        force={"type": "bool"},
        name={"type": "str"},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        command={"type": "str", "choices": ["ALL", "SELECT", "INSERT", "UPDATE", "DELETE"], "default": "ALL"},
        permissive={"type": "bool", "default": True},
        roles={"type": "list", "elements": "str", "default": ["public"]},
        using={"type": "str"},
        with_check={"type": "str"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    err = validate_params(p)
    if err:
        module.fail_json(msg=err)
    ensure_psycopg(module)

    try:
        schema, table = split_qualified(p["table"])
    except ValueError as e:
        module.fail_json(msg=f"table: {e}")
    table_ident = sql.Identifier(schema, table)
    s = PgSession(module, autocommit=False)
    try:
        tinfo = read_table(s, schema, table)
        if tinfo is None:
            s.fail(f"table {schema}.{table} does not exist")
        if tinfo["relkind"] not in ("r", "p"):
            s.fail("{}.{} is not a table (relkind {})".format(schema, table, tinfo["relkind"]))

        desired = None
        current = read_policy(s, schema, table, p["name"]) if p["name"] else None
        if p["name"] and p["state"] == "present":
            roles = normalize_roles(p["roles"])
            existing = {r["rolname"] for r in s.query(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(roles),))}
            missing = missing_roles(roles, existing)
            if missing:
                s.fail("policy {} names role(s) that do not exist: {}".format(p["name"], ", ".join(missing)))
            desired = {"name": p["name"], "command": p["command"], "permissive": p["permissive"], "roles": roles}
            try:
                desired["using"], desired["with_check"] = deparse(
                    s, schema, table, table_ident, desired, p["using"], p["with_check"])
            except ValueError as e:  # the expression itself is invalid
                s.fail("policy {}: PostgreSQL rejects the expression: {}".format(p["name"], e))

        before = {"table": f"{schema}.{table}", "enabled": tinfo["enabled"], "forced": tinfo["forced"],
                  "policy": current}
        if p["enable"] is not None and p["enable"] != tinfo["enabled"]:
            s.execute(sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY").format(
                table_ident, sql.SQL("ENABLE" if p["enable"] else "DISABLE")))
        if p["force"] is not None and p["force"] != tinfo["forced"]:
            s.execute(sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY").format(
                table_ident, sql.SQL("FORCE" if p["force"] else "NO FORCE")))
        if p["name"]:
            action, parts = plan_policy(current, desired)
            if action in ("drop", "recreate"):
                s.execute(sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(p["name"]), table_ident))
            if action in ("create", "recreate"):
                s.execute(create_policy_sql(p["name"], table_ident, desired, p["using"], p["with_check"]))
            if action == "alter":
                s.execute(alter_policy_sql(p["name"], table_ident, desired, parts, p["using"], p["with_check"]))
        changed = bool(s.queries)
        after_t = read_table(s, schema, table)
        after = {"table": f"{schema}.{table}", "enabled": after_t["enabled"], "forced": after_t["forced"],
                 "policy": read_policy(s, schema, table, p["name"]) if p["name"] else None}
        s.finish(changed)
    except psycopg.Error as e:  # a statement outside PgSession.query/execute failed
        s.fail(f"pg_rls_policy failed: {e}")
    s.close()
    result = {"changed": changed, "queries": list(s.queries), "state": after}
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
