# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench-schema`: the HingeCraft reference schema at 1M+ rows per collection, in a dedicated container.

1. container hc-bench-schema (Debian 13 systemd image + PostgreSQL 17 + python3-psycopg), no published ports;
2. roles/schema applied by ansible-playbook playbooks/schema.yml (community.docker connection);
3. scripts/generate_data.py loads the data through COPY (deterministic seed; --scale 1 = 1M+ rows each);
4. tests/bench/schema_queries.py measures p50/p95/p99, refresh times and EXPLAIN checks inside the container;
5. docs/bench/schema.json and docs/bench/schema.svg are written.
All traffic stays inside the container (docker exec). Bounded: fixed iteration counts, timeouts on every step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE = "hingecraft/debian13-systemd:latest"
APT_CACHE = "/var/cache/hingecraft/apt-archives"


def log(msg):
    print(f"[bench-schema] {msg}", file=sys.stderr, flush=True)


def sh(cmd, timeout=600, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def dexec(container, *args, user="postgres", timeout=3600, check=True):
    return sh(["docker", "exec", "-u", user, container, *args], timeout=timeout, check=check)


def ensure_container(name):
    state = sh(["docker", "inspect", "-f", "{{.State.Running}}", name], check=False)
    if state.returncode == 0 and state.stdout.strip() == "true":
        log(f"reusing container {name}")
    else:
        sh(["docker", "rm", "-f", name], check=False)
        log(f"starting container {name}")
        sh(["docker", "run", "-d", "--name", name, "--hostname", "bench-schema", "--label", "hingecraft.role=bench",
            "--cap-add", "SYS_ADMIN", "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "-v", f"{APT_CACHE}:/var/cache/apt/archives", "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "--tmpfs", "/tmp", IMAGE, "/lib/systemd/systemd"])
    if dexec(name, "sh", "-c", "command -v pg_lsclusters", user="root", check=False).returncode != 0:
        log("installing postgresql-17 (about a minute)")
        dexec(name, "sh", "-c", "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
              "postgresql-17 python3-psycopg", user="root", timeout=900)
    deadline = time.monotonic() + 90
    while dexec(name, "pg_isready", "-q", user="root", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("PostgreSQL did not start in the bench container")
        time.sleep(1)
    # Size for a shared 2-core machine; the same settings are recorded in the results.
    dexec(name, "psql", "-X", "-q", "-c", "ALTER SYSTEM SET shared_buffers = '1GB'",
          "-c", "ALTER SYSTEM SET work_mem = '32MB'", "-c", "ALTER SYSTEM SET maintenance_work_mem = '256MB'",
          "-c", "ALTER SYSTEM SET max_wal_size = '4GB'", "-c", "ALTER SYSTEM SET random_page_cost = 1.1")
    dexec(name, "systemctl", "restart", "postgresql@17-main", user="root")
    deadline = time.monotonic() + 90
    while dexec(name, "pg_isready", "-q", user="root", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("PostgreSQL did not restart in the bench container")
        time.sleep(1)
    if dexec(name, "psql", "-X", "-At", "-c", "SELECT count(*) FROM pg_database WHERE datname = 'hingecraft'"
             ).stdout.strip() == "0":
        dexec(name, "createdb", "hingecraft")


def apply_schema(name):
    log("applying roles/schema (playbooks/schema.yml)")
    with tempfile.TemporaryDirectory() as tmp:
        inv = os.path.join(tmp, "inventory.yml")
        with open(inv, "w", encoding="utf-8") as f:
            f.write(f"all:\n  children:\n    postgresql:\n      hosts:\n        {name}:\n"
                    "          ansible_connection: community.docker.docker\n"
                    "          ansible_python_interpreter: /usr/bin/python3\n")
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"))
        sh([os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", inv,
            os.path.join(REPO, "playbooks", "schema.yml")], timeout=1800, env=env, cwd=REPO)


def copy_in(name, src, dest):
    sh(["docker", "cp", src, f"{name}:{dest}"])
    dexec(name, "chmod", "0755", dest, user="root")


def svg_chart(results, path):
    """A small horizontal bar chart of p50/p95/p99 per query (no plotting library needed)."""
    q = results["queries"]
    names = list(q)
    width, row_h, left, top = 900, 46, 260, 60
    height = top + row_h * len(names) + 60
    vmax = max(max(v["p99_ms"] for v in q.values()), 10.0)
    scale = (width - left - 40) / vmax
    colors = {"p50_ms": "#4c78a8", "p95_ms": "#f58518", "p99_ms": "#e45756"}
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12">'), f'<rect width="{width}" height="{height}" fill="white"/>',
             (f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">HingeCraft schema, '
             f'{results["load"]["total_rows"]:,} rows: query latency (ms) as {results["queries_role"]}</text>')]
    x10 = left + 10 * scale
    parts.append(f'<line x1="{x10:.1f}" y1="{top - 10}" x2="{x10:.1f}" y2="{height - 50}" stroke="#999" '
                 'stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{x10 + 3:.1f}" y="{top - 14}" fill="#666">10 ms target (p95)</text>')
    for i, n in enumerate(names):
        y = top + i * row_h
        parts.append(f'<text x="{left - 8}" y="{y + 22}" text-anchor="end">{n}</text>')
        for j, k in enumerate(("p50_ms", "p95_ms", "p99_ms")):
            w = max(1.0, q[n][k] * scale)
            parts.append(f'<rect x="{left}" y="{y + 4 + j * 12}" width="{w:.1f}" height="10" fill="{colors[k]}"/>')
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 13 + j * 12}" font-size="10">{q[n][k]:.2f}</text>')
    ly = height - 30
    for j, k in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        parts.append(f'<rect x="{left + j * 90}" y="{ly}" width="12" height="12" fill="{colors[k]}"/>')
        parts.append(f'<text x="{left + j * 90 + 16}" y="{ly + 10}">{k[:3]}</text>')
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser(description="HingeCraft schema benchmark")
    ap.add_argument("--container", default="hc-bench-schema")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--reuse-data", action="store_true", help="skip the load when the data is already there")
    ap.add_argument("--skip-schema", action="store_true", help="do not run playbooks/schema.yml")
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "bench", "schema.json"))
    ap.add_argument("--keep", action="store_true", help="keep the container afterwards")
    a = ap.parse_args()
    name = a.container
    started = time.monotonic()
    ensure_container(name)
    if not a.skip_schema:
        apply_schema(name)
    copy_in(name, os.path.join(REPO, "scripts", "generate_data.py"), "/var/tmp/generate_data.py")
    copy_in(name, os.path.join(REPO, "tests", "bench", "schema_queries.py"), "/var/tmp/schema_queries.py")
    have = int(dexec(name, "psql", "-X", "-At", "-d", "hingecraft", "-c", "SELECT count(*) FROM app.members").stdout)
    want = round(1_000_000 * a.scale)
    if a.reuse_data and have == want and os.path.exists(a.out):
        log(f"reusing the loaded data ({have} members)")
        with open(a.out, encoding="utf-8") as f:
            load = json.load(f)["load"]
    else:
        log(f"loading scale {a.scale} through COPY")
        load = json.loads(dexec(name, "python3", "/var/tmp/generate_data.py", "--scale", str(a.scale),
                                "--truncate", timeout=7200).stdout)
    log("measuring queries")
    q = json.loads(dexec(name, "python3", "/var/tmp/schema_queries.py", "--iterations", str(a.iterations),
                         timeout=3600).stdout)
    settings = dexec(name, "psql", "-X", "-At", "-c", "SELECT string_agg(name || '=' || setting, ', ') FROM "
                     "pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'random_page_cost', "
                     "'server_version')").stdout.strip()
    results = {"generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "machine": f"{os.cpu_count()} cores, one container; load average {os.getloadavg()[0]:.2f} at the start",
               "settings": settings, "load": load, "queries_role": f"{q['role']} (tenant {q['tenant']}, RLS on)",
               **{k: v for k, v in q.items() if k not in ("role", "tenant")},
               "p95_under_10ms": {k: v["p95_ms"] < 10 for k, v in q["queries"].items()},
               "bench_seconds": round(time.monotonic() - started, 1)}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    svg_chart(results, os.path.splitext(a.out)[0] + ".svg")
    log(f"wrote {a.out} and the SVG plot in {results['bench_seconds']} s")
    print(json.dumps({k: results[k] for k in ("queries", "matview_refresh", "explain")}, indent=2))
    if not a.keep:
        sh(["docker", "rm", "-f", name], check=False)
    # the claimed target (docs/bench/schema.md: p95 < 10 ms on every designed path) is judged, not just recorded
    missed = sorted(k for k, ok in results["p95_under_10ms"].items() if not ok)
    if not results["p95_under_10ms"] or missed:
        log(f"NOT MET: p95 < 10 ms for {missed or 'no query measured'}")
        return 1
    log(f"met: p95 < 10 ms for all {len(results['p95_under_10ms'])} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
