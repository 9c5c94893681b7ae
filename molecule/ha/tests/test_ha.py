"""HA layer behaviour: replication, PgBouncer -> pgpool -> PostgreSQL, failover, rejoin, switchover.

Clients run inside the project's containers (docker exec); nothing leaves the host's Docker network.
The tests run in file order and share the cluster: each one leaves it with one primary and two streaming
standbys (the failover test's rejoin restores that state before the next test starts).
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from testlib import docker, judge_samples, require_container, run_playbook, wait_until

EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SECRETS = EPHEMERAL / "secrets"
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory" / "ansible_inventory.yml"))
NODES = ["hc-mol-ha-pg1", "hc-mol-ha-pg2", "hc-mol-ha-pg3"]
PROXY = "hc-mol-ha-proxy1"
CA = "/etc/hingecraft/pki/pgbouncer/ca.crt"
WRITER = "/var/tmp/ha_writer.py"
ADMIN_PASSFILE = "/var/lib/postgresql/.hc_pgpool.pgpass"

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


def streaming_standbys(primary):
    return node_sql(primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1")


def two_streaming_standbys():
    prim = primaries()
    if len(prim) != 1:
        return False
    names = streaming_standbys(prim[0]).split()
    return prim[0] if len(names) == 2 else False


def playbook(name, *extra):
    return run_playbook(INVENTORY, name, *extra, timeout=600).stdout


def start_writer(table, count, seconds):
    docker("cp", str(ROOT / "tests" / "bench" / "ha_writer.py"), f"{PROXY}:{WRITER}")
    dsn = f"host=localhost port=6432 dbname=appdb user=app_rw sslmode=verify-full sslrootcert={CA}"
    return subprocess.Popen(
        ["docker", "exec", "-u", "postgres", "-e", "PGPASSWORD", "-e", f"HC_CA={CA}",
         "-e", f"HC_ADMIN_PASSFILE={ADMIN_PASSFILE}", PROXY, "python3", WRITER, "--dsn", dsn, "--table", table,
         "--count", str(count), "--seconds", str(seconds), "--interval", "0.02", "--nodes", ",".join(NODES)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PGPASSWORD=secret("app_rw")),
    )


def wait_for_rows(proc, table, rows, timeout=60):
    """Poll (instead of a fixed sleep) until the writer has committed at least `rows` rows to `table`."""
    def enough():
        assert proc.poll() is None, f"the writer exited early: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
        res = bouncer_sql(f"SELECT count(*) FROM {table}", check=False)
        return res.returncode == 0 and int(res.stdout.strip() or 0) >= rows
    wait_until(enough, timeout, f"the writer to commit {rows} rows to {table}", interval=0.5)


def finish_writer(proc, timeout):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out)


def check_no_loss(result, table):
    acked = {n for n, _unused in result["acked"]}
    assert acked, f"the writer acknowledged no row: {result['errors'][-3:]}"
    present = set(map(int, bouncer_sql(f"SELECT n FROM {table}").stdout.split()))
    lost = sorted(acked - present)
    assert not lost, f"{len(lost)} acknowledged rows lost, e.g. {lost[:10]}"
    # never two primaries: the sampler must have seen the cluster (samples required, errors must not dominate)
    problems, summary = judge_samples(result["samples"], NODES, min_samples=10)
    print(f"split-brain sampler: {summary}")
    assert not problems, problems
    return acked


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


def test_failover_loses_no_acknowledged_write_and_rejoins():
    # a fresh table: rows of an earlier run would satisfy the row poll and the loss check without this run
    bouncer_sql("DROP TABLE IF EXISTS ha_failover")
    bouncer_sql("CREATE TABLE ha_failover (n int NOT NULL, at timestamptz DEFAULT clock_timestamp())")
    proc = start_writer("ha_failover", count=1500, seconds=90)
    wait_for_rows(proc, "ha_failover", 100)
    stopped_at = time.time()
    docker("stop", "-t", "1", "hc-mol-ha-pg1")
    result = finish_writer(proc, timeout=150)
    acked = check_no_loss(result, "ha_failover")
    after = [t for _unused, t in result["acked"] if t > stopped_at]
    assert after, f"no write succeeded after the primary stopped; errors: {result['errors'][-3:]}"
    before = [t for _unused, t in result["acked"] if t <= stopped_at]
    assert before, "the writer had not started before the primary was stopped"
    gap = max(b - a for a, b in zip([t for _unused, t in result["acked"]], [t for _unused, t in result["acked"]][1:]))
    print(f"failover: {len(acked)} rows acknowledged, longest write gap {gap:.1f}s, "
          f"first write {after[0] - stopped_at:.1f}s after docker stop")
    assert gap < 30, f"writes stopped for {gap:.1f}s"
    new_primary = primaries()
    assert len(new_primary) == 1 and new_primary[0] != "hc-mol-ha-pg1"

    # Fence the old primary before it boots: it comes back in recovery, never as a second primary.
    docker("cp", str(ROOT / "molecule" / "ha" / "files" / "standby.signal"),
           "hc-mol-ha-pg1:/var/lib/postgresql/17/main/standby.signal")
    docker("start", "hc-mol-ha-pg1")
    wait_for(lambda: docker("exec", "hc-mol-ha-pg1", "systemctl", "is-active", "postgresql@17-main",
                            check=False).stdout.strip() == "active", 60, "pg1's server to start")
    assert primaries() == new_primary
    playbook("rejoin.yml", "-e", "replication_rejoin_host=hc-mol-ha-pg1")
    assert wait_for(two_streaming_standbys, 60, "two streaming standbys") == new_primary[0]
    assert node_sql("hc-mol-ha-pg1", "SELECT pg_is_in_recovery()") == "t"
    assert_pgpool_sees(new_primary[0], rejoined="hc-mol-ha-pg1")


def pcp_nodes():
    """`pcp_node_info -a` parsed: {node: {"status": n, "status_name", "pg_status", "role", "pg_role"}}.

    Columns (pgpool-II 4.x, no -v): hostname port status weight status_name pg_status role pg_role ...
    The hostname is matched against the node's container name, hostname or bridge address."""
    out = docker("exec", "-u", "postgres", PROXY, "pcp_node_info", "-h", "localhost", "-U", "pcpadmin", "-w",
                 "-a", timeout=30).stdout
    names = {}
    for node in NODES:
        names[node] = node
        names[node.rsplit("-", 1)[-1]] = node
        names[docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                     node).stdout.strip()] = node
    parsed = {}
    for line in out.splitlines():
        f = line.split()
        assert len(f) >= 8, f"unexpected pcp_node_info line: {line!r}\n{out}"
        assert f[0] in names, f"pcp_node_info names an unknown backend {f[0]!r}:\n{out}"
        parsed[names[f[0]]] = {"status": f[2], "status_name": f[4], "pg_status": f[5], "role": f[6],
                               "pg_role": f[7], "line": line}
    return parsed, out


def assert_pgpool_sees(primary, rejoined):
    """pgpool-II's view after a rejoin: the three backends attached and up, the roles as expected, and a read
    through pgpool reaches the rejoined node (it is really back in the load-balancing set)."""
    def settled():
        parsed, out = pcp_nodes()
        ok = (set(parsed) == set(NODES)
              and all(p["status"] in ("1", "2") and p["status_name"] in ("up", "waiting") and p["pg_status"] == "up"
                      for p in parsed.values())
              and all(p["role"] == p["pg_role"] == ("primary" if n == primary else "standby")
                      for n, p in parsed.items()))
        return (parsed, out) if ok else False
    wait_until(settled, 60, f"pcp_node_info to show 3 backends up, {primary} primary, the others standby")
    parsed, out = pcp_nodes()
    assert len(parsed) == 3 and len(out.strip().splitlines()) == 3, out
    assert [n for n, p in parsed.items() if p["role"] == "primary"] == [primary], out
    target = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", rejoined).stdout.strip()
    seen = []

    def read_reaches():
        seen.append(bouncer_sql("SELECT inet_server_addr()", port=9999).stdout.strip())
        return seen[-1] == target
    wait_until(read_reaches, 60, f"a read through pgpool to reach {rejoined} ({target})", interval=0.2)


def test_switchover_loses_no_write():
    current = primaries()
    target = "hc-mol-ha-pg1" if current != ["hc-mol-ha-pg1"] else "hc-mol-ha-pg2"
    bouncer_sql("DROP TABLE IF EXISTS ha_switchover")
    bouncer_sql("CREATE TABLE ha_switchover (n int NOT NULL)")
    proc = start_writer("ha_switchover", count=1000, seconds=90)
    wait_for_rows(proc, "ha_switchover", 50)
    playbook("switchover.yml", "-e", f"switchover_target={target}")
    result = finish_writer(proc, timeout=150)
    acked = check_no_loss(result, "ha_switchover")
    assert len(acked) == 1000, f"the writer stopped at {len(acked)} rows: {result['errors'][-3:]}"
    assert wait_for(two_streaming_standbys, 60, "two streaming standbys") == target


def test_standby_loss_and_pgbouncer_restart_keep_clients_working():
    assert "hc-mol-ha-pg3" not in primaries()
    docker("stop", "-t", "1", "hc-mol-ha-pg3")
    try:
        wait_for(lambda: bouncer_sql("INSERT INTO ha_marker VALUES (3, 'standby down') "
                                     "ON CONFLICT (id) DO UPDATE SET note = excluded.note", check=False)
                 .returncode == 0, 30, "writes with a standby down")
        for _unused in range(10):
            assert bouncer_sql("SELECT count(*) FROM ha_marker", user="app_ro").returncode == 0
        docker("exec", PROXY, "systemctl", "restart", "pgbouncer")
        wait_for(lambda: bouncer_sql("SELECT 1", check=False).returncode == 0, 30, "a client after the restart")
    finally:
        docker("start", "hc-mol-ha-pg3")
    playbook("rejoin.yml", "-e", "replication_rejoin_host=hc-mol-ha-pg3")
    assert wait_for(two_streaming_standbys, 90, "two streaming standbys")
