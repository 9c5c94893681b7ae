# Copyright: HingeCraft
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Trigger-based, append-only audit trail for tables."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_audit_trail
short_description: Attach or detach a trigger-based audit trail that writes to an append-only audit table
version_added: "0.1.0"
description:
  - Keeps an audit schema with an append-only audit table, a C(SECURITY DEFINER) audit function with a pinned
    C(search_path), and guard triggers; attaches (or detaches) a row trigger named O(trigger_name) on each table
    in O(tables).
  - 'Each audit row holds: when (C(clock_timestamp())), the database user (C(session_user)), the application
    user (the session setting O(app_user_setting), empty when unset), the transaction id, the schema and table,
    the operation, the old and new rows as jsonb, and the changed columns (for C(UPDATE): the columns whose value
    changed; for C(INSERT) and C(DELETE): every column).'
  - 'The audit table refuses C(UPDATE), C(DELETE) and C(TRUNCATE): a guard trigger raises an error, and
    C(INSERT), C(UPDATE), C(DELETE), C(TRUNCATE) are revoked from every role but the owner, so rows only arrive
    through the audit function. Honest limits: the table owner and superusers can still disable the guard
    triggers or drop the table; pair this with pgaudit and off-host log shipping where that matters.'
  - Reads the catalogs (C(pg_namespace), C(pg_class), C(pg_proc), C(pg_trigger), C(aclexplode)) and runs only
    the statements that are needed.
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
  tables:
    description:
      - Tables to attach the audit trigger to (O(state=present)) or detach it from (O(state=absent)),
        optionally schema-qualified; without a schema V(public) is assumed. Partitioned tables are supported
        (the trigger is cloned to every partition).
    type: list
    elements: str
    default: []
  state:
    description: Whether the audit trigger is attached to O(tables).
    type: str
    choices: [present, absent]
    default: present
  audit_schema:
    description: Schema that holds the audit table and functions.
    type: str
    default: audit
  audit_table:
    description: Name of the append-only audit table in O(audit_schema).
    type: str
    default: log
  trigger_name:
    description: Name of the audit trigger on each audited table.
    type: str
    default: hc_audit
  app_user_setting:
    description: Session setting (C(SET app.username = ''alice'')) that carries the application user.
    type: str
    default: app.username
  readers:
    description: Roles granted C(SELECT) on the audit table (for example an auditor role). Roles must exist.
    type: list
    elements: str
    default: []
seealso:
  - name: CREATE TRIGGER
    description: PostgreSQL manual page for CREATE TRIGGER.
    link: https://www.postgresql.org/docs/17/sql-createtrigger.html
  - name: Writing SECURITY DEFINER functions safely
    description: Why the audit function pins its search_path.
    link: https://www.postgresql.org/docs/17/sql-createfunction.html#SQL-CREATEFUNCTION-SECURITY
  - module: hingecraft.enterprise_db.pg_rls_policy
"""

EXAMPLES = r"""
- name: Audit members and donations; the auditor role may read the trail
  hingecraft.enterprise_db.pg_audit_trail:
    db: hingecraft
    tables: [public.members, public.donations]
    readers: [auditor]

- name: Stop auditing a table (the trail itself stays)
  hingecraft.enterprise_db.pg_audit_trail:
    db: hingecraft
    tables: [public.messages]
    state: absent
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
    audit_table: audit.log
    infrastructure: true
    audited_tables: [public.donations, public.members]
    readers: [auditor]
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

FUNC = "log_change"
GUARD = "refuse_change"
GUARD_ROW_TRIGGER = "hc_audit_append_only"
GUARD_TRUNCATE_TRIGGER = "hc_audit_no_truncate"
FORBIDDEN_PRIVS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")

TABLE_DDL = """CREATE TABLE {tbl} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    db_user text NOT NULL DEFAULT session_user,
    app_user text,
    txid bigint NOT NULL DEFAULT txid_current(),
    table_schema text NOT NULL,
    table_name text NOT NULL,
    operation text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    old_row jsonb,
    new_row jsonb,
    changed_columns text[]
)"""

FUNC_BODY = """
DECLARE
    o jsonb;
    n jsonb;
    cols text[];
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN o := to_jsonb(OLD); END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN n := to_jsonb(NEW); END IF;
    IF TG_OP = 'UPDATE' THEN
        SELECT coalesce(array_agg(e.key ORDER BY e.key), '{{}}') INTO cols
          FROM jsonb_each(n) AS e WHERE (o -> e.key) IS DISTINCT FROM e.value;
    ELSE
        SELECT array_agg(k ORDER BY k) INTO cols FROM jsonb_object_keys(coalesce(n, o)) AS k;
    END IF;
    INSERT INTO {tbl} (app_user, table_schema, table_name, operation, old_row, new_row, changed_columns)
    VALUES (nullif(current_setting({setting}, true), ''), TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, o, n, cols);
    RETURN NULL;
END
"""

GUARD_BODY = """
BEGIN
    RAISE EXCEPTION 'audit trail %.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
"""


def func_body(audit_schema, audit_table, setting):
    """The audit function's body as text, with the audit table and setting name safely quoted."""
    return sql.SQL(FUNC_BODY).format(
        tbl=sql.Identifier(audit_schema, audit_table), setting=sql.Literal(setting)).as_string(None)


def function_sql(audit_schema, name, body):
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
        "SET search_path = pg_catalog, pg_temp AS {body}").format(
            fn=sql.Identifier(audit_schema, name), body=sql.Literal(body))


def plan_tables(state, wanted, attached):
    """wanted: list of (schema, table); attached: set of (schema, table) with a correct trigger.
    Returns (to_attach, to_detach)."""
    if state == "present":
        return [t for t in wanted if t not in attached], []
    return [], [t for t in wanted if t in attached]


def read_state(s, p):
    a_schema, a_table = p["audit_schema"], p["audit_table"]
    st = {"schema": False, "table": False, "function_ok": False, "guard_ok": False,
          "row_guard": False, "truncate_guard": False, "bad_grants": [], "readers": [], "func_oid": None}
    st["schema"] = bool(s.query("SELECT 1 AS x FROM pg_namespace WHERE nspname = %s", (a_schema,)))
    rel = s.query("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r'", (a_schema, a_table))
    st["table"] = bool(rel)
    for fname, body, key in ((FUNC, func_body(a_schema, a_table, p["app_user_setting"]), "function_ok"),
                             (GUARD, GUARD_BODY, "guard_ok")):
        rows = s.query(
            "SELECT p.oid, p.prosrc, p.prosecdef, p.proconfig FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s AND p.pronargs = 0",
            (a_schema, fname))
        if rows:
            r = rows[0]
            st[key] = (r["prosrc"] == body and r["prosecdef"]
                       and (r["proconfig"] or []) == ["search_path=pg_catalog, pg_temp"])
            if fname == FUNC:
                st["func_oid"] = r["oid"]
    if rel:
        oid = rel[0]["oid"]
        trig = {r["tgname"]: r for r in s.query(
            "SELECT t.tgname, t.tgtype, t.tgenabled::text AS tgenabled, p.proname FROM pg_trigger t "
            "JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = %s AND NOT t.tgisinternal", (oid,))}
        st["row_guard"] = GUARD_ROW_TRIGGER in trig and trig[GUARD_ROW_TRIGGER]["tgenabled"] in ("O", "A")
        st["truncate_guard"] = (GUARD_TRUNCATE_TRIGGER in trig
                                and trig[GUARD_TRUNCATE_TRIGGER]["tgenabled"] in ("O", "A"))
        acl = s.query(
            "SELECT coalesce(r.rolname, 'public') AS grantee, a.privilege_type FROM pg_class c, "
            "aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE c.oid = %s AND a.grantee <> c.relowner", (oid,))
        st["bad_grants"] = sorted({(r["grantee"], r["privilege_type"]) for r in acl
                                   if r["privilege_type"] in FORBIDDEN_PRIVS})
        st["readers"] = sorted({r["grantee"] for r in acl if r["privilege_type"] == "SELECT"})
    return st


def read_attached(s, p, tables):
    """Which of the tables carry the audit trigger calling our function (row-level, AFTER I/U/D)."""
    if not tables:
        return set()
    rows = s.query(
        "SELECT n.nspname, c.relname, t.tgtype, pn.nspname AS fschema, p.proname FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace "
        "WHERE t.tgname = %s AND NOT t.tgisinternal AND t.tgparentid = 0 "
        "AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        (p["trigger_name"], [t[0] for t in tables], [t[1] for t in tables]))
    out = set()
    for r in rows:
        # tgtype bits: 1 ROW, 2 BEFORE, 4 INSERT, 8 DELETE, 16 UPDATE
        ok = (r["tgtype"] & 1 and not r["tgtype"] & 2 and (r["tgtype"] & 28) == 28
              and r["fschema"] == p["audit_schema"] and r["proname"] == FUNC)
        out.add(((r["nspname"], r["relname"]), bool(ok)))
    return out


def summarize(st, p, attached_names):
    return {"audit_table": "{}.{}".format(p["audit_schema"], p["audit_table"]),
            "infrastructure": bool(st["schema"] and st["table"] and st["function_ok"] and st["guard_ok"]
                                   and st["row_guard"] and st["truncate_guard"] and not st["bad_grants"]),
            "audited_tables": sorted("{}.{}".format(*t) for t in attached_names),
            "readers": st["readers"]}


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        tables={"type": "list", "elements": "str", "default": []},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        audit_schema={"type": "str", "default": "audit"},
        audit_table={"type": "str", "default": "log"},
        trigger_name={"type": "str", "default": "hc_audit"},
        app_user_setting={"type": "str", "default": "app.username"},
        readers={"type": "list", "elements": "str", "default": []},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if "." not in p["app_user_setting"]:
        module.fail_json(msg="app_user_setting must be a custom setting name with a dot, like app.username")
    ensure_psycopg(module)
    a_schema, a_table = p["audit_schema"], p["audit_table"]
    wanted = [split_qualified(t) for t in p["tables"]]
    tbl = sql.Identifier(a_schema, a_table)

    s = PgSession(module, autocommit=False)
    try:
        # Validation before any change: tables exist, readers exist.
        missing = []
        for sch, rel in wanted:
            if not s.query("SELECT 1 AS x FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", (sch, rel)):
                missing.append(f"{sch}.{rel}")
        if missing and p["state"] == "present":
            s.fail("table(s) to audit do not exist: {}".format(", ".join(missing)))
        if (a_schema, a_table) in wanted:
            s.fail(f"the audit table {a_schema}.{a_table} cannot audit itself")
        if p["readers"]:
            rows = s.query("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (p["readers"],))
            have = {r["rolname"] for r in rows}
            absent_roles = [r for r in p["readers"] if r not in have]
            if absent_roles:
                s.fail("readers name role(s) that do not exist: {}".format(", ".join(absent_roles)))

        st = read_state(s, p)
        attached_info = read_attached(s, p, wanted)
        attached_ok = {t for t, ok in attached_info if ok}
        attached_any = {t for t, ok in attached_info}
        before = summarize(st, p, attached_any)

        if p["state"] == "present":
            if not st["schema"]:
                s.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(a_schema)))
            if not st["table"]:
                s.execute(sql.SQL(TABLE_DDL).format(tbl=tbl))
                s.execute(sql.SQL("CREATE INDEX ON {} (table_schema, table_name, logged_at)").format(tbl))
            if not st["guard_ok"]:
                s.execute(function_sql(a_schema, GUARD, GUARD_BODY))
            if not st["function_ok"]:
                s.execute(function_sql(a_schema, FUNC, func_body(a_schema, a_table, p["app_user_setting"])))
            if not st["row_guard"]:
                if st["table"]:
                    s.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                        sql.Identifier(GUARD_ROW_TRIGGER), tbl))
                s.execute(sql.SQL("CREATE TRIGGER {} BEFORE UPDATE OR DELETE ON {} FOR EACH ROW "
                                  "EXECUTE FUNCTION {}()").format(
                    sql.Identifier(GUARD_ROW_TRIGGER), tbl, sql.Identifier(a_schema, GUARD)))
            if not st["truncate_guard"]:
                if st["table"]:
                    s.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                        sql.Identifier(GUARD_TRUNCATE_TRIGGER), tbl))
                s.execute(sql.SQL("CREATE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT "
                                  "EXECUTE FUNCTION {}()").format(
                    sql.Identifier(GUARD_TRUNCATE_TRIGGER), tbl, sql.Identifier(a_schema, GUARD)))
            if not st["table"]:
                s.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(tbl))
                s.execute(sql.SQL("REVOKE ALL ON FUNCTION {}() FROM PUBLIC").format(sql.Identifier(a_schema, FUNC)))
            for grantee, priv in st["bad_grants"]:
                s.execute(sql.SQL("REVOKE {} ON {} FROM {}").format(
                    sql.SQL(priv), tbl, sql.SQL("PUBLIC") if grantee == "public" else sql.Identifier(grantee)))
            for r in p["readers"]:
                if r not in st["readers"]:
                    s.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                        sql.Identifier(a_schema), sql.Identifier(r)))
                    s.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(tbl, sql.Identifier(r)))

        to_attach, to_detach = plan_tables(p["state"], wanted, attached_ok)
        if p["state"] == "absent":
            to_detach = [t for t in wanted if t in attached_any]
        for sch, rel in to_detach + [t for t in to_attach if t in attached_any]:
            s.execute(sql.SQL("DROP TRIGGER {} ON {}").format(
                sql.Identifier(p["trigger_name"]), sql.Identifier(sch, rel)))
        for sch, rel in to_attach:
            s.execute(sql.SQL("CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW "
                              "EXECUTE FUNCTION {}()").format(
                sql.Identifier(p["trigger_name"]), sql.Identifier(sch, rel), sql.Identifier(a_schema, FUNC)))

        changed = bool(s.queries)
        st_after = read_state(s, p)
        after = summarize(st_after, p, {t for t, ok in read_attached(s, p, wanted)})
        s.finish(changed)
    except psycopg.Error as e:  # a statement outside PgSession.query/execute failed
        s.fail(f"pg_audit_trail failed: {e}")
    s.close()
    result = {"changed": changed, "queries": list(s.queries), "state": after}
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
