"""Monitoring layer, by behaviour: Prometheus on monitoring-mon1 scrapes the exporters on monitoring-pg1 over
mutual TLS, every rule group evaluates, a stopped PostgreSQL raises PostgreSQLDown into Alertmanager and the alert
clears after the start, Prometheus and Alertmanager answer on loopback only, the exporter's login has pg_monitor
and nothing else, and pg_stat_statements keeps no password of a CREATE ROLE."""

import json
import os
import pathlib
import sys
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from testlib import dexec, psql, require_container, wait_until

PG = "monitoring-pg1"
MON = "monitoring-mon1"
PROM = "http://127.0.0.1:9090"
AM = "http://127.0.0.1:9093"
CLIENT = "/etc/hingecraft/pki/prometheus"
RULES_DIR = ROOT / "roles" / "monitoring" / "files" / "rules"

pytestmark = [require_container(PG, "monitoring"), require_container(MON, "monitoring")]

# Runs inside a container: GET url (https with an optional client certificate), body on stdout, exit 3 on error.
FETCH = r"""
import ssl, sys, urllib.request
url, ca, cert, key = (sys.argv[1:] + ["", "", ""])[:4]
ctx = None
if url.startswith("https"):
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
try:
    with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    print(f"ERROR {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(3)
"""

# Runs inside a container: TCP connect to host:port; prints "open" or the error.
CONNECT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except OSError as e:
    print(f"closed {type(e).__name__}")
"""


def fetch(container, url, ca="", cert="", key=""):
    return dexec(container, "python3", "-c", FETCH, url, ca, cert, key, check=False, timeout=30)


def api(path, base=PROM):
    res = fetch(MON, base + path)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def shipped_alerts():
    names = []
    for f in sorted(RULES_DIR.glob("*.yml")):
        for g in yaml.safe_load(f.read_text())["groups"]:
            names += [r["alert"] for r in g["rules"] if "alert" in r]
    return names


def test_every_target_up_over_https():
    def all_up():
        targets = api("/api/v1/targets")["data"]["activeTargets"]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = wait_until(all_up, 120, "every Prometheus target up", interval=3)
    by_job = {}
    for t in targets:
        by_job.setdefault(t["labels"]["job"], []).append(t)
    assert set(by_job) == {"prometheus", "alertmanager", "node", "postgres"}, sorted(by_job)
    assert sorted(t["labels"]["host"] for t in by_job["node"]) == [MON, PG]
    assert [t["labels"]["host"] for t in by_job["postgres"]] == [PG]
    for job in ("node", "postgres"):
        for t in by_job[job]:
            assert t["scrapeUrl"].startswith("https://"), t["scrapeUrl"]
    # loopback self-scrapes are the only plain-http ones
    for job in ("prometheus", "alertmanager"):
        assert all(t["scrapeUrl"].startswith("http://127.0.0.1:") for t in by_job[job])


def test_exporters_refuse_a_client_without_certificate():
    ca = f"{CLIENT}/ca.crt"
    for port, metric in ((9100, "node_cpu_seconds_total"), (9187, "pg_up")):
        url = f"https://{PG}:{port}/metrics"
        ok = fetch(MON, url, ca, f"{CLIENT}/client.crt", f"{CLIENT}/client.key")
        assert ok.returncode == 0 and metric in ok.stdout, ok.stderr
        no_cert = fetch(MON, url, ca)
        assert no_cert.returncode == 3 and metric not in no_cert.stdout, no_cert.stdout[:300]
        plain = fetch(MON, f"http://{PG}:{port}/metrics")
        assert plain.returncode == 3 and metric not in plain.stdout, plain.stdout[:300]


def test_every_rule_group_is_healthy():
    def loaded():
        groups = api("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return groups if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    groups = wait_until(loaded, 60, "every rule evaluated once", interval=3)
    alerts = [r for g in groups for r in g["rules"] if r["type"] == "alerting"]
    assert sorted(r["name"] for r in alerts) == sorted(shipped_alerts())
    bad = [(r["name"], r.get("health"), r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not bad, bad
    # every group of every shipped rule file is loaded (the role installs them all, whether or not this scenario
    # has hosts that feed them: the redis group stays empty of series here and still evaluates)
    expected_groups = {g["name"] for f in sorted(RULES_DIR.glob("*.yml")) for g in yaml.safe_load(f.read_text())["groups"]}
    assert "hingecraft-redis" in expected_groups and len(expected_groups) == 6, expected_groups
    assert {g["name"] for g in groups} == expected_groups


def test_exporter_login_has_pg_monitor_and_nothing_else():
    attrs = psql(PG, "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
                     "FROM pg_roles WHERE rolname = 'postgres_exporter'")
    assert attrs == "t|f|f|f|f|f"
    member_of = psql(PG, "SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m "
                         "JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
                         "WHERE u.rolname = 'postgres_exporter'")
    assert member_of == "pg_monitor"


def test_exporter_connects_over_tls():
    log = dexec(PG, "sh", "-c", "grep -h 'connection authorized: user=postgres_exporter' "
                                "/var/log/postgresql/postgresql-17-main.log | tail -n 3").stdout
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert lines, "no connection of postgres_exporter in the server log"
    assert all("SSL enabled" in ln for ln in lines), lines


def test_textfile_metrics_reach_prometheus():
    def series():
        q = 'hingecraft_certificate_expiry_days{host="monitoring-pg1"}'
        res = api("/api/v1/query?query=" + q.replace('"', "%22").replace("{", "%7B").replace("}", "%7D"))
        return res["data"]["result"]

    result = wait_until(series, 60, "certificate expiry days of monitoring-pg1 in Prometheus", interval=3)
    paths = {r["metric"]["path"]: float(r["value"][1]) for r in result}
    assert "/etc/hingecraft/pki/postgresql/server.crt" in paths, sorted(paths)
    # leaf certificates: pki_cert_valid_days 365; the CA: 3650
    assert all(300 < v <= 366 for p, v in paths.items() if not p.endswith("/ca.crt")), paths
    assert all(3600 < v <= 3651 for p, v in paths.items() if p.endswith("/ca.crt")), paths


def test_pg_stat_statements_keeps_no_password():
    assert psql(PG, "SHOW pg_stat_statements.track_utility") == "off"
    psql(PG, "SELECT 4343 AS hc_pgss_probe")
    secret = "hcProbeSecret7731"
    psql(PG, f"CREATE ROLE hc_pgss_probe LOGIN PASSWORD '{secret}'")
    try:
        tracked = psql(PG, "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%AS hc_pgss_probe'")
        assert tracked == "1", "pg_stat_statements does not track queries: the check below would prove nothing"
        leaked = psql(PG, f"SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%{secret}%'")
        assert leaked == "0"
    finally:
        psql(PG, "DROP ROLE hc_pgss_probe")


def test_prometheus_and_alertmanager_listen_on_loopback_only():
    listeners = dexec(MON, "ss", "-Hltn").stdout
    local = [ln.split()[3] for ln in listeners.splitlines() if ln.strip()]
    assert "127.0.0.1:9090" in local and "127.0.0.1:9093" in local, local
    exposed = [a for a in local if a.rsplit(":", 1)[1] in ("9090", "9093", "9094") and not a.startswith("127.0.0.1:")]
    assert not exposed, exposed
    for port in (9090, 9093, 9094):
        res = dexec(PG, "python3", "-c", CONNECT, MON, str(port)).stdout.strip()
        assert res.startswith("closed"), f"{MON}:{port} reachable from {PG}: {res}"


def _prom_firing(name):
    return [a for a in api("/api/v1/alerts")["data"]["alerts"]
            if a["labels"]["alertname"] == name and a["labels"].get("host") == PG and a["state"] == "firing"]


def _am_active(name):
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    alerts = api("/api/v2/alerts?active=true", base=AM)
    return [a for a in alerts if a["labels"]["alertname"] == name and a["labels"].get("host") == PG
            and a["status"]["state"] == "active" and a["endsAt"][:19] > now]


def test_postgresql_down_fires_reaches_alertmanager_and_clears():
    assert not _prom_firing("PostgreSQLDown"), "PostgreSQLDown fires before PostgreSQL was stopped"
    t0 = time.monotonic()
    dexec(PG, "systemctl", "stop", "postgresql@17-main")
    try:
        wait_until(lambda: _prom_firing("PostgreSQLDown"), 150, "PostgreSQLDown firing in Prometheus", interval=2)
        t_fire = time.monotonic() - t0
        alert = wait_until(lambda: _am_active("PostgreSQLDown"), 90, "PostgreSQLDown in Alertmanager", interval=2)
        t_am = time.monotonic() - t0
        assert alert[0]["labels"]["severity"] == "critical"
        assert alert[0]["receivers"][0]["name"] == "default"
    finally:
        dexec(PG, "systemctl", "start", "postgresql@17-main")
    t1 = time.monotonic()
    wait_until(lambda: not _prom_firing("PostgreSQLDown"), 150, "PostgreSQLDown cleared in Prometheus", interval=2)
    wait_until(lambda: not _am_active("PostgreSQLDown"), 150, "PostgreSQLDown resolved in Alertmanager", interval=2)
    t_clear = time.monotonic() - t1
    timing = {"prometheus_firing_s": round(t_fire, 1), "alertmanager_s": round(t_am, 1),
              "resolved_after_start_s": round(t_clear, 1)}
    print(f"PostgreSQLDown timing: {timing}")
    if os.environ.get("HC_MONITORING_TIMING_FILE"):
        pathlib.Path(os.environ["HC_MONITORING_TIMING_FILE"]).write_text(json.dumps(timing) + "\n")
