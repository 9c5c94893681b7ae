"""Redis benchmark on a running lab (make lab): the figures of the Redis issue, measured side by side in one run.

1. GET latency at a paced rate (default 1,000 ops/s for 10 s) over verified TLS as the `app` user, from this host
   to the cache master found through the Sentinels (the lab network is this machine's bridge: loopback-equivalent).
2. A hot member-profile read: the database path of examples/hingecraft_cache.py (PgBouncer -> pgpool-II ->
   PostgreSQL, tenant set per transaction) against the same read served by the cache, same pacing, same run.
3. HC_REDIS_TRIALS (5) trials each of SIGKILL and of a network partition of the cache master under WAIT-acknowledged
   writes through the master-following endpoint (tests/helpers/redis_cluster.py, as the platform suite runs them):
   seconds until writes resume, acknowledged writes lost, un-acknowledged writes that survived.

Writes docs/bench/redis.json and docs/bench/redis.svg. Every client call has a socket timeout; every trial a deadline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import sys
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "platform"), str(ROOT / "tests" / "helpers"), str(ROOT / "examples")]

import hingecraft_cache as hc
import lab
import psycopg
from redis.sentinel import Sentinel
from redis_cluster import RedisCluster

PORT, ENDPOINT, SENTINEL = 6379, 16379, 26379
TENANT = "acme"
MEMBER_READ_RATE = 50.0


def percentiles(samples: list[float]) -> dict:
    q = statistics.quantiles(samples, n=1000)

    def ms(seconds: float) -> float:
        return round(seconds * 1000, 3)

    return {"n": len(samples), "p50_ms": ms(q[499]), "p95_ms": ms(q[949]), "p99_ms": ms(q[989]),
            "max_ms": ms(max(samples))}


def paced(op, rate: float, seconds: float) -> dict:
    """Call op() `rate` times a second for `seconds` (open loop: each call has its slot; a late call is timed from
    its slot, so queueing behind a slow call counts against the latency, as a client at that rate would see it)."""
    interval, samples = 1.0 / rate, []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        slot = start + i * interval
        while (now := time.perf_counter()) < slot:
            if slot - now > 0.0005:
                time.sleep(slot - now - 0.0003)
        op()
        samples.append(time.perf_counter() - slot)
    elapsed = time.perf_counter() - start
    return {**percentiles(samples), "target_ops_s": rate, "achieved_ops_s": round(len(samples) / elapsed, 1)}


def clients():
    tls = {"ssl": True, "ssl_ca_certs": str(lab.CA), "ssl_check_hostname": True, "ssl_cert_reqs": "required",
           "username": "app", "password": lab.secret("redis_app"), "socket_timeout": 3, "socket_connect_timeout": 3}
    cluster = RedisCluster(sorted(lab.GROUPS["redis"].values()), lambda user: lab.secret(f"redis_{user}"),
                           sentinel_port=SENTINEL)
    sentinel = Sentinel([(ip, SENTINEL) for ip in cluster.ips.values()], sentinel_kwargs=tls, **tls)
    return cluster, sentinel.master_for("cache")


def get_latency(redis, rate: float, seconds: float) -> dict:
    k = f"bench:get:{uuid.uuid4().hex}"
    redis.set(k, "x" * 512, ex=600)
    for _warm in range(200):
        redis.get(k)
    result = paced(lambda: redis.get(k), rate, seconds)
    back_to_back = []
    for _get in range(5000):  # one after the other: the service time, without the pacing
        t0 = time.perf_counter()
        redis.get(k)
        back_to_back.append(time.perf_counter() - t0)
    redis.delete(k)
    return {**result, "value_bytes": 512, "back_to_back": percentiles(back_to_back)}


def member_read(redis, rate: float, seconds: float) -> dict:
    """The same member profile read from the database and from the cache, one after the other, same pacing."""
    prim = lab.writable_primaries()
    assert len(prim) == 1, f"expected one primary, found {prim}"
    mid = int(time.time() * 1000) * 1000 + 11
    lab.node_sql(prim[0], f"INSERT INTO app.members (member_id, tenant_id, country, email, display_name) VALUES "
                          f"({mid}, '{TENANT}', 'DE', 'bench-{mid}@example.org', 'Bench {mid}')", db="hingecraft")
    for node in lab.NODES:  # reads through the pooler may go to either standby
        lab.wait_for(lambda n=node: lab.node_sql(n, f"SELECT count(*) FROM app.members WHERE member_id = {mid}",
                                                 db="hingecraft") == "1", 30, f"member {mid} on {node}")
    dsn = lab.bouncer_dsn(user="app_rw_login")
    with psycopg.connect(dsn, password=lab.secret("pg_app_rw_login"), autocommit=True) as db:
        cache = hc.Cache(redis, db)
        k = hc.key("member", TENANT, mid)

        def from_db():
            redis.delete(k)
            cache._query(TENANT, hc.MEMBER_SQL, (mid,), one=True)  # the loader the cache calls on a miss

        def from_cache():
            assert cache.member_profile(TENANT, mid)["member_id"] == mid

        # 50 reads/s: a rate the database path sustains on the lab, so that its percentiles are service times
        # rather than a queue (the loop is open: a read slower than its slot delays the next ones)
        database = paced(from_db, MEMBER_READ_RATE, seconds)
        cache.member_profile(TENANT, mid)
        cached = paced(from_cache, MEMBER_READ_RATE, seconds)
        redis.delete(k)
    return {"database": database, "cache": cached,
            "p95_speedup": round(database["p95_ms"] / cached["p95_ms"], 1),
            "note": "database: the loader's transaction through PgBouncer (TLS) -> pgpool-II -> PostgreSQL, "
                    "set_tenant then the member query, plus one DEL of the entry; cache: the same call served "
                    "by a GET over TLS from the Sentinel-discovered master; 50 reads/s each, one after the other"}


def trials(cluster: RedisCluster, count: int) -> dict:
    out = {"sigkill": [], "partition": []}
    for i in range(count):
        for kind in ("sigkill", "partition"):
            prefix = f"bench-{kind}:{uuid.uuid4().hex[:8]}:"
            if kind == "sigkill":
                s = cluster.sigkill_master_trial("cache", PORT, ENDPOINT, prefix, seconds=40, rejoin_s=180, warmup_s=60)
            else:
                s = cluster.partition_master_trial("cache", PORT, ENDPOINT, prefix, lab.NETWORK, seconds=40,
                                                   rejoin_s=180, warmup_s=60)
            s.pop("first_errors_after_fault", None)
            print(f"trial {i + 1}/{count} {kind}: writes resumed after {s['seconds_until_writes_resume']} s, "
                  f"{s['acknowledged_lost']} of {s['acknowledged']} acknowledged lost", flush=True)
            out[kind].append(s)
    summary = {}
    for kind, rows in out.items():
        resume = [r["seconds_until_writes_resume"] for r in rows]
        summary[kind] = {"trials": len(rows), "resume_median_s": round(statistics.median(resume), 2),
                         "resume_max_s": max(resume), "acknowledged": sum(r["acknowledged"] for r in rows),
                         "acknowledged_lost": sum(r["acknowledged_lost"] for r in rows),
                         "unacknowledged": sum(r["unacknowledged"] for r in rows),
                         "unacknowledged_present": sum(r["unacknowledged_present"] for r in rows), "runs": rows}
    return summary


def svg(result: dict) -> str:
    w, h = 760, 300
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             ('<text x="10" y="18" font-size="14">Redis on the lab: read latency (ms, log scale) and failover '
              '(s until WAIT-acknowledged writes resume)</text>')]
    bars = [("GET p99", result["get"]["p99_ms"]), ("cache p95", result["member_read"]["cache"]["p95_ms"]),
            ("db p95", result["member_read"]["database"]["p95_ms"])]
    for i, (label, value) in enumerate(bars):
        x, bh = 30 + i * 100, 60 * (math.log10(max(value, 0.01)) + 2)  # 0.01 ms .. 100 ms
        parts += [f'<rect x="{x}" y="{250 - bh:.0f}" width="60" height="{bh:.0f}" fill="#4477aa"/>',
                  f'<text x="{x}" y="{245 - bh:.0f}">{value}</text>', f'<text x="{x - 5}" y="268">{label}</text>']
    for j, kind in enumerate(("sigkill", "partition")):
        runs = result.get("trials", {}).get(kind, {}).get("runs", [])
        for i, r in enumerate(runs):
            v = r["seconds_until_writes_resume"]
            x, bh = 380 + j * 190 + i * 34, 9 * v
            parts += [f'<rect x="{x}" y="{250 - bh:.0f}" width="26" height="{bh:.0f}" fill="#cc6677"/>',
                      f'<text x="{x}" y="{245 - bh:.0f}" font-size="10">{v}</text>']
        parts.append(f'<text x="{380 + j * 190}" y="268">{kind} trials</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--trials", type=int, default=int(os.environ.get("HC_REDIS_TRIALS", "5")))
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench" / "redis.json"))
    args = parser.parse_args()
    cluster, redis = clients()
    result = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
              "get": get_latency(redis, args.rate, args.seconds)}
    print("GET:", result["get"], flush=True)
    result["member_read"] = member_read(redis, args.rate, args.seconds)
    print("member read:", {k: v for k, v in result["member_read"].items() if k != "note"}, flush=True)
    if args.trials:
        result["trials"] = trials(cluster, args.trials)
        print("trials:", {k: {x: y for x, y in v.items() if x != "runs"} for k, v in result["trials"].items()})
    result["targets"] = {"get_p99_below_1ms": result["get"]["p99_ms"] < 1.0,
                         "cache_p95_5x_faster": result["member_read"]["p95_speedup"] >= 5}
    if args.trials:
        result["targets"].update({
            "sigkill_resume_median_le_5s": result["trials"]["sigkill"]["resume_median_s"] <= 5,
            "partition_resume_median_le_10s": result["trials"]["partition"]["resume_median_s"] <= 10,
            "no_acknowledged_write_lost": all(v["acknowledged_lost"] == 0 for v in result["trials"].values())})
    out = pathlib.Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".svg").write_text(svg(result))
    print(f"wrote {out} and {out.with_suffix('.svg')}; targets: {result['targets']}")


if __name__ == "__main__":
    main()
