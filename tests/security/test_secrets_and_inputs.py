"""Secrets never surface (Ansible output at -vvv, server log), missing secrets and hostile inputs fail before any
statement runs, and the rotation playbooks work while leaking nothing."""
import json
import os
import secrets as pysecrets
import stat
import tempfile

import pytest
from conftest import PROJECT, ansible_playbook

KEY_SET = "SELECT set_config('hc_keys.k' || %s::text, %s, true), set_config('hc_keys.current', %s::text, true)"
INSERT_CUSTOMER = ("INSERT INTO app.customers (tenant_id, name, email, phone, key_id) VALUES "
                   "('acme', 'R', hc_crypto.encrypt(%s), hc_crypto.encrypt('+1 555 0100'), hc_crypto.current_key_id())")
HOSTILE = 'x"; DROP TABLE app.orders; --'


def _vars_file(data):
    fd, path = tempfile.mkstemp(prefix="hc-sec-", suffix=".json")
    os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return path


def _orders_exists(pg):
    return pg.sql("SELECT to_regclass('app.orders') IS NOT NULL") == [[True]]


def test_missing_password_fails_in_preflight_naming_it(pg, molecule_inventory):
    path = _vars_file({"security_passwords": {"admin_login": "only-admin-given"}})
    try:
        res = ansible_playbook(molecule_inventory, PROJECT / "playbooks/security.yml", "-e", f"@{path}",
                               "--tags", "security_preflight")
    finally:
        os.unlink(path)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "security_passwords.app_rw_login" in out and "security_passwords.monitoring" in out
    assert "only-admin-given" not in out


def test_hostile_role_name_is_rejected_in_preflight(pg, molecule_inventory):
    path = _vars_file({"security_extra_roles": [{"name": HOSTILE}]})
    try:
        res = ansible_playbook(molecule_inventory, PROJECT / "playbooks/security.yml", "-e", f"@{path}",
                               "--tags", "security_preflight")
    finally:
        os.unlink(path)
    assert res.returncode != 0
    assert "is not a plain identifier" in res.stdout + res.stderr
    assert _orders_exists(pg)


def _run_module(molecule_inventory, module, args, *extra):
    """One task calling `module` with `args` on the postgresql group; returns (process, failure messages)."""
    args = dict(args, db="appdb", login_unix_socket="/var/run/postgresql")
    play = [{"name": "hostile input", "hosts": "postgresql", "gather_facts": False, "become": True,
             "tasks": [{"name": "call", module: args, "become_user": "postgres"}]}]
    fd, path = tempfile.mkstemp(prefix="hc-sec-play-", suffix=".yml", dir=PROJECT / "playbooks")
    with os.fdopen(fd, "w") as fh:
        json.dump(play, fh)
    try:
        res = ansible_playbook(molecule_inventory, path, *extra, env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})
    finally:
        os.unlink(path)
    msgs = []
    for line in res.stdout.splitlines():
        if "FAILED! => " in line:
            try:
                msgs.append(json.loads(line.split("FAILED! => ", 1)[1]).get("msg", ""))
            except ValueError:
                msgs.append(line)
    return res, msgs


@pytest.mark.parametrize("module, args, control, refusal", [
    ("hingecraft.enterprise_db.pg_tenant",
     {"tables": ["app.orders"], "tenants": [{"id": "x'); DROP TABLE app.orders; --"}]},
     {"tables": ["app.orders"], "tenants": [{"id": "acme"}]},
     "tenants: invalid tenant id \"x'); DROP TABLE app.orders; --\""),
    ("hingecraft.enterprise_db.pg_column_encryption",
     {"table": "app.customers; DROP TABLE app.orders", "state": "status"},
     {"table": "app.customers", "state": "status"},
     "table: object name 'app.customers; DROP TABLE app.orders' has more than two dot-separated parts"),
    ("hingecraft.enterprise_db.pg_column_encryption",
     # keys longer than any word of the message: no_log masks every occurrence of a secret value in the output
     {"table": "app.customers", "columns": [HOSTILE], "old_key_id": 1, "new_key_id": 2, "old_key": "old-key-0x5f3a",
      "new_key": "new-key-0x9c1b"},
     {"table": "app.customers", "columns": ["email"], "old_key_id": 1, "new_key_id": 2, "old_key": "old-key-0x5f3a",
      "new_key": "new-key-0x9c1b"},
     f"column {HOSTILE!r} does not exist in app.customers"),
], ids=["tenant-id", "table-name", "column-name"])
def test_hostile_module_inputs_are_data_not_code(pg, molecule_inventory, module, args, control, refusal):
    """The hostile value is refused by the module's own check, with the message naming it (no SQL error, no
    other failure); the same call with a legitimate value passes (check mode: nothing changes)."""
    res, msgs = _run_module(molecule_inventory, module, control, "--check")
    assert res.returncode == 0 and not msgs, (msgs, res.stdout[-3000:])
    res, msgs = _run_module(molecule_inventory, module, args)
    assert res.returncode != 0, res.stdout
    assert "failed=1" in res.stdout
    assert len(msgs) == 1 and refusal in msgs[0], (refusal, msgs, res.stdout[-3000:])
    assert _orders_exists(pg)


def test_rotate_passwords_sets_new_verifier_and_leaks_nothing(pg, molecule_inventory, log):
    old = pg.password("bi_reader_login")
    new = pysecrets.token_urlsafe(24)
    mark = log.mark()
    path = _vars_file({"security_passwords": {"bi_reader_login": new}, "rotate_password_roles": ["bi_reader_login"]})
    try:
        res = ansible_playbook(molecule_inventory, PROJECT / "playbooks/rotate_passwords.yml", "-vvv", "-e", f"@{path}")
    finally:
        os.unlink(path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    (pg.secrets / "bi_reader_login").write_text(new)  # the vault now holds the new value
    assert new not in out and old not in out
    assert pg.ok("bi_reader_login", [("SELECT current_user",)], password=new) == [[["bi_reader_login"]]]
    res = pg.run("bi_reader_login", [("SELECT 1",)], password=old)
    assert not res["ok"] and "password authentication failed" in res["error"]
    verifier = pg.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'bi_reader_login'")[0][0]
    assert verifier.startswith("SCRAM-SHA-256$") and new not in verifier
    server_log = log.since(mark)
    assert "ALTER" not in server_log or new not in server_log
    assert new not in log.since(0) and old not in log.since(0)


def test_rotate_column_key_reencrypts_in_batches_and_leaks_nothing(pg, molecule_inventory, log):
    old_key, new_key = pysecrets.token_urlsafe(24), pysecrets.token_urlsafe(24)
    old_id = 2_000_000 + pysecrets.randbelow(1_000_000)
    new_id = old_id + 1
    emails = [f"rot{i}-{pysecrets.token_hex(3)}@example.org" for i in range(5)]
    pg.ok("app_rw_login", [(KEY_SET, (old_id, old_key, old_id))] + [
        (INSERT_CUSTOMER, (e,)) for e in emails])
    path = _vars_file({"column_keys": {str(old_id): old_key, str(new_id): new_key}, "column_key_old_id": old_id,
                       "column_key_new_id": new_id,
                       "column_key_database": "appdb", "column_key_batch_size": 2,
                       "column_key_tables": [{"table": "app.customers", "columns": ["email", "phone"]}]})
    try:
        res = ansible_playbook(molecule_inventory, PROJECT / "playbooks/rotate_column_key.yml", "-vvv", "-e", f"@{path}")
    finally:
        os.unlink(path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert old_key not in out and new_key not in out
    assert "app.customers: reencrypted=5 remaining=0" in out, out[-3000:]
    assert pg.sql("SELECT count(*) FROM app.customers WHERE key_id = %s", (old_id,)) == [[0]]
    query = ("SELECT hc_crypto.decrypt(email, key_id) FROM app.customers WHERE key_id = %s ORDER BY 1", (new_id,))
    rows = pg.ok("app_rw_login", [(KEY_SET, (new_id, new_key, new_id)), query])
    assert rows[1] == [[e] for e in sorted(emails)]
    res = pg.run("app_rw_login", [(KEY_SET, (new_id, old_key, new_id)), query])
    assert not res["ok"] and "Wrong key" in res["error"]
    full_log = log.since(0)
    assert old_key not in full_log and new_key not in full_log
    assert not any(e in full_log for e in emails)


def test_audit_report_names_who_changed_what(pg, molecule_inventory, tmp_path):
    name = "report_" + pysecrets.token_hex(3)
    pg.ok("admin_login", [("SET ROLE admin",), (f"CREATE TABLE app.{name} (id int)",),
                          (f"COMMENT ON TABLE app.{name} IS 'audited change'",), (f"DROP TABLE app.{name}",)])
    res = ansible_playbook(molecule_inventory, PROJECT / "playbooks/audit_report.yml", "-e",
                           json.dumps({"audit_report_dir": str(tmp_path)}))
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    report = json.loads(next(tmp_path.glob("audit-*.json")).read_text())
    for command in ("CREATE TABLE", "COMMENT"):
        assert any(r["user"] == "admin_login" and r["command"] == command and r["object"] == f"app.{name}"
                   for r in report["pgaudit"]), (command, report["pgaudit"][-5:])
    assert any(r["kind"] == "OBJECT" and r["object"] == "app.customers" for r in report["pgaudit"])
    assert report["trail"] and {"db_user", "operation", "object"} <= set(report["trail"][0])
