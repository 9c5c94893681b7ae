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
from lab import GROUPS, prometheus

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "roles" / "monitoring" / "files" / "rules"


def api(path, query=None):
    return prometheus(path, query)


def test_every_exporter_target_is_up_over_https():
    targets = api("/api/v1/targets")["data"]["activeTargets"]
    down = [(t["labels"]["job"], t["labels"]["host"], t.get("lastError")) for t in targets if t["health"] != "up"]
    assert not down, down
    jobs = {t["labels"]["job"] for t in targets}
    assert {"node", "postgres", "pgbouncer"} <= jobs, jobs
    for t in targets:
        if t["labels"]["job"] not in ("prometheus", "alertmanager"):
            assert t["scrapeUrl"].startswith("https://"), t["scrapeUrl"]
    pg_hosts = sorted(t["labels"]["host"] for t in targets if t["labels"]["job"] == "postgres")
    assert pg_hosts == sorted(GROUPS["postgresql"]), pg_hosts


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
        names |= set(re.findall(r"\b((?:pg|pgbouncer|pgbackrest|node|hingecraft)_[a-zA-Z0-9_]+)\b", expr))
    missing = sorted(n for n in names if not api("/api/v1/query", f"count({n})")["data"]["result"])
    assert not [n for n in missing if n not in OPTIONAL_INPUTS], missing
