"""Attack suite fixtures: run against the Molecule `security` scenario's container (molecule verify), or any
container named by HC_SECURITY_CONTAINER with secrets in HC_SECURITY_SECRETS. Every client runs INSIDE the
container (docker exec), so traffic stays on the project's own network and loopback."""
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
sys.path.insert(0, str(PROJECT / "tests" / "helpers"))

from testlib import container_running, require, run_playbook

CONTAINER = os.environ.get("HC_SECURITY_CONTAINER", "hc-mol-security-pg1")
CLIENT = "/usr/local/lib/hc-pgclient.py"
PG_LOG = "/var/log/postgresql/postgresql-17-main.log"
PKI = "/etc/hingecraft/pki"
FOREIGN = "/root/foreign-ca"
# The only test fixture material: a CA that is not the platform's, with a client certificate of its own (the
# attacks present it, and use its root to check that clients refuse the platform server's certificate).
FOREIGN_CA = f"""set -eu
rm -rf {FOREIGN}; install -d -m 0700 {FOREIGN}; cd {FOREIGN}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "/CN=Foreign CA" \\
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=app_rw_login" -keyout client.key \\
  -out client.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\\n' > client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile client.ext \\
  -out client.crt 2>/dev/null
chmod 0600 ca.key client.key
"""


def _secrets_dir():
    if os.environ.get("HC_SECURITY_SECRETS"):
        return pathlib.Path(os.environ["HC_SECURITY_SECRETS"])
    if os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY"):
        return pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets"
    return None


def dexec(*args, stdin=None, timeout=120, check=True):
    res = subprocess.run(["docker", "exec", "-i", CONTAINER, *args], input=stdin, capture_output=True,
                         timeout=timeout, text=True, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{args} failed ({res.returncode}): {res.stderr}")
    return res


class Pg:
    """Sessions against the container's PostgreSQL, from inside the container."""

    def __init__(self, secrets):
        self.secrets = secrets
        self.ip = subprocess.run(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", CONTAINER],
            capture_output=True, text=True, check=True).stdout.strip()

    def password(self, role):
        return (self.secrets / role).read_text().strip()

    def run(self, user, steps, *, password=None, remote=True, sslmode="verify-full", cert="client",
            rootcert=f"{PKI}/client/ca.crt", dbname="appdb", autocommit=False, timeout=120):
        """Open one session as `user` and run steps [(sql, params)]; remote=True goes over the bridge IP with TLS
        and a client certificate (cert names a directory holding client.crt/client.key, or None)."""
        if user == "postgres":
            conn = {"host": "/var/run/postgresql", "user": "postgres", "dbname": dbname}
            run_as = ["runuser", "-u", "postgres", "--"]
        else:
            conn = {"user": user, "dbname": dbname, "connect_timeout": 10,
                    "password": self.password(user) if password is None else password}
            run_as = []
            if remote:
                conn.update(host=self.ip, port=5432, sslmode=sslmode, sslrootcert=rootcert)
                if cert:
                    base = cert if cert.startswith("/") else f"{PKI}/{cert}"
                    conn.update(sslcert=f"{base}/client.crt", sslkey=f"{base}/client.key")
            else:
                conn.update(host="127.0.0.1", port=5432)
        req = {"conn": conn, "autocommit": autocommit,
               "steps": [s if isinstance(s, dict) else {"sql": s[0], "params": list(s[1]) if len(s) > 1 else None}
                         for s in steps]}
        res = dexec(*run_as, "python3", CLIENT, stdin=json.dumps(req), timeout=timeout)
        return json.loads(res.stdout)

    def ok(self, user, steps, **kw):
        res = self.run(user, steps, **kw)
        assert res["ok"], res
        return res["results"]

    def sql(self, sql, params=(), dbname="appdb"):
        """One statement as the postgres superuser (peer, local socket): fixture set-up and ground truth."""
        return self.ok("postgres", [(sql, params)], dbname=dbname)[0]


class Log:
    """The server log inside the container, read from a remembered offset."""

    def mark(self):
        return int(dexec("stat", "-c", "%s", PG_LOG).stdout.strip())

    def since(self, offset):
        return dexec("tail", "-c", f"+{offset + 1}", PG_LOG).stdout

    def wait_for(self, offset, needle, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            text = self.since(offset)
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.5)


@pytest.fixture(scope="session")
def pg():
    secrets = _secrets_dir()
    require(secrets is not None and secrets.is_dir(),
            "no scenario secrets: run through `molecule verify -s security` "
            "(or set HC_SECURITY_CONTAINER and HC_SECURITY_SECRETS)")
    require(container_running(CONTAINER),
            f"container {CONTAINER} is not running (create it with `molecule converge -s security`)")
    dexec("sh", "-c", f"cat > {CLIENT}", stdin=(HERE / "pgclient.py").read_text())
    dexec("sh", "-c", FOREIGN_CA)
    return Pg(secrets)


@pytest.fixture(scope="session")
def log():
    return Log()


@pytest.fixture(scope="session")
def molecule_inventory():
    eph = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    require(bool(eph), "needs the Molecule inventory (MOLECULE_EPHEMERAL_DIRECTORY): run through molecule verify")
    return str(pathlib.Path(eph) / "inventory")


def ansible_playbook(inventory, playbook, *args, timeout=600, env=None):
    return run_playbook(inventory, playbook, *args, timeout=timeout, check=False, env=env)
