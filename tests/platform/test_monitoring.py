"""Monitoring layer in the lab (playbooks/monitoring.yml via site.yml): every exporter of every lab host is up over
https in Prometheus, every rule group is healthy, every alert expression is valid against the live metrics and
every metric the rules read exists. The fault matrix (test_platform.py) checks that a primary failover raises
PgpoolFailoverHappened and that Prometheus follows the new primary.
"""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml
from lab import GROUPS, MON, docker, prometheus

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "roles" / "monitoring" / "files" / "rules"


def api(path, query=None):
    return prometheus(path, query)


# Runs on the monitoring host: GET an https URL verified with the platform CA, optionally with a client certificate.
_TLS_GET = r"""
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile="/etc/hingecraft/pki/prometheus/ca.crt")
if len(sys.argv) > 2:
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
with urllib.request.urlopen(sys.argv[1], timeout=10, context=ctx) as r:
    sys.stdout.write(r.read().decode())
"""


def docker_fetch(url, cert=None, key=None):
    return docker("exec", MON, "python3", "-c", _TLS_GET, url, *([cert, key] if cert else []), timeout=30, check=False)


def test_every_exporter_target_is_up_over_https():
    targets = api("/api/v1/targets")["data"]["activeTargets"]
    down = [(t["labels"]["job"], t["labels"]["host"], t.get("lastError")) for t in targets if t["health"] != "up"]
    assert not down, down
    jobs = {t["labels"]["job"] for t in targets}
    assert {"node", "postgres", "pgbouncer", "redis"} <= jobs, jobs
    for t in targets:
        if t["labels"]["job"] not in ("prometheus", "alertmanager"):
            assert t["scrapeUrl"].startswith("https://"), t["scrapeUrl"]
    pg_hosts = sorted(t["labels"]["host"] for t in targets if t["labels"]["job"] == "postgres")
    assert pg_hosts == sorted(GROUPS["postgresql"]), pg_hosts
    # every Redis host's exporter scrapes its two instances and its Sentinel, each over TLS as the monitor user
    redis = sorted((t["labels"]["host"], t["labels"]["redis"]) for t in targets if t["labels"]["job"] == "redis")
    assert redis == sorted((h, r) for h in GROUPS["redis"] for r in ("cache", "sessions", "sentinel")), redis
    up = {(s["metric"]["host"], s["metric"]["redis"]): s["value"][1]
          for s in api("/api/v1/query", 'redis_up{job="redis"}')["data"]["result"]}
    assert sorted(up) == redis and set(up.values()) == {"1"}, f"redis_up per target: {up}"


def test_redis_exporter_answers_only_a_client_with_the_platform_certificate():
    host = next(iter(GROUPS["redis"]))
    url = f"https://{host}:9121/metrics"
    with_cert = docker_fetch(url, "/etc/hingecraft/pki/prometheus/client.crt", "/etc/hingecraft/pki/prometheus/client.key")
    assert with_cert.returncode == 0 and "redis_up" in with_cert.stdout, with_cert.stderr[-500:]
    without = docker_fetch(url)
    assert without.returncode != 0 and "redis_up" not in without.stdout, "the Redis exporter answered without a certificate"


def test_every_rule_group_is_healthy():
    groups = api("/api/v1/rules")["data"]["groups"]
    bad = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not bad, bad


def _exprs():
    for f in sorted(RULES_DIR.glob("*.yml")):
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                yield r["alert"], r["expr"]


@pytest.mark.parametrize("alert,expr", list(_exprs()), ids=lambda v: v if isinstance(v, str) and " " not in v else "")
def test_alert_expression_is_valid_on_live_metrics(alert, expr):
    """The expression evaluates (status success) on the lab's Prometheus. Whether its inputs exist is reported by
    test_alert_inputs_exist."""
    res = api("/api/v1/query", expr)
    assert res["status"] == "success", (alert, res)


# Metrics whose absence on a healthy lab is expected (no failover yet, no pgpool textfile when not enabled, ...).
OPTIONAL_INPUTS = {"pg_stat_wal_receiver_flushed_lsn"}


def test_alert_inputs_exist():
    """Every metric name the rules read returns at least one series in the lab (catches renamed exporter metrics,
    the anchors' common fault)."""
    names = set()
    for _alert, expr in _exprs():
        names |= set(re.findall(r"\b((?:pg|pgbouncer|pgbackrest|node|hingecraft|redis)_[a-zA-Z0-9_]+)\b", expr))
    missing = sorted(n for n in names if not api("/api/v1/query", f"count({n})")["data"]["result"])
    assert not [n for n in missing if n not in OPTIONAL_INPUTS], missing
