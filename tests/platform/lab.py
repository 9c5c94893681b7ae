"""The running lab (make lab), as the platform acceptance suite sees it.

Everything here talks to the project's own containers: `docker exec` into them, or the one port the lab publishes
on loopback (PgBouncer, 127.0.0.1:6432, TLS verify-full against the lab CA). Every wait has a deadline.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from molecule_check import changed_tasks, parse_recap
from testlib import container_running as running
from testlib import docker, run_playbook

__all__ = ["changed_tasks", "docker", "running"]
INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"
SECRETS = ROOT / ".lab" / "secrets"
CA = ROOT / ".lab" / "pki" / "ca.crt"
NETWORK = "hingecraft-lab"


def _hosts():
    inv = yaml.safe_load(INVENTORY.read_text())
    groups = {}
    for group, body in inv["all"]["children"].items():
        groups[group] = {h: (v or {}).get("ansible_host", h) for h, v in (body.get("hosts") or {}).items()}
    return groups


GROUPS = _hosts()
NODES = GROUPS["postgresql"]  # inventory name -> container
PROXY = next(iter(GROUPS["proxy"].values()))
ALL_CONTAINERS = sorted({c for g in GROUPS.values() for c in g.values()})
MON = next(iter(GROUPS["monitoring"].values()))  # the Prometheus + Alertmanager container


def secret(name: str) -> str:
    return (SECRETS / name).read_text().strip()


def node_sql(node: str, query: str, timeout: float = 15, check: bool = True, db: str = "postgres") -> str:
    """One value from a node's PostgreSQL, as postgres over its Unix socket (inside the container)."""
    res = docker("exec", "-u", "postgres", NODES[node], "psql", "-XAtqw", "-d", db,
                 "-v", "ON_ERROR_STOP=1", "-c", f"SET statement_timeout = '{int(timeout)}s'; {query}",
                 timeout=timeout + 10, check=check)
    return res.stdout.strip()


def node_state(node: str) -> tuple[bool, int] | None:
    """(in_recovery, timeline) of a node's server, or None when it does not answer."""
    if not running(NODES[node]):
        return None
    res = docker("exec", "-u", "postgres", NODES[node], "psql", "-XAtqw", "-d", "postgres", "-c",
                 "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN 0 ELSE "
                 "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END",
                 timeout=15, check=False)
    if res.returncode != 0 or "|" not in res.stdout:
        return None
    rec, tl = res.stdout.strip().split("|")
    return rec == "t", int(tl)


def writable_primaries() -> list[str]:
    return sorted(n for n in NODES if (st := node_state(n)) is not None and not st[0])


def pcp_nodes() -> list[dict]:
    """pgpool's view: one dict per backend (host, status up/down, role), parsed from `pcp_node_info -a`."""
    res = docker("exec", "-u", "postgres", PROXY, "pcp_node_info", "-h", "localhost", "-U", "pcpadmin", "-w",
                 "-a", timeout=20, check=False)
    if res.returncode != 0:
        return []
    nodes = []
    for line in res.stdout.splitlines():
        f = line.split()
        if len(f) >= 7:
            nodes.append({"host": f[0], "status": "up" if f[2] in ("1", "2") else "down", "role": f[6]})
    return nodes


def streaming_standbys(primary: str) -> set[str]:
    out = node_sql(primary, "SELECT string_agg(application_name, ',') FROM pg_stat_replication "
                            "WHERE state = 'streaming'", check=False)
    return set(filter(None, out.split(",")))


def healthy() -> tuple[bool, str]:
    """Exactly one writable primary, the other nodes streaming from it, pgpool with every node up and that
    primary as its primary. Returns (ok, description of the state)."""
    prim = writable_primaries()
    pcp = pcp_nodes()
    desc = f"primaries={prim} pgpool={[(n['host'], n['status'], n['role']) for n in pcp]}"
    if len(prim) != 1:
        return False, desc
    standbys = streaming_standbys(prim[0])
    desc += f" streaming={sorted(standbys)}"
    others = set(NODES) - {prim[0]}
    ok = (standbys >= others and len(pcp) == len(NODES) and all(n["status"] == "up" for n in pcp)
          and [n["host"] for n in pcp if n["role"] == "primary"] == [prim[0]])
    return ok, desc


def wait_for(predicate, seconds: float, what: str, period: float = 1.0):
    """Poll until predicate() is truthy (returns it) or fail after `seconds`, saying what was awaited."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if (last[0] if isinstance(last, tuple) else last):
            return last
        time.sleep(period)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}; last: {last}")


def wait_healthy(seconds: float, what: str) -> float:
    """Wait for healthy(); return how long it took."""
    started = time.monotonic()
    wait_for(healthy, seconds, what, period=1.0)
    return time.monotonic() - started


def bouncer_dsn(user: str = "hingecraft_app", dbname: str = "hingecraft") -> str:
    return (f"host=127.0.0.1 port=6432 dbname={dbname} user={user} sslmode=verify-full sslrootcert={CA} "
            "connect_timeout=3 keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3 "
            "application_name=hc_platform_suite")


def bouncer_password() -> str:
    return secret("hingecraft_app")


def playbook(name: str, *extra: str, timeout: float = 1800) -> tuple[int, dict, str]:
    """Run playbooks/<name> against the lab inventory; return (rc, recap per host, output)."""
    res = run_playbook(str(INVENTORY), name, *extra, timeout=timeout, check=False)
    return res.returncode, parse_recap(res.stdout), res.stdout + res.stderr


_FETCH = r"""
import sys, urllib.parse, urllib.request
url = sys.argv[1]
if len(sys.argv) > 2:
    url += "?" + urllib.parse.urlencode({"query": sys.argv[2]})
with urllib.request.urlopen(url, timeout=10) as r:
    sys.stdout.write(r.read().decode())
"""


def prometheus(path: str, query: str | None = None) -> dict:
    """Prometheus' HTTP API on the monitoring host (it listens on that host's loopback only)."""
    args = ["exec", MON, "python3", "-c", _FETCH, "http://127.0.0.1:9090" + path] + ([query] if query else [])
    return json.loads(docker(*args, timeout=30).stdout)


def prometheus_values(query: str) -> list[float]:
    """The values of an instant query's series (empty when nothing matches)."""
    return [float(r["value"][1]) for r in prometheus("/api/v1/query", query)["data"]["result"]]
