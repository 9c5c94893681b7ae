"""Backup benchmark on the `backup` Molecule scenario's containers (make bench-backup converges them first).

Measures, with the real pgBackRest setup (TLS repository host, aes-256-cbc, lz4, async archiving):
  * full backup throughput of a pgbench database of about 1 GB (pgbench -i -s SCALE);
  * restore throughput onto the scratch host, and the time from restore start to accepting connections;
  * WAL archive lag (segments and seconds behind the current WAL position) while pgbench writes, and the time
    the archive needs to catch up once the load stops.
Every command runs inside the project's own containers (docker exec); loops are bounded in count and time.
Writes docs/bench/backup.json and docs/bench/backup.svg.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEGMENT = 16 * 1024 * 1024


def sh(container, script, user="postgres", timeout=1800, check=True):
    cmd = ["docker", "exec", "-u", user, container, "bash", "-c", script]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{container}: {script}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip()


def psql(container, sql, db="postgres"):
    return sh(container, f"psql -XAtq -v ON_ERROR_STOP=1 -d {db} -c \"{sql}\"")


def timed(fn):
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def segment_number(name):
    return int(name[8:16], 16) * (0x100000000 // SEGMENT) + int(name[16:24], 16)


def archive_sample(pg):
    row = psql(
        pg,
        "SELECT pg_walfile_name(pg_current_wal_lsn()), coalesce(last_archived_wal, ''), "
        "coalesce(extract(epoch FROM now() - last_archived_time), 0), archived_count, failed_count "
        "FROM pg_stat_archiver",
    )
    current, archived, age, count, failed = row.split("|")
    lag = segment_number(current) - segment_number(archived) if archived else None
    return {"current": current, "archived": archived, "lag_segments": lag,
            "last_archived_age_s": round(float(age), 2), "archived_count": int(count), "failed_count": int(failed)}


def bench(args):
    pg, repo, restore = args.pg, args.repo, args.restore
    result = {"scale": args.scale, "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    result["pgbackrest"] = sh(repo, "pgbackrest version")

    psql(pg, "DROP DATABASE IF EXISTS bench")
    psql(pg, "CREATE DATABASE bench")
    secs, _out = timed(lambda: sh(pg, f"pgbench -q -i -s {args.scale} bench", timeout=3600))
    result["pgbench_init_s"] = round(secs, 1)
    psql(pg, "CHECKPOINT")
    size = int(psql(pg, "SELECT sum(pg_database_size(datname)) FROM pg_database"))
    result["cluster_bytes"] = size
    print(f"cluster {size / 1e9:.2f} GB after pgbench -i -s {args.scale} ({secs:.0f} s)", flush=True)

    secs, _out = timed(lambda: sh(repo, "pgbackrest --stanza=main --type=full backup", timeout=3600))
    info = json.loads(sh(repo, "pgbackrest --stanza=main --output=json info"))[0]
    last = info["backup"][-1]
    result["backup"] = {
        "type": "full", "seconds": round(secs, 1), "db_bytes": last["info"]["size"],
        "repo_bytes": last["info"]["repository"]["size"],
        "throughput_mb_s": round(last["info"]["size"] / secs / 1e6, 1),
        "compression_ratio": round(last["info"]["size"] / max(last["info"]["repository"]["size"], 1), 2),
    }
    print("full backup:", result["backup"], flush=True)

    target = "/var/lib/postgresql/bench-restore"
    sh(restore, f"rm -rf {target}; install -d -m 0700 {target}", user="root")
    sh(restore, f"chown postgres:postgres {target}", user="root")
    start = time.monotonic()
    sh(restore, f"pgbackrest --stanza=main --pg1-path={target} --archive-mode=off --type=immediate "
                f"--target-action=promote restore", timeout=3600)
    restore_s = time.monotonic() - start
    sh(restore, f"printf \"port = 5498\\nlisten_addresses = ''\\nunix_socket_directories = '{target}'\\n"
                f"archive_mode = off\\nhot_standby = off\\nshared_buffers = 128MB\\n\" > {target}/postgresql.conf; "
                f"echo 'local all postgres peer' > {target}/pg_hba.conf; : > {target}/pg_ident.conf")
    sh(restore, f"/usr/lib/postgresql/17/bin/pg_ctl -D {target} -l {target}/log -t 600 start")
    deadline = time.monotonic() + 600
    while True:
        ok = sh(restore, f"psql -XAtq -h {target} -p 5498 -d postgres -c 'SELECT NOT pg_is_in_recovery()'",
                check=False)
        if ok == "t":
            break
        if time.monotonic() > deadline:
            raise SystemExit("restore drill: the restored cluster did not accept read-write connections in 600 s")
        time.sleep(0.5)
    ready_s = time.monotonic() - start
    rows = sh(restore, f"psql -XAtq -h {target} -p 5498 -d bench -c 'SELECT count(*) FROM pgbench_accounts'")
    sh(restore, f"/usr/lib/postgresql/17/bin/pg_ctl -D {target} -m fast stop; rm -rf {target}")
    result["restore"] = {
        "seconds": round(restore_s, 1), "throughput_mb_s": round(result["backup"]["db_bytes"] / restore_s / 1e6, 1),
        "to_accepting_connections_s": round(ready_s, 1), "pgbench_accounts_rows": int(rows),
    }
    print("restore:", result["restore"], flush=True)

    samples = []
    load = {}

    def run_load():
        out = sh(pg, f"pgbench -n -c {args.clients} -j 2 -T {args.load_seconds} bench", timeout=args.load_seconds + 120)
        load["tps"] = float(next(line for line in out.splitlines() if line.startswith("tps")).split()[2])

    thread = threading.Thread(target=run_load)
    t0 = time.monotonic()
    thread.start()
    while thread.is_alive() and time.monotonic() - t0 < args.load_seconds + 60:
        sample = archive_sample(pg)
        sample["t"] = round(time.monotonic() - t0, 1)
        samples.append(sample)
        time.sleep(2)
    thread.join(timeout=120)
    end_segment = psql(pg, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    psql(pg, "SELECT pg_switch_wal()")
    catch_start = time.monotonic()
    caught_up = None
    while time.monotonic() - catch_start < 300:
        sample = archive_sample(pg)
        sample["t"] = round(time.monotonic() - t0, 1)
        samples.append(sample)
        if sample["archived"] and segment_number(sample["archived"]) >= segment_number(end_segment):
            caught_up = round(time.monotonic() - catch_start, 1)
            break
        time.sleep(1)
    lags = [s["lag_segments"] for s in samples if s["lag_segments"] is not None and s["t"] <= args.load_seconds]
    result["archive_under_load"] = {
        "pgbench_clients": args.clients, "seconds": args.load_seconds, "tps": load.get("tps"),
        "lag_segments_max": max(lags) if lags else None,
        "lag_segments_mean": round(sum(lags) / len(lags), 2) if lags else None,
        "lag_bytes_max": max(lags) * SEGMENT if lags else None,
        "catch_up_after_load_s": caught_up,
        "failed_count": samples[-1]["failed_count"] if samples else None,
        "samples": samples,
    }
    print("archive lag:", {k: v for k, v in result["archive_under_load"].items() if k != "samples"}, flush=True)
    psql(pg, "DROP DATABASE bench")
    return result


def svg(result):
    """A small self-contained SVG: throughput bars and the archive lag over time."""
    w, h = 760, 300
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             (f'<text x="10" y="18" font-size="14">pgBackRest benchmark: {result["cluster_bytes"] / 1e9:.2f} GB cluster '
              f'(pgbench -s {result["scale"]}), TLS repo host, aes-256-cbc + lz4</text>')]
    bars = [("backup MB/s", result["backup"]["throughput_mb_s"]), ("restore MB/s", result["restore"]["throughput_mb_s"]),
            ("restore→ready s", result["restore"]["to_accepting_connections_s"])]
    top = max(value for _label, value in bars) or 1
    for i, (label, value) in enumerate(bars):
        x, bh = 30 + i * 100, 180 * value / top
        parts.append(f'<rect x="{x}" y="{250 - bh:.0f}" width="60" height="{bh:.0f}" fill="#4477aa"/>')
        parts.append(f'<text x="{x}" y="{245 - bh:.0f}">{value}</text>')
        parts.append(f'<text x="{x - 10}" y="268">{label}</text>')
    samples = [s for s in result["archive_under_load"]["samples"] if s["lag_segments"] is not None]
    if samples:
        x0, x1, y0, y1 = 370, 740, 250, 60
        tmax = max(s["t"] for s in samples) or 1
        lmax = max(max(s["lag_segments"] for s in samples), 1)
        pts = " ".join(f'{x0 + (x1 - x0) * s["t"] / tmax:.1f},{y0 - (y0 - y1) * s["lag_segments"] / lmax:.1f}'
                       for s in samples)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#cc6677" stroke-width="2"/>')
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>')
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>')
        parts.append(f'<text x="{x0}" y="{y1 - 8}">archive lag (WAL segments, max {lmax}) under pgbench '
                     f'-c {result["archive_under_load"]["pgbench_clients"]}</text>')
        parts.append(f'<text x="{x1 - 60}" y="268">{tmax:.0f} s</text>')
        load_x = x0 + (x1 - x0) * result["archive_under_load"]["seconds"] / tmax
        parts.append(f'<line x1="{load_x:.1f}" y1="{y0}" x2="{load_x:.1f}" y2="{y1}" stroke="#999" stroke-dasharray="4"/>')
        parts.append(f'<text x="{load_x + 3:.1f}" y="{y1 + 12}" fill="#666">load ends</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="hc-mol-backup-pg1")
    parser.add_argument("--repo", default="hc-mol-backup-backup1")
    parser.add_argument("--restore", default="hc-mol-backup-restore1")
    parser.add_argument("--scale", type=int, default=70)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--load-seconds", type=int, default=60)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench" / "backup.json"))
    args = parser.parse_args()
    result = bench(args)
    result["verdict"] = judge(result, args.scale)
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".svg").write_text(svg(result))
    print(f"wrote {out} and {out.with_suffix('.svg')}")
    for name, v in result["verdict"].items():
        print(f"{'met    ' if v['met'] else 'NOT MET'} {name}: {v['value']} (expected {v['target']})")
    return 0 if all(v["met"] for v in result["verdict"].values()) else 1


def judge(result, scale):
    """The safety figures: every row restored, no archive failure, the archive caught up after the load."""
    arch = result["archive_under_load"]
    rows = result["restore"]["pgbench_accounts_rows"]
    return {
        "restored pgbench_accounts rows": {"value": rows, "target": scale * 100000, "met": rows == scale * 100000},
        "archive failures under load": {"value": arch["failed_count"], "target": 0, "met": arch["failed_count"] == 0},
        "archive caught up after the load, s": {"value": arch["catch_up_after_load_s"], "target": "<= 300",
                                                "met": arch["catch_up_after_load_s"] is not None},
    }


if __name__ == "__main__":
    sys.exit(main())
