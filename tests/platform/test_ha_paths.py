"""The HA layer's paths on the lab, before the fault matrix (conftest keeps file order; this file sorts before
test_platform.py): standbys stream over verified TLS, pgpool-II spreads reads over both standbys, who may get in
through PgBouncer and pgpool-II. The same checks as molecule/ha's verify, on the lab's converge instead of a second
four-node cluster: `make test` leaves that scenario to `make molecule` (scripts/molecule-all.sh) and proves its
roles here, and their idempotence with the suite's last site.yml.

Clients run inside the lab's containers (docker exec) or from the host to 127.0.0.1:6432; every call is bounded.
"""

from __future__ import annotations

import psycopg
import pytest
from lab import NODES, PROXY, bouncer_dsn, bouncer_password, docker, node_sql, secret, writable_primaries

PROXY_CA = "/etc/hingecraft/pki/pgbouncer/ca.crt"


def _primary() -> str:
    prim = writable_primaries()
    assert len(prim) == 1, f"expected exactly one primary, found {prim}"
    return prim[0]


def pgpool_psql(sql: str, password: str | None, user: str = "hingecraft_app", check: bool = True):
    """psql inside the proxy container to pgpool-II's loopback TCP listener, TLS verify-full."""
    dsn = (f"host=localhost port=9999 dbname=hingecraft user={user} sslmode=verify-full sslrootcert={PROXY_CA} "
           "connect_timeout=10")
    if password is None:
        return docker("exec", PROXY, "psql", "-XAtqw", dsn, "-c", sql, check=check, timeout=30)
    return docker("exec", PROXY, "psql", "-XAtq", dsn, "-c", sql, check=check, timeout=30, password=password)


def test_standbys_stream_over_verified_tls():
    primary = _primary()
    standbys = sorted(n for n in NODES if n != primary)
    for node in standbys:
        conninfo = node_sql(node, "SELECT conninfo FROM pg_stat_wal_receiver")
        assert "sslmode=verify-full" in conninfo, (node, conninfo)
    rows = node_sql(primary, "SELECT count(*), bool_and(s.ssl) FROM pg_stat_replication r "
                             "JOIN pg_stat_ssl s ON s.pid = r.pid WHERE r.state = 'streaming'")
    assert rows == f"{len(standbys)}|t", f"streaming standbys over TLS on {primary}: {rows}"


def test_pgpool_spreads_reads_over_both_standbys():
    primary = _primary()
    addrs = {docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", c).stdout.strip(): n
             for n, c in NODES.items()}
    seen = {pgpool_psql("SELECT inet_server_addr()", bouncer_password()).stdout.strip() for _session in range(24)}
    hit = {addrs.get(a) for a in seen}
    assert {n for n in NODES if n != primary} <= hit, f"24 sessions read from {sorted(seen)}; nodes: {addrs}"


def test_superuser_cannot_log_in_through_pgbouncer():
    """Refused with the right password, while the application login passes on the same path."""
    with psycopg.connect(bouncer_dsn(), password=bouncer_password(), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("hingecraft_app",)
    with pytest.raises(psycopg.OperationalError, match="login rejected|authentication failed|not allowed"):
        psycopg.connect(bouncer_dsn(user="postgres", dbname="postgres"), password=secret("postgres_superuser"))


def test_pgpool_tcp_listener_demands_scram():
    """pgpool-II's loopback TCP listener is no way around authentication, even from the proxy host itself."""
    assert pgpool_psql("SELECT 1", bouncer_password()).stdout.strip() == "1"
    res = pgpool_psql("SELECT 1", "not-the-password", check=False)
    assert res.returncode != 0 and "authentication failed" in res.stderr, res.stderr
    res = pgpool_psql("SELECT 1", None, check=False)
    assert res.returncode != 0, "pgpool-II let a TCP client in without a password"


def test_pgpool_socket_is_reachable_by_the_service_account_only():
    """The trusted Unix socket (PgBouncer's way in) sits in a 0700 directory: other local accounts cannot use it."""
    assert docker("exec", PROXY, "stat", "-c", "%a %U", "/run/pgpool").stdout.split() == ["700", "postgres"]
    dsn = "host=/run/pgpool port=9999 dbname=hingecraft user=hingecraft_app connect_timeout=10"
    res = docker("exec", "-u", "nobody", PROXY, "psql", "-XAtqw", dsn, "-c", "SELECT 1", check=False, timeout=30)
    assert res.returncode != 0 and "Permission denied" in res.stderr, res.stderr
    res = docker("exec", "-u", "postgres", PROXY, "psql", "-XAtqw", dsn, "-c", "SELECT 1", check=False, timeout=30)
    assert res.stdout.strip() == "1", res.stderr
