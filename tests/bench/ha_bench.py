"""HA benchmark (make bench-ha): failover RTO/RPO, 5,000 pooled connections, pgbench through the poolers.

Runs against the Molecule `ha` cluster (containers hc-mol-ha-*; `make bench-ha` creates and converges it, then
destroys it). Every client runs inside the project's containers (docker exec): no traffic leaves the host's
Docker network. Loops are bounded in count and time. Writes docs/bench/ha.json and docs/bench/ha.png.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from testlib import judge_samples

# What docs/bench/ha.md claims, judged at the end of every run (a failed figure makes the run exit 1).
TARGETS = {"rto_median_s_sync_max": 10.0, "rpo_lost_acked_sync": 0, "split_brain_samples": 0,
           "throughput_ratio_pooled_vs_direct_tpcb_min": 0.90}
NODES = ["hc-mol-ha-pg1", "hc-mol-ha-pg2", "hc-mol-ha-pg3"]
PROXY = "hc-mol-ha-proxy1"
CA = "/etc/hingecraft/pki/pgbouncer/ca.crt"
ADMIN_PASSFILE = "/var/lib/postgresql/.hc_pgpool.pgpass"


def log(msg):
    print(f"[bench-ha {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def docker(*args, check=True, timeout=600, password=None):
    """docker CLI; `password` reaches the container as PGPASSWORD through the environment, never the command line."""
    env = None
    if password is not None:
        env = dict(os.environ, PGPASSWORD=password)
        args = (args[0], "-e", "PGPASSWORD", *args[1:])
    res = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=timeout, env=env)
    if check and res.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:4])} ... exited {res.returncode}: {res.stderr.strip()[-1500:]}")
    return res


class Cluster:
    def __init__(self, secrets, inventory):
        self.secrets = pathlib.Path(secrets)
        self.inventory = inventory

    def secret(self, name):
        return (self.secrets / name).read_text(encoding="utf-8").split()[0]

    def node_sql(self, node, sql, db="postgres", check=True):
        return docker("exec", "-u", "postgres", node, "psql", "-XAtq", "-d", db, "-c", sql, check=check).stdout.strip()

    def bouncer_sql(self, sql, user="app_rw", db="appdb", port=6432):
        dsn = f"host=localhost port={port} dbname={db} user={user} sslmode=verify-full sslrootcert={CA}"
        return docker("exec", PROXY, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql,
                      password=self.secret(user)).stdout.strip()

    def running(self, node):
        return docker("inspect", "-f", "{{.State.Running}}", node).stdout.strip() == "true"

    def primaries(self):
        out = []
        for node in NODES:
            if self.running(node):
                res = docker("exec", "-u", "postgres", node, "psql", "-XAtq", "-c", "SELECT pg_is_in_recovery()",
                             check=False)
                if res.returncode == 0 and res.stdout.strip() == "f":
                    out.append(node)
        return out

    def healthy(self):
        prim = self.primaries()
        if len(prim) != 1:
            return None
        n = self.node_sql(prim[0], "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        return prim[0] if n == "2" else None

    def wait_healthy(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.healthy()
            if p:
                return p
            time.sleep(1)
        raise RuntimeError("cluster did not return to one primary + two streaming standbys")

    def playbook(self, name, *extra):
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
        res = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "-i", self.inventory,
                              str(ROOT / "playbooks" / name), *extra],
                             capture_output=True, text=True, env=env, timeout=900, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{res.stdout[-3000:]}")


def failover_trial(c, mode, table):
    """One trial: writer through PgBouncer, primary killed (docker stop -t 0), measure, rejoin."""
    old = c.wait_healthy()
    sync_names = "" if mode == "async" else None
    if sync_names is not None:
        for n in NODES:
            c.node_sql(n, "ALTER SYSTEM SET synchronous_standby_names = ''")
            c.node_sql(n, "SELECT pg_reload_conf()")
    c.bouncer_sql(f"CREATE TABLE IF NOT EXISTS {table} (n int NOT NULL)")
    docker("cp", str(ROOT / "tests/bench/ha_writer.py"), f"{PROXY}:/var/tmp/ha_writer.py")
    dsn = f"host=localhost port=6432 dbname=appdb user=app_rw sslmode=verify-full sslrootcert={CA}"
    proc = subprocess.Popen(
        ["docker", "exec", "-u", "postgres", "-e", "PGPASSWORD", "-e", f"HC_CA={CA}",
         "-e", f"HC_ADMIN_PASSFILE={ADMIN_PASSFILE}", PROXY, "python3", "/var/tmp/ha_writer.py", "--dsn", dsn,
         "--table", table, "--count", "100000", "--seconds", "40", "--interval", "0.01",
         "--nodes", ",".join(NODES)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PGPASSWORD=c.secret("app_rw")))
    time.sleep(5)
    killed_at = time.time()
    docker("stop", "-t", "0", old)
    stopped_at = time.time()  # `docker stop` returns once the container is dead
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(err[-2000:])
    res = json.loads(out)
    acked = {n for n, _unused in res["acked"]}
    times = sorted(t for _unused, t in res["acked"])
    # RTO as the client sees it: from the last write acknowledged by the old primary (it was alive then) to the
    # first write acknowledged after the old primary's container was dead. An upper bound on loss -> first write.
    last_ok = max((t for t in times if t <= stopped_at), default=killed_at)
    after = [t for t in times if t > stopped_at]
    present = set(map(int, c.bouncer_sql(f"SELECT n FROM {table}").split()))
    lost = len(acked - present)
    split = sum(1 for s in res["samples"] if len(s[1]) > 1)
    sampler_problems, sampler = judge_samples(res["samples"], NODES, min_samples=10)
    rto = (after[0] - last_ok) if after else None
    new = c.primaries()
    log(f"{mode} trial: primary {old} killed, new primary {new}, RTO {rto if rto is None else round(rto, 2)} s, "
        f"acked {len(acked)}, lost {lost}, split-brain samples {split}")
    c.bouncer_sql(f"DROP TABLE {table}")
    docker("cp", str(ROOT / "molecule/ha/files/standby.signal"), f"{old}:/var/lib/postgresql/17/main/standby.signal")
    docker("start", old)
    time.sleep(5)
    c.playbook("rejoin.yml", "-e", f"replication_rejoin_host={old}")
    if sync_names is not None:
        for n in NODES:
            c.node_sql(n, "ALTER SYSTEM RESET synchronous_standby_names")
            c.node_sql(n, "SELECT pg_reload_conf()")
    c.wait_healthy()
    return {"mode": mode, "killed": old, "new_primary": new[0] if new else None, "rto_s": rto,
            "stop_seconds": round(stopped_at - killed_at, 2),
            "acked": len(acked), "lost_acked": lost, "split_brain_samples": split, "errors": len(res["errors"]),
            "sampler": sampler, "sampler_problems": sampler_problems}


HOLD = r"""
import asyncio, os, sys, time
import psycopg
N = int(sys.argv[1]); DSN = sys.argv[2]
async def one(i, conns, sem):
    async with sem:
        conn = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
        await conn.execute("SELECT 1")
        conns.append(conn)
async def main():
    conns, sem = [], asyncio.Semaphore(100)
    t0 = time.time()
    results = await asyncio.gather(*(one(i, conns, sem) for i in range(N)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception)]
    print(f"OPEN {len(conns)} {len(failed)} {time.time() - t0:.1f} {failed[0] if failed else ''}", flush=True)
    sys.stdin.readline()
    for c in conns:
        await c.close()
asyncio.run(main())
"""


def hold_connections(c, n):
    """n client connections held open through PgBouncer while counting server-side backends."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(HOLD)
    docker("cp", fh.name, f"{PROXY}:/var/tmp/ha_hold.py")
    os.unlink(fh.name)
    dsn = "host=localhost port=6432 dbname=appdb user=app_rw sslmode=require"
    proc = subprocess.Popen(["docker", "exec", "-i", "-e", "PGPASSWORD", PROXY, "bash", "-c",
                             f"ulimit -n 20000 && exec python3 /var/tmp/ha_hold.py {n} '{dsn}'"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PGPASSWORD=c.secret("app_rw")))
    line = proc.stdout.readline().split()
    opened, failed, secs = int(line[1]), int(line[2]), float(line[3])
    pools = docker("exec", "-u", "postgres", PROXY, "psql", "-XA", "-F", "|", "-P", "footer=off", "-h",
                   "/var/run/postgresql", "-p", "6432", "-U", "postgres", "pgbouncer", "-c", "SHOW POOLS").stdout
    lines = pools.splitlines()
    header = lines[0].split("|")
    clients = servers = 0
    for row in lines[1:]:
        f = dict(zip(header, row.split("|"), strict=False))
        if f.get("database") == "appdb":
            clients += int(f["cl_active"]) + int(f["cl_waiting"])
            servers += sum(int(f.get(k, 0)) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
    prim = c.primaries()[0]
    backends = int(c.node_sql(prim, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'appdb'"))
    proc.communicate(input="\n", timeout=300)
    log(f"{opened} connections held ({failed} failed, {secs:.1f} s to open); PgBouncer clients {clients}, "
        f"server connections {servers}; appdb backends on the primary {backends}")
    return {"requested": n, "opened": opened, "failed": failed, "open_seconds": secs, "pgbouncer_clients": clients,
            "pgbouncer_server_connections": servers, "primary_backends_appdb": backends}


def pgbench(c, target, clients, seconds, select_only):
    hosts = {"pooled": ("localhost", 6432), "pgpool": ("localhost", 9999), "direct": (c.primaries()[0], 5432)}
    host, port = hosts[target]
    args = ["pgbench", "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-M", "simple"]
    if select_only:
        args.append("-S")
    dsn = f"host={host} port={port} dbname=appdb user=app_rw sslmode=verify-full sslrootcert={CA}"
    res = docker("exec", PROXY, *args, dsn, timeout=seconds + 120, password=c.secret("app_rw"))
    # PostgreSQL 17's pgbench prints one line: "tps = N (without initial connection time)"
    tps = next(float(line.split("=")[1].split()[0]) for line in res.stdout.splitlines() if line.startswith("tps ="))
    log(f"pgbench {'select-only' if select_only else 'tpcb-like'} {target} c={clients}: {tps:.0f} tps")
    return tps


def plot(result, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot (pip install -r requirements-bench.txt)")
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    trials = result["failover"]["trials"]
    ax = axes[0]
    for mode, colour in (("sync", "tab:blue"), ("async", "tab:orange")):
        ys = [t["rto_s"] for t in trials if t["mode"] == mode and t["rto_s"] is not None]
        lost = [t["lost_acked"] for t in trials if t["mode"] == mode]
        lost_label = "unknown" if any(v is None for v in lost) else sum(lost)
        ax.scatter(range(1, len(ys) + 1), ys, label=f"{mode} (lost acked: {lost_label})", color=colour)
    ax.axhline(10, color="red", linestyle="--", label="target 10 s")
    ax.set_title("Failover RTO per trial (primary killed)")
    ax.set_xlabel("trial")
    ax.set_ylabel("seconds to first write through PgBouncer")
    ax.legend()
    ax = axes[1]
    tp = result["throughput"]
    labels = list(tp)
    ax.bar(labels, [tp[k] for k in labels], color="tab:green")
    ax.set_title("pgbench tps (100 clients unless noted)")
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax = axes[2]
    conn = result["connections"]
    ax.bar(["client conns\nheld", "PgBouncer\nserver conns", "primary\nbackends"],
           [conn["opened"], conn["pgbouncer_server_connections"], conn["primary_backends_appdb"]],
           color="tab:purple")
    ax.set_yscale("log")
    ax.set_title("Connections (log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"plot written to {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secrets", required=True)
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--sync-trials", type=int, default=5)
    ap.add_argument("--async-trials", type=int, default=2)
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--pgbench-seconds", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "docs/bench/ha.json"))
    args = ap.parse_args()
    c = Cluster(args.secrets, args.inventory)
    c.wait_healthy()
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": "make bench-ha", "host": "2 cores shared; all nodes are containers on one machine"}

    log("pgbench: initialising scale 10 through pgpool")
    docker("cp", f"{NODES[1]}:/usr/lib/postgresql/17/bin/pgbench", "/tmp/hc_ha_pgbench")
    docker("cp", "/tmp/hc_ha_pgbench", f"{PROXY}:/usr/local/bin/pgbench")
    dsn = f"host=localhost port=9999 dbname=appdb user=app_rw sslmode=verify-full sslrootcert={CA}"
    docker("exec", PROXY, "pgbench", "-i", "-q", "-s", "10", dsn, password=c.secret("app_rw"))
    c.wait_healthy()
    result["loadavg_1m_before_pgbench"] = round(os.getloadavg()[0], 2)
    tp = {}
    # pgpool serves num_init_children (40) clients at once, and PgBouncer keeps up to 25 idle server connections
    # to it after a pooled run: read scaling through pgpool alone is measured first, with 16 clients.
    for target in ("direct", "pgpool"):
        tp[f"select-only {target} c=16"] = pgbench(c, target, 16, args.pgbench_seconds, True)
    for target in ("direct", "pooled"):
        tp[f"tpcb {target}"] = pgbench(c, target, 100, args.pgbench_seconds, False)
    for target in ("direct", "pooled"):
        tp[f"select-only {target}"] = pgbench(c, target, 100, args.pgbench_seconds, True)
    result["throughput"] = tp
    result["throughput_ratio_pooled_vs_direct_tpcb"] = round(tp["tpcb pooled"] / tp["tpcb direct"], 3)
    result["throughput_ratio_pooled_vs_direct_select"] = round(tp["select-only pooled"] / tp["select-only direct"], 3)
    result["read_scaling_ratio_pgpool_vs_primary"] = round(
        tp["select-only pgpool c=16"] / tp["select-only direct c=16"], 3)

    result["connections"] = hold_connections(c, args.connections)

    out = pathlib.Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    trials = []
    plan = [("sync", f"bench_fo_{i}") for i in range(args.sync_trials)]
    plan += [("async", f"bench_fo_async_{i}") for i in range(args.async_trials)]
    for mode, table in plan:
        load = os.getloadavg()[0]
        try:
            trial = failover_trial(c, mode, table)
        except (RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            # a failed trial is a result too: record it and stop (the cluster state is unknown)
            log(f"{mode} trial {table} FAILED: {exc}")
            # unknown is null, never zero: a failed trial proves neither "no loss" nor "no split brain"
            trials.append({"mode": mode, "table": table, "error": str(exc)[-1500:], "rto_s": None,
                           "lost_acked": None, "split_brain_samples": None, "loadavg_1m": load})
            result["failover_aborted"] = True
            break
        trial["loadavg_1m"] = round(load, 2)
        trials.append(trial)
    rtos = [t["rto_s"] for t in trials if t["mode"] == "sync" and t["rto_s"] is not None]

    def total(key, mode=None):
        """Sum over the trials, or None when any counted trial failed (its figure is unknown)."""
        vals = [t[key] for t in trials if mode is None or t["mode"] == mode]
        return None if any(v is None for v in vals) else sum(vals)

    result["failover"] = {
        "trials": trials,
        "rto_median_s_sync": round(statistics.median(rtos), 2) if rtos else None,
        "rto_max_s_sync": round(max(rtos), 2) if rtos else None,
        "rpo_lost_acked_sync": total("lost_acked", "sync"),
        "rpo_lost_acked_async": total("lost_acked", "async"),
        "split_brain_samples": total("split_brain_samples"),
    }
    result["failover"]["failed_trials"] = sum(1 for t in trials if "error" in t)
    result["ended"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["verdict"] = judge(result, args.sync_trials + args.async_trials)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log(f"results written to {out}")
    plot(result, out.with_suffix(".png"))
    failed = {k: v for k, v in result["verdict"].items() if not v["met"]}
    for name, v in result["verdict"].items():
        log(f"{'met    ' if v['met'] else 'NOT MET'} {name}: {v['value']} (target {v['target']})")
    return 1 if failed else 0


def judge(result, planned_trials):
    """Each claimed target and safety figure: {name: {value, target, met}}; unknown (None) is never met."""
    fo = result["failover"]
    trials = fo["trials"]
    problems = [p for t in trials for p in t.get("sampler_problems", [])]

    def entry(value, target, met):
        return {"value": value, "target": target, "met": bool(met) and value is not None}
    ratio = result.get("throughput_ratio_pooled_vs_direct_tpcb")
    return {
        "failover trials completed": entry(len(trials) - fo["failed_trials"], planned_trials,
                                           fo["failed_trials"] == 0 and len(trials) == planned_trials),
        "RTO median (sync), s": entry(fo["rto_median_s_sync"], f"<= {TARGETS['rto_median_s_sync_max']}",
                                      fo["rto_median_s_sync"] is not None
                                      and fo["rto_median_s_sync"] <= TARGETS["rto_median_s_sync_max"]),
        "RPO lost acknowledged (sync)": entry(fo["rpo_lost_acked_sync"], TARGETS["rpo_lost_acked_sync"],
                                              fo["rpo_lost_acked_sync"] == TARGETS["rpo_lost_acked_sync"]),
        "split-brain samples": entry(fo["split_brain_samples"], TARGETS["split_brain_samples"],
                                     fo["split_brain_samples"] == TARGETS["split_brain_samples"]),
        "split-brain sampler saw the cluster": entry(problems or "ok", "no sampler problems", not problems),
        "connections opened": entry(result["connections"].get("opened"), result["connections"].get("requested"),
                                    result["connections"].get("failed") == 0),
        "TPC-B pooled / direct": entry(ratio, f">= {TARGETS['throughput_ratio_pooled_vs_direct_tpcb_min']}",
                                       ratio is not None
                                       and ratio >= TARGETS["throughput_ratio_pooled_vs_direct_tpcb_min"]),
    }


if __name__ == "__main__":
    sys.exit(main())
