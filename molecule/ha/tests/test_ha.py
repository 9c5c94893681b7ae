"""HA layer behaviour on one converged cluster: replication over TLS, PgBouncer -> pgpool -> PostgreSQL, read
balancing, and who may get in where.

Failover, switchover, rejoin and the loss of a standby under a writer are proven once, on the lab, by the platform
suite's fault matrix (tests/platform/test_platform.py: SIGKILL, clean stop and partition of the primary, standby
SIGKILL, pooler restarts, the switchover and rejoin runbooks, then a site.yml run that must change nothing). They
were also run here, on a second three-node cluster, and that doubled the suite's longest scenario for nothing the
lab does not show. `make bench-ha` still fails over this scenario's cluster to measure RTO and RPO.

Clients run inside the project's containers (docker exec); nothing leaves the host's Docker network.
"""

import os
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from testlib import docker, require_container, wait_until

EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SECRETS = EPHEMERAL / "secrets"
NODES = ["hc-mol-ha-pg1", "hc-mol-ha-pg2", "hc-mol-ha-pg3"]
PROXY = "hc-mol-ha-proxy1"
CA = "/etc/hingecraft/pki/pgbouncer/ca.crt"

pytestmark = require_container(PROXY, "ha")


def secret(name):
    return (SECRETS / name).read_text(encoding="utf-8").split()[0]


def node_sql(node, sql, db="postgres"):
    """Run SQL on a PostgreSQL node over its local socket as postgres (peer)."""
    out = docker("exec", "-u", "postgres", node, "psql", "-XAtq", "-d", db, "-c", sql).stdout
    return out.strip()


def bouncer_sql(sql, user="app_rw", db="appdb", port=6432, check=True):
    """Run SQL inside the proxy container through PgBouncer (or pgpool with port=9999), TLS verify-full."""
    dsn = f"host=localhost port={port} dbname={db} user={user} sslmode=verify-full sslrootcert={CA} connect_timeout=10"
    return docker(
        "exec", PROXY, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql, check=check, password=secret(user),
    )


def running(node):
    return docker("inspect", "-f", "{{.State.Running}}", node).stdout.strip() == "true"


def primaries():
    out = []
    for node in NODES:
        if running(node):
            res = docker("exec", "-u", "postgres", node, "psql", "-XAtq", "-c", "SELECT pg_is_in_recovery()",
                         check=False, timeout=30)
            if res.returncode == 0 and res.stdout.strip() == "f":
                out.append(node)
    return out


def wait_for(predicate, timeout, what):
    return wait_until(predicate, timeout, what)


def test_both_standbys_stream():
    prim = primaries()
    assert prim == ["hc-mol-ha-pg1"], f"expected pg1 as the only primary, got {prim}"
    rows = node_sql(prim[0], "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY 1")
    assert rows.splitlines() == [
        "hc-mol-ha-pg2|streaming|quorum",
        "hc-mol-ha-pg3|streaming|quorum",
    ], rows
    slots = node_sql(prim[0], "SELECT slot_name FROM pg_replication_slots WHERE active ORDER BY 1")
    assert slots.split() == ["hc_mol_ha_pg2", "hc_mol_ha_pg3"]
    assert node_sql(prim[0], "SHOW synchronous_standby_names").startswith("ANY 1 (")


def test_standby_uses_tls_verify_full():
    for node in NODES[1:]:
        conninfo = node_sql(node, "SELECT conninfo FROM pg_stat_wal_receiver")
        assert "sslmode=verify-full" in conninfo, conninfo
    ssl = node_sql("hc-mol-ha-pg1", "SELECT bool_and(s.ssl) FROM pg_stat_replication r "
                   "JOIN pg_stat_ssl s ON s.pid = r.pid")
    assert ssl == "t"


def test_write_through_pgbouncer_reaches_standbys():
    bouncer_sql("CREATE TABLE IF NOT EXISTS ha_marker (id int PRIMARY KEY, note text)")
    bouncer_sql("INSERT INTO ha_marker VALUES (1, 'through pgbouncer') ON CONFLICT (id) DO NOTHING")
    for node in NODES[1:]:
        wait_for(lambda n=node: node_sql(n, "SELECT note FROM ha_marker WHERE id = 1", db="appdb")
                 == "through pgbouncer", 15, f"the row on {node}")


def test_reads_are_balanced_over_the_standbys():
    seen = set()
    for _unused in range(24):
        seen.add(bouncer_sql("SELECT inet_server_addr()", port=9999).stdout.strip())
    addrs = {docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", n).stdout.strip(): n
             for n in NODES}
    standbys_hit = {addrs.get(a) for a in seen} & set(NODES[1:])
    assert standbys_hit == set(NODES[1:]), f"reads reached {sorted(seen)}; standbys: {addrs}"


def test_role_without_write_grant_is_refused():
    bouncer_sql("GRANT SELECT ON ha_marker TO app_ro")
    assert bouncer_sql("SELECT count(*) FROM ha_marker", user="app_ro").stdout.strip() == "1"
    res = bouncer_sql("INSERT INTO ha_marker VALUES (2, 'nope')", user="app_ro", check=False)
    assert res.returncode != 0 and "permission denied" in res.stderr, res.stderr


def test_superuser_cannot_log_in_through_pgbouncer():
    """PgBouncer's HBA rejects the admin/stats users over TCP (and auth_query's get_auth returns no secret for a
    superuser behind that): refused with the right password, while an ordinary role passes on the same path
    (same DSN shape, same database)."""
    def login(user):
        dsn = f"host=localhost port=6432 dbname=postgres user={user} sslmode=verify-full sslrootcert={CA} connect_timeout=10"
        return docker("exec", PROXY, "psql", "-XAtq", dsn, "-c", "SELECT current_user", check=False,
                      password=secret(user))
    control = login("app_rw")
    assert control.returncode == 0 and control.stdout.strip() == "app_rw", control.stderr
    res = login("postgres")
    assert res.returncode != 0, "a superuser logged in through PgBouncer"
    assert re.search(r"FATAL:\s+login rejected$", res.stderr.strip()), res.stderr


def test_pgbouncer_listener_is_tls_only():
    """PgBouncer's listener, probed from the proxy's bridge address (tests/security/tls_audit.py): the platform
    client gets an answer, plaintext is refused, the server certificate verifies against the platform CA only,
    and a client certificate of a foreign CA is refused with a TLS alert."""
    sys.path.insert(0, str(ROOT / "tests" / "security"))
    from tls_audit import assert_listener_secure

    assert_listener_secure(PROXY, {"name": "pgbouncer", "port": 6432, "protocol": "postgres", "ca": CA})


def test_pgpool_tcp_listener_demands_scram():
    """pgpool's loopback TCP listener is not a way around authentication: SCRAM over TLS, even from the host."""
    assert bouncer_sql("SELECT 1", port=9999).stdout.strip() == "1"
    dsn = f"host=localhost port=9999 dbname=appdb user=app_rw sslmode=verify-full sslrootcert={CA}"
    res = docker("exec", PROXY, "psql", "-XAtq", dsn, "-c", "SELECT 1", check=False, password="not-the-password")
    assert res.returncode != 0 and "authentication failed" in res.stderr, res.stderr
    res = docker("exec", PROXY, "psql", "-XAtqw", dsn, "-c", "SELECT 1", check=False)
    assert res.returncode != 0, "pgpool let a TCP client in without a password"


def test_pgpool_socket_is_reachable_by_the_service_account_only():
    """The trusted Unix socket (PgBouncer's way in) sits in a 0700 directory: other local accounts cannot use it."""
    assert docker("exec", PROXY, "stat", "-c", "%a %U", "/run/pgpool").stdout.split() == ["700", "postgres"]
    res = docker("exec", "-u", "nobody", PROXY, "psql", "-XAtqw", "host=/run/pgpool port=9999 dbname=appdb user=app_rw",
                 "-c", "SELECT 1", check=False)
    assert res.returncode != 0 and "Permission denied" in res.stderr, res.stderr
    res = docker("exec", "-u", "postgres", PROXY, "psql", "-XAtqw",
                 "host=/run/pgpool port=9999 dbname=appdb user=app_rw", "-c", "SELECT 1", check=False)
    assert res.stdout.strip() == "1", res.stderr
