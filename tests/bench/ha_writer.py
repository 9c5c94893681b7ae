"""Bounded writer and split-brain sampler for the HA tests and benchmark.

Runs INSIDE the proxy container (python3-psycopg is there): it commits numbered rows through PgBouncer and, in
a second thread, samples every backend's pg_is_in_recovery() as the admin role. Bounded by --count rows and
--seconds wall time. Prints one JSON document: acknowledged row numbers with their commit times, errors, and
the samples (time, nodes out of recovery, errors per node that did not answer).
"""

import argparse
import json
import os
import threading
import time

import psycopg
from psycopg import sql


def sample(nodes, admin, stop, out, period):
    """One sample per period: [time, nodes out of recovery, {node: error} for the nodes that did not answer].

    Errors are recorded, not swallowed: a sampler that cannot reach the nodes must not look like "no split
    brain". Any exception (not only psycopg's) is kept for the node, so a broken sampler shows in the samples.
    """
    while not stop.is_set():
        at = time.time()
        primaries, failed = [], {}
        for node in nodes:
            try:
                with psycopg.connect(
                    host=node, port=5432, dbname="postgres", user=admin, sslmode="verify-full",
                    sslrootcert=os.environ["HC_CA"], passfile=os.environ["HC_ADMIN_PASSFILE"],
                    connect_timeout=1, autocommit=True,
                ) as conn:
                    if not conn.execute(sql.SQL("SELECT pg_is_in_recovery()")).fetchone()[0]:
                        primaries.append(node)
            except Exception as exc:  # noqa: BLE001 - every failure is evidence, recorded per node
                text = str(exc).strip()
                failed[node] = text.splitlines()[0] if text else type(exc).__name__
        out.append([at, primaries, failed])
        stop.wait(period)


def write(dsn, table, count, seconds, interval, password=None):
    acked, errors = [], []
    conn = None
    n = 1
    deadline = time.monotonic() + seconds
    insert = sql.SQL("INSERT INTO {} (n) VALUES (%s)").format(sql.Identifier(table))
    while n <= count and time.monotonic() < deadline:
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(dsn, autocommit=True, connect_timeout=2, password=password)
            conn.execute(insert, [n])
            acked.append([n, time.time()])
            n += 1
            time.sleep(interval)
        except psycopg.Error as exc:
            errors.append([time.time(), str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__])
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.1)
    if conn is not None:
        conn.close()
    return acked, errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--table", default="ha_probe")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--nodes", default="")
    ap.add_argument("--admin", default="postgres")
    ap.add_argument("--sample-period", type=float, default=0.5)
    args = ap.parse_args()
    # The writer's password arrives as PGPASSWORD; libpq prefers that variable to any passfile, so left in the
    # environment it would be sent as the admin's password by every sampler connection (and every sample would
    # fail). It is taken out of the environment and given to the writer's connections only.
    password = os.environ.pop("PGPASSWORD", None)
    samples, stop = [], threading.Event()
    sampler = None
    if args.nodes:
        sampler = threading.Thread(
            target=sample, args=(args.nodes.split(","), args.admin, stop, samples, args.sample_period), daemon=True
        )
        sampler.start()
    started = time.time()
    acked, errors = write(args.dsn, args.table, args.count, args.seconds, args.interval, password)
    stop.set()
    if sampler is not None:
        sampler.join(timeout=10)
    print(json.dumps({"started": started, "ended": time.time(), "acked": acked, "errors": errors,
                      "samples": samples}))


if __name__ == "__main__":
    main()
