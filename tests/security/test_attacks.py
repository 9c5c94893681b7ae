"""The attack suite: every attempt must fail, and leave a trace in the server log where auditing applies.
Each test also runs the legitimate counterpart where one exists, so a failure cannot come from a broken setup."""
import json
import secrets as pysecrets
import time

import pytest
from conftest import dexec

KEY_SET = "SELECT set_config('hc_keys.k' || %s::text, %s, true), set_config('hc_keys.current', %s::text, true)"


# ---- transport and authentication ---------------------------------------------------------------------------------
def test_tls_login_with_the_platform_ca_works(pg):
    rows = pg.ok("app_rw_login", [("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",)])
    assert rows[0][0] == [True, rows[0][0][1]] and rows[0][0][1].startswith("TLSv1.")


def test_plaintext_login_is_refused_and_logged(pg, log):
    mark = log.mark()
    res = pg.run("app_rw_login", [("SELECT 1",)], sslmode="disable", cert=None)
    assert not res["ok"]
    assert "no encryption" in res["error"], res
    assert "no encryption" in log.wait_for(mark, "no encryption")


def test_client_certificate_from_another_ca_is_rejected(pg, log):
    mark = log.mark()
    res = pg.run("app_rw_login", [("SELECT 1",)], cert="/root/foreign-ca")
    assert not res["ok"]
    assert "certificate" in res["error"] or "alert" in res["error"] or "SSL" in res["error"], res
    text = log.wait_for(mark, "certificate")
    assert "could not accept SSL connection" in text and "certificate" in text


def test_client_refuses_a_server_certificate_from_another_ca(pg):
    res = pg.run("app_rw_login", [("SELECT 1",)], rootcert="/root/foreign-ca/ca.crt")
    assert not res["ok"]
    assert "certificate verify failed" in res["error"], res


def test_password_guessing_is_slowed_and_logged(pg, log):
    """At most 10 guesses: each fails, each takes at least the auth_delay, each is logged."""
    mark = log.mark()
    started = time.monotonic()
    for _unused in range(10):
        res = pg.run("app_rw_login", [("SELECT 1",)], password=pysecrets.token_urlsafe(12))
        assert not res["ok"] and "password authentication failed" in res["error"], res
        assert res["seconds"] >= 0.4, res
    assert time.monotonic() - started < 120
    text = log.wait_for(mark, "xx-never-xx", timeout=1)
    assert text.count('password authentication failed for user "app_rw_login"') >= 10


# ---- role model ---------------------------------------------------------------------------------------------------
def test_superuser_is_only_the_administration_account(pg):
    assert pg.sql("SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1") == [["postgres"]]


ROLE_LIMITS = {"app_rw_login": 100, "app_ro_login": 50, "bi_reader_login": 10, "etl": 5, "auditor_login": 3,
               "monitoring": 3}


def test_roles_have_connection_limits_and_timeouts(pg):
    rows = {r[0]: r[1:] for r in pg.sql(
        "SELECT rolname, rolconnlimit, rolconfig FROM pg_roles WHERE rolname = ANY(%s)", (sorted(ROLE_LIMITS),))}
    assert set(rows) == set(ROLE_LIMITS), f"roles missing: {sorted(set(ROLE_LIMITS) - set(rows))}"
    assert {name: limit for name, (limit, _unused) in rows.items()} == ROLE_LIMITS
    assert "statement_timeout=30s" in rows["app_rw_login"][1]
    assert "default_transaction_read_only=on" in rows["app_ro_login"][1]


def test_statement_timeout_cancels_a_long_statement(pg):
    """monitoring has statement_timeout=10s: a 12 s sleep is cancelled with 57014; a 1 s sleep (control) runs."""
    assert pg.ok("monitoring", [("SELECT current_setting('statement_timeout') FROM pg_sleep(1)",)],
                 dbname="postgres") == [[["10s"]]]
    res = pg.run("monitoring", [("SELECT pg_sleep(12)",)], dbname="postgres", timeout=60)
    assert not res["ok"] and res["sqlstate"] == "57014", res
    assert "canceling statement due to statement timeout" in res["error"], res
    assert 9.5 <= res["seconds"] < 12, res


HOLD_SESSIONS = r"""
import json, sys, psycopg
req = json.load(sys.stdin)
conns, out = [], []
try:
    for _i in range(req["n"]):
        try:
            conns.append(psycopg.connect(**req["conn"]))
            out.append({"ok": True})
        except psycopg.Error as exc:
            out.append({"ok": False, "sqlstate": exc.sqlstate, "error": str(exc)})
finally:
    for c in conns:
        c.close()
print(json.dumps(out))
"""


def test_connection_limit_refuses_one_session_too_many(pg):
    """monitoring has CONNECTION LIMIT 3: three sessions open at once, the fourth is refused (53300)."""
    conn = {"user": "monitoring", "dbname": "postgres", "password": pg.password("monitoring"), "host": pg.ip,
            "port": 5432, "sslmode": "verify-full", "sslrootcert": "/etc/hingecraft/pki/client/ca.crt",
            "sslcert": "/etc/hingecraft/pki/client/client.crt", "sslkey": "/etc/hingecraft/pki/client/client.key",
            "connect_timeout": 10}
    res = dexec("python3", "-c", HOLD_SESSIONS, stdin=json.dumps({"n": ROLE_LIMITS["monitoring"] + 1, "conn": conn}))
    out = json.loads(res.stdout)
    assert [o["ok"] for o in out] == [True, True, True, False], out
    # a refused connection carries no SQLSTATE in psycopg (no result to read it from): the server's message for
    # 53300 (too_many_connections, the role's limit) is what identifies the refusal
    assert 'FATAL:  too many connections for role "monitoring"' in out[-1]["error"], out


def test_public_has_no_rights_on_any_database_and_schema_public(pg):
    rows = pg.sql("SELECT datname, has_database_privilege('public', datname, 'CONNECT'), "
                  "has_database_privilege('public', datname, 'TEMPORARY') FROM pg_database "
                  "WHERE datallowconn ORDER BY 1")
    assert [r[0] for r in rows] == ["appdb", "postgres", "template1"]
    assert rows == [[r[0], False, False] for r in rows]
    assert pg.sql("SELECT has_schema_privilege('public', 'public', 'USAGE'), "
                  "has_schema_privilege('public', 'public', 'CREATE')") == [[False, False]]


def test_read_only_and_unrelated_roles_cannot_write_or_connect(pg):
    res = pg.run("app_ro_login", [("INSERT INTO app.orders (tenant_id, item, amount) VALUES ('acme', 'x', 1)",)])
    assert not res["ok"] and res["sqlstate"] in ("25006", "42501"), res
    res = pg.run("replication", [("SELECT 1",)])
    assert not res["ok"] and "permission denied for database" in res["error"], res
    res = pg.run("monitoring", [("SELECT count(*) FROM app.orders",)])
    assert not res["ok"] and res["sqlstate"] == "42501", res


def test_default_privileges_cover_tables_created_later_and_ddl_is_audited(pg, log):
    name = "later_" + pysecrets.token_hex(3)
    mark = log.mark()
    pg.ok("admin_login", [("SET ROLE admin",), (f"CREATE TABLE app.{name} (id int)",),
                          (f"INSERT INTO app.{name} VALUES (1)",)])
    assert pg.ok("app_ro_login", [(f"SELECT count(*) FROM app.{name}",)]) == [[[1]]]
    # app_ro may not delete: refused by the read-only default (25006) and, in a read-write transaction, by the
    # missing privilege (42501); etl (granted DELETE) runs the same statement (control, rolled back)
    res = pg.run("app_ro_login", [(f"DELETE FROM app.{name}",)])
    assert not res["ok"] and res["sqlstate"] == "25006", res
    res = pg.run("app_ro_login", [("SET TRANSACTION READ WRITE",), (f"DELETE FROM app.{name}",)])
    assert not res["ok"] and res["sqlstate"] == "42501", res
    assert f"permission denied for table {name}" in res["error"], res
    assert pg.ok("etl", [(f"DELETE FROM app.{name} RETURNING id",), ("ROLLBACK",)])[0] == [[1]]
    res = pg.run("etl", [(f"DROP TABLE app.{name}",)])
    assert not res["ok"] and res["sqlstate"] == "42501", res
    text = log.wait_for(mark, f"app.{name}")
    assert "AUDIT: SESSION" in text and "DDL,CREATE TABLE" in text and f"app.{name}" in text
    pg.ok("admin_login", [("SET ROLE admin",), (f"DROP TABLE app.{name}",)])


@pytest.mark.parametrize("role", ["pgpool_check", "pgbouncer_auth", "monitoring", "backup", "admin_login"])
def test_operational_roles_still_connect_to_the_maintenance_database(pg, role):
    """CONNECT on `postgres` is granted by name (pooler check and auth users, monitoring, backup, admin)."""
    assert pg.ok(role, [("SELECT current_database(), current_user",)], dbname="postgres") == [[["postgres", role]]]


@pytest.mark.parametrize("role, dbname", [("app_rw_login", "postgres"), ("user_acme", "postgres"),
                                          ("bi_reader_login", "postgres"), ("app_rw_login", "template1"),
                                          ("pgpool_check", "appdb")])
def test_other_roles_cannot_connect_where_not_granted(pg, role, dbname):
    res = pg.run(role, [("SELECT 1",)], dbname=dbname)
    assert not res["ok"] and f'permission denied for database "{dbname}"' in res["error"], res


# ---- tenant isolation (pg_tenant from the schema layer) -----------------------------------------------------------
@pytest.fixture(scope="module")
def tenant_rows(pg):
    pg.sql("DELETE FROM app.orders")
    pg.sql("INSERT INTO app.orders (tenant_id, item, amount) VALUES ('acme', 'a1', 10), ('acme', 'a2', 20), "
           "('globex', 'g1', 1000)")
    return pg


def test_tenant_sees_only_its_own_rows(tenant_rows):
    assert tenant_rows.ok("user_acme", [("SELECT item FROM app.orders ORDER BY 1",)]) == [[["a1"], ["a2"]]]


@pytest.mark.parametrize("sql, sqlstate", [
    ("SELECT count(*) FROM app.orders WHERE tenant_id = 'globex'", None),
    ("UPDATE app.orders SET amount = 0 WHERE tenant_id = 'globex' RETURNING id", None),
    ("DELETE FROM app.orders WHERE tenant_id = 'globex' RETURNING id", None),
    ("SELECT tenant_id, n FROM app.orders_summary WHERE tenant_id = 'globex'", "42501"),
    ("INSERT INTO app.orders (tenant_id, item, amount) VALUES ('globex', 'forged', 1)", "42501"),
    ("UPDATE app.orders SET tenant_id = 'globex' WHERE tenant_id = 'acme'", "42501"),
    ("SELECT tenancy.set_tenant('globex')", "42501"),
])
def test_cross_tenant_routes_fail(tenant_rows, sql, sqlstate):
    res = tenant_rows.run("user_acme", [(sql,)])
    if sqlstate:
        assert not res["ok"] and res["sqlstate"] == sqlstate, res
    else:
        assert res["ok"] and res["results"][0] in ([], [[0]]), res
    assert tenant_rows.sql("SELECT item, amount::int FROM app.orders WHERE tenant_id = 'globex'") == [["g1", 1000]]


def test_changing_the_tenant_setting_does_not_switch_tenant(tenant_rows):
    rows = tenant_rows.ok("user_acme", [("SELECT set_config('app.tenant_id', 'globex', false)",),
                                        ("SELECT item FROM app.orders ORDER BY 1",)])
    assert rows[1] == [["a1"], ["a2"]]


def test_copy_exports_only_own_rows(tenant_rows):
    out = tenant_rows.ok("user_acme", [{"sql": "COPY (SELECT item FROM app.orders) TO STDOUT", "copy": True}])
    assert sorted(out[0].split()) == ["a1", "a2"]
    res = tenant_rows.run("user_acme", [{"sql": "COPY app.orders TO '/tmp/x.csv'", "copy": False}])
    assert not res["ok"] and res["sqlstate"] == "42501", res


# ---- privilege escalation -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def definer(pg):
    pg.sql("SET ROLE admin; CREATE OR REPLACE FUNCTION app.order_count() RETURNS bigint LANGUAGE sql "
           "SECURITY DEFINER SET search_path = app, pg_temp AS 'SELECT count(*) FROM customers'; "
           "RESET ROLE")
    yield pg
    pg.sql("DROP FUNCTION app.order_count()")


def test_security_definer_function_cannot_be_hijacked_through_search_path(definer):
    truth = definer.sql("SELECT count(*) FROM app.customers")[0][0]
    for sql in ("CREATE TEMP TABLE customers (n int)", "CREATE TABLE public.customers (n int)",
                "CREATE FUNCTION app.count(anyelement) RETURNS bigint LANGUAGE sql AS 'SELECT 666::bigint'",
                "CREATE FUNCTION public.count(anyelement) RETURNS bigint LANGUAGE sql AS 'SELECT 666::bigint'"):
        res = definer.run("app_rw_login", [(sql,)])
        assert not res["ok"] and res["sqlstate"] == "42501", (sql, res)
    rows = definer.ok("app_rw_login", [("SET search_path = pg_temp, public, app",), ("SELECT app.order_count()",)])
    assert rows[1] == [[truth]]


def test_application_roles_cannot_grant_themselves_more(pg):
    for sql in ("ALTER ROLE app_rw_login SUPERUSER", "GRANT admin TO app_rw_login", "ALTER ROLE app_rw_login BYPASSRLS",
                "SET ROLE admin", "ALTER ROLE app_rw_login CONNECTION LIMIT -1", "ALTER ROLE app_rw CREATEROLE"):
        res = pg.run("app_rw_login", [(sql,)])
        assert not res["ok"] and res["sqlstate"] == "42501", (sql, res)


# ---- audit trail --------------------------------------------------------------------------------------------------
def test_audit_table_is_unreadable_by_application_roles(pg, log):
    mark = log.mark()
    for role in ("app_rw_login", "app_ro_login", "bi_reader_login", "user_acme"):
        res = pg.run(role, [("SELECT count(*) FROM audit.log",)])
        assert not res["ok"] and res["sqlstate"] == "42501", (role, res)
    assert "permission denied for schema audit" in log.wait_for(mark, "permission denied for schema audit")
    assert pg.ok("auditor_login", [("SELECT count(*) FROM audit.log",)])[0][0][0] > 0


@pytest.mark.parametrize("role", ["app_rw_login", "admin_login", "etl", "auditor_login"])
@pytest.mark.parametrize("sql", ["UPDATE audit.log SET app_user = 'nobody'", "DELETE FROM audit.log",
                                 "TRUNCATE audit.log", "DROP TABLE audit.log",
                                 "INSERT INTO audit.log (table_schema, table_name, operation) VALUES ('app', 'x', 'DELETE')"])
def test_audit_rows_cannot_be_tampered_with(pg, role, sql):
    """Only a missing privilege counts as a refusal (42501 'permission denied' / 'must be owner'): the statement
    is valid (the owner runs it with triggers off, rolled back: no 42703), a read-only default is lifted first
    (SET TRANSACTION READ WRITE: no 25006), and the append-only trigger stops even the owner."""
    before = pg.sql("SELECT count(*) FROM audit.log")[0][0]
    control = pg.run("postgres", [("SET LOCAL session_replication_role = replica",), (sql,), ("ROLLBACK",)])
    assert control["ok"], (sql, control)
    op = sql.split()[0]
    if op in ("UPDATE", "DELETE", "TRUNCATE"):
        owner = pg.run("postgres", [(sql,), ("ROLLBACK",)])
        assert not owner["ok"] and owner["sqlstate"] == "42501", owner
        assert f"audit trail audit.log is append-only: {op} refused" in owner["error"], owner
    res = pg.run(role, [("SET TRANSACTION READ WRITE",), (sql,)])
    assert not res["ok"] and res["sqlstate"] == "42501", (role, sql, res)
    assert "permission denied" in res["error"] or "must be owner" in res["error"], res
    assert pg.sql("SELECT count(*) FROM audit.log")[0][0] == before


def test_disabling_the_audit_trigger_is_denied_or_audited(pg, log):
    """Only the table owner may disable a trigger. The schema layer owns the tables (as the postgres superuser, over
    the local socket only), so no login role can; the owner cannot be prevented, so its change is audited."""
    for role, steps in (("app_rw_login", []), ("admin_login", [("SET ROLE admin",)])):
        res = pg.run(role, steps + [("ALTER TABLE app.orders DISABLE TRIGGER hc_audit",)])
        assert not res["ok"] and res["sqlstate"] == "42501", (role, res)
    mark = log.mark()
    pg.sql("ALTER TABLE app.orders DISABLE TRIGGER hc_audit; ALTER TABLE app.orders ENABLE TRIGGER hc_audit")
    text = log.wait_for(mark, "ENABLE TRIGGER")
    assert "AUDIT: SESSION" in text and "ALTER TABLE app.orders DISABLE TRIGGER hc_audit" in text
    assert "postgres@appdb" in text


def test_sensitive_table_reads_are_object_audited(pg, log):
    mark = log.mark()
    pg.ok("app_rw_login", [("SELECT count(*) FROM app.customers",)])
    text = log.wait_for(mark, "AUDIT: OBJECT")
    assert "AUDIT: OBJECT" in text and "app.customers" in text


# ---- column encryption --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def customer(pg):
    key, kid = pysecrets.token_urlsafe(24), 1000 + pysecrets.randbelow(1_000_000)
    email = f"alice-{pysecrets.token_hex(4)}@example.org"
    insert = ("INSERT INTO app.customers (tenant_id, name, email, phone, key_id) VALUES "
              "('acme', 'Alice', hc_crypto.encrypt(%s), hc_crypto.encrypt(%s), hc_crypto.current_key_id())")
    pg.ok("app_rw_login", [(KEY_SET, (kid, key, kid)), (insert, (email, "+44 20 7946 0000"))])
    return {"key": key, "email": email, "kid": kid}


def test_encrypted_column_reads_back_with_the_key(pg, customer):
    kid = customer["kid"]
    rows = pg.ok("app_rw_login", [(KEY_SET, (kid, customer["key"], kid)),
                                  ("SELECT hc_crypto.decrypt(email, key_id) FROM app.customers WHERE key_id = %s", (kid,))])
    assert rows[1] == [[customer["email"]]]


def test_encrypted_column_is_unreadable_without_the_key(pg, customer):
    kid = customer["kid"]
    raw = pg.sql("SELECT email FROM app.customers WHERE key_id = %s", (kid,))[0][0]
    assert customer["email"].encode().hex() not in raw
    query = ("SELECT hc_crypto.decrypt(email, key_id) FROM app.customers WHERE key_id = %s", (kid,))
    res = pg.run("app_rw_login", [query])
    assert not res["ok"] and "not supplied" in res["error"], res
    res = pg.run("app_rw_login", [(KEY_SET, (kid, "wrong-" + customer["key"], kid)), query])
    assert not res["ok"] and "Wrong key" in res["error"], res
    res = pg.run("bi_reader_login", [("SELECT hc_crypto.decrypt(email, key_id) FROM app.customers",)])
    assert not res["ok"] and res["sqlstate"] == "42501", res


def test_column_key_is_in_no_table_and_no_log(pg, customer, log):
    assert customer["key"] not in log.since(0)
    hits = pg.sql("SELECT count(*) FROM audit.log WHERE row_to_json(log)::text LIKE %s", (f"%{customer['key']}%",))
    assert hits == [[0]]
    assert pg.sql("SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE %s",
                  (f"%{customer['key']}%",)) == [[0]]
