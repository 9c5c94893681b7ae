"""The monitoring role's alert rules: every alert has a promtool test case that fires and one that stays silent,
the rules are static (no Jinja), and promtool/amtool accept rules, tests and the rendered Alertmanager routes.

promtool and amtool come from Debian 13's packages (scripts/prom-tools.sh extracts them into .cache/prom-tools);
without them the tests that run a binary skip and say so (HC_REQUIRE_PROMTOOL=1 turns that skip into a failure).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible_run import ROOT, run_playbook

ROLE = ROOT / "roles" / "monitoring"
RULES = sorted((ROLE / "files" / "rules").glob("*.yml"))
TESTS = sorted((ROLE / "tests" / "rules").glob("*.test.yml"))
RENDER = ROOT / "tests" / "unit" / "playbooks" / "monitoring_render.yml"


def _tool(name):
    env = os.environ.get(f"HC_{name.upper()}")
    return env or shutil.which(name, path=str(ROOT / ".cache" / "prom-tools" / "bin")) or shutil.which(name)


def _need(name):
    path = _tool(name)
    if path:
        return path
    why = (f"{name} not found (PATH, .cache/prom-tools/bin, HC_{name.upper()}): run scripts/prom-tools.sh, which "
           f"extracts it from Debian 13's package")
    if os.environ.get("HC_REQUIRE_PROMTOOL") == "1":
        pytest.fail(why, pytrace=False)
    print(f"SKIP: {why}")
    pytest.skip(why)


def _load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alerts():
    out = {}
    for f in RULES:
        for group in _load(f)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in out, f"{rule['alert']} defined twice ({out.get(rule['alert'])}, {f.name})"
                    out[rule["alert"]] = (f, rule)
    return out


ALERTS = _alerts()


def test_rules_exist():
    assert len(ALERTS) >= 25, sorted(ALERTS)


@pytest.mark.parametrize("required", [
    "InstanceDown", "PostgreSQLDown", "ReplicationLagHigh", "ReplicationLagBytesHigh", "StandbyNotStreaming",
    "ReplicationSlotInactive", "ReplicationSlotWALRetained", "ReplicationSlotLost", "TooManyConnections",
    "LongRunningTransaction", "IdleInTransaction", "DeadlocksIncreasing", "XidWraparoundRisk", "CacheHitRatioLow",
    "SlowQueries", "PgBouncerDown", "PgBouncerClientsWaiting", "PgpoolDown", "PgpoolNodeDetached",
    "PgpoolFailoverHappened", "PgpoolNoPrimary", "PgBackRestBackupTooOld", "WALArchiveFailing",
    "CertificateExpiresSoon", "DiskAlmostFull", "DiskFillingUp", "HighCPU", "MemoryPressure",
    "RedisDown", "RedisReplicationLinkDown", "RedisMasterChanged", "RedisSentinelQuorumLost", "RedisMemoryNearMax",
    "RedisEvicting", "RedisRejectedConnections",
])
def test_required_alert_is_shipped(required):
    assert required in ALERTS


def test_rules_are_static_files():
    """Go templates only: no Jinja block or comment syntax, which a templating role would have to escape."""
    for f in RULES:
        text = f.read_text(encoding="utf-8")
        assert "{%" not in text and "{#" not in text, f"{f.name} contains Jinja syntax"


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_alert_has_severity_and_summary(alert):
    rule = ALERTS[alert][1]
    assert rule.get("labels", {}).get("severity") in ("critical", "warning"), alert
    assert rule.get("annotations", {}).get("summary"), alert
    assert "rate(pg_stat_activity_max_tx_duration" not in rule["expr"], "rate() over a gauge never fires (#1277)"


def _cases():
    """alertname -> {'firing': [test names], 'silent': [test names]} over every promtool test file."""
    cases = {}
    for f in TESTS:
        doc = _load(f)
        for rf in doc["rule_files"]:
            assert (f.parent / rf).resolve().exists(), f"{f.name}: rule file {rf} does not exist"
        for t in doc["tests"]:
            for a in t.get("alert_rule_test", []):
                kind = "firing" if a.get("exp_alerts") else "silent"
                cases.setdefault(a["alertname"], {"firing": [], "silent": []})[kind].append(f"{f.name}: {t['name']}")
    return cases


CASES = _cases()


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_every_alert_has_a_firing_and_a_silent_case(alert):
    got = CASES.get(alert, {"firing": [], "silent": []})
    assert got["firing"], f"{alert}: no promtool test case in which it fires"
    assert got["silent"], f"{alert}: no promtool test case in which it stays silent"


def test_tests_name_only_shipped_alerts():
    unknown = sorted(set(CASES) - set(ALERTS))
    assert not unknown, f"test cases for alerts that no rule file defines: {unknown}"


def test_every_rule_file_has_a_test_file():
    tested = {Path(rf).name for f in TESTS for rf in _load(f)["rule_files"]}
    assert {f.name for f in RULES} <= tested, sorted({f.name for f in RULES} - tested)


def test_promtool_check_rules():
    promtool = _need("promtool")
    res = subprocess.run([promtool, "check", "rules", *map(str, RULES)], capture_output=True, text=True, check=False,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("test_file", TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(test_file):
    promtool = _need("promtool")
    res = subprocess.run([promtool, "test", "rules", test_file.name], cwd=test_file.parent, capture_output=True,
                         text=True, check=False, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("monitoring")
    extra = {
        "hc_out": str(out),
        "inventory_hostname": "mon1",
        "monitoring_node_hosts": ["pg1", "mon1"],
        "monitoring_postgres_hosts": ["pg1"],
        "monitoring_target_addresses": {"pg1": "hc-lab-pg1"},
        "monitoring_alertmanager_receiver": {"name": "ops", "webhook_configs": [{"url": "http://127.0.0.1:9/ops"}]},
        "monitoring_alertmanager_critical_receiver": {"name": "pager",
                                                      "webhook_configs": [{"url": "http://127.0.0.1:9/pager"}]},
    }
    rc, log = run_playbook(RENDER, extra_vars=extra)
    assert rc == 0, log[-3000:]
    return out


def test_prometheus_scrapes_exporters_over_https_with_its_certificate(rendered):
    cfg = yaml.safe_load((rendered / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {"prometheus", "alertmanager", "node", "postgres"}
    for name in ("node", "postgres"):
        assert jobs[name]["scheme"] == "https"
        assert jobs[name]["tls_config"]["cert_file"].endswith("/client.crt")
    targets = [(t, sc["labels"]["host"]) for sc in jobs["postgres"]["static_configs"] for t in sc["targets"]]
    assert targets == [("hc-lab-pg1:9187", "pg1")]
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]


def test_amtool_check_config(rendered):
    amtool = _need("amtool")
    res = subprocess.run([amtool, "check-config", str(rendered / "alertmanager.yml")], capture_output=True,
                         text=True, check=False, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("labels,receiver", [
    (["alertname=PostgreSQLDown", "severity=critical", "host=pg1"], "pager"),
    (["alertname=ReplicationLagHigh", "severity=warning", "host=pg2"], "ops"),
    (["alertname=Unknown"], "ops"),
])
def test_amtool_routes(rendered, labels, receiver):
    amtool = _need("amtool")
    res = subprocess.run([amtool, "config", "routes", "test", "--config.file", str(rendered / "alertmanager.yml"),
                          *labels], capture_output=True, text=True, check=False, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == receiver, res.stdout


def test_inhibition_node_down_silences_the_hosts_other_alerts(rendered):
    cfg = yaml.safe_load((rendered / "alertmanager.yml").read_text())
    rules = cfg["inhibit_rules"]
    assert {"source_matchers": ['alertname="InstanceDown"', 'job="node"'],
            "target_matchers": ['alertname!="InstanceDown"'], "equal": ["host"]} in rules
    assert json.dumps(cfg).count('"receiver"') >= 2
