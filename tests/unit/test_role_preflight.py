"""Bad input fails in argument validation or preflight, before anything changes, naming the variable.

Each case runs `ansible-playbook --check --tags <role>_preflight` of the role against localhost: no package,
file or service task can run, only argument-spec validation and the preflight asserts.
"""

import json
import re

import pytest
from ansible_run import ROOT, run_playbook

PLAYBOOK = ROOT / "tests" / "unit" / "playbooks" / "role_preflight.yml"

PG_OK = {
    "postgresql_superuser_password": "x" * 20,
    "postgresql_memory_mb": 1024,
    "postgresql_cpus": 2,
    "postgresql_hba_rules": [
        {"type": "hostssl", "database": "all", "user": "all", "address": "10.0.0.0/8", "method": "scram-sha-256"}
    ],
    "postgresql_extensions": [{"name": "vector", "db": "app"}, {"name": "pg_cron", "db": "postgres"}],
}
PKI_OK = {"pki_ca_dir": "/nonexistent/controller/pki", "pki_server_certs": [{"name": "svc", "owner": "root"}]}


def run(role, extra):
    return run_playbook(PLAYBOOK, "--check", "--tags", f"{role}_preflight", extra_vars={"hc_role": role, **extra},
                        env_extra={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})


FAILED_LINE = re.compile(r"^(?:fatal|failed): \[[^\]]+\]:?(?: \(item=.*?\))?:?(?: FAILED!)? => (?P<result>\{.*\})$")


def failure_messages(out):
    """The `msg` (and `argument_errors`) of every failed task: the error itself, not the argument-spec dump
    (argument_spec_data) Ansible prints with it, which names every variable whatever failed."""
    msgs = []
    for line in out.splitlines():
        if line.startswith("[ERROR]: Task failed: "):  # the error line itself (also for no_log tasks)
            msgs.append(line.removeprefix("[ERROR]: Task failed: "))
        m = FAILED_LINE.match(line)
        if m:
            result = json.loads(m["result"])
            msgs.append(str(result.get("msg", "")))
            msgs.extend(str(e) for e in result.get("argument_errors", []))
    return msgs


def test_postgresql_good_input_passes_preflight():
    rc, out = run("postgresql", PG_OK)
    assert rc == 0, out[-3000:]
    assert "Check the pg_hba rules" in out
    assert "PostgreSQL packages" not in out


@pytest.mark.parametrize(
    "override,expected",
    [
        ({"postgresql_superuser_password": ""}, "postgresql_superuser_password is empty"),
        ({"postgresql_port": "not-a-port"}, "postgresql_port"),
        ({"postgresql_extensions": "vector"}, "postgresql_extensions"),
        ({"postgresql_extensions": [{"name": "nosuchext", "db": "app"}]}, '"nosuchext"'),
        ({"postgresql_extensions": [{"name": "pg_cron", "db": "app"}]}, "postgresql_cron_database"),
        (
            {"postgresql_hba_rules": [{"type": "host", "database": "all", "user": "app", "address": "0.0.0.0/0",
                                       "method": "scram-sha-256"}]},
            "postgresql_hba_rules[0]",
        ),
        (
            {"postgresql_hba_rules": [{"type": "hostssl", "database": "all", "user": "app", "address": "0.0.0.0/0",
                                       "method": "trust"}]},
            "postgresql_hba_rules[0]",
        ),
        ({"postgresql_settings": {"ssl": "off"}}, "postgresql_settings sets ssl"),
        ({"postgresql_shared_preload_libraries": ["pg_cron", "evil"]}, "unknown evil"),
    ],
    ids=["no-superuser-password", "port-type", "extensions-type", "unknown-extension", "pg_cron-db",
         "plain-host-rule", "trust-rule", "enforced-setting", "unknown-library"],
)
def test_postgresql_bad_input_fails_naming_variable(override, expected):
    rc, out = run("postgresql", {**PG_OK, **override})
    assert rc != 0, out[-3000:]
    msgs = failure_messages(out)
    assert any(expected in m for m in msgs), (expected, msgs, out[-3000:])
    # Nothing past preflight ran.
    assert "PostgreSQL packages" not in out


def test_pki_good_input_passes_preflight():
    rc, out = run("pki", PKI_OK)
    assert rc == 0, out[-3000:]
    assert "Check that pki_ca_dir is set" in out
    assert "CA private key" not in out


@pytest.mark.parametrize(
    "override,expected",
    [
        ({"pki_ca_dir": ""}, "pki_ca_dir is empty"),
        ({"pki_server_certs": [{"name": "../etc", "owner": "root"}]}, "pki_server_certs entry"),
        ({"pki_server_certs": [{"name": "svc"}]}, "owner"),
        ({"pki_extra_sans": ["localhost"]}, "pki_extra_sans entry"),
        ({"pki_cert_valid_days": "soon"}, "pki_cert_valid_days"),
    ],
    ids=["no-ca-dir", "bad-name", "no-owner", "san-prefix", "days-type"],
)
def test_pki_bad_input_fails_naming_variable(override, expected):
    rc, out = run("pki", {**PKI_OK, **override})
    assert rc != 0, out[-3000:]
    msgs = failure_messages(out)
    assert any(expected in m for m in msgs), (expected, msgs, out[-3000:])


REDIS_OK = {f"redis_{u}_password": f"{u}-Secret-0123456789" for u in ("admin", "replication", "sentinel", "monitor", "app")}


@pytest.mark.parametrize(
    "override,drop,expected",
    [
        ({}, "redis_app_password", "redis_app_password"),
        ({"redis_monitor_password": ""}, None, "redis_monitor_password is empty"),
        ({"redis_admin_password": "short"}, None, "redis_admin_password must match"),
        ({"redis_sentinel_password": "has space in it 123"}, None, "redis_sentinel_password must match"),
    ],
    ids=["missing-password", "empty-password", "short-password", "password-with-space"],
)
def test_redis_bad_input_fails_naming_variable(override, drop, expected):
    extra = {**REDIS_OK, **override}
    if drop:
        extra.pop(drop)
    rc, out = run("redis", extra)
    assert rc != 0, out[-3000:]
    msgs = failure_messages(out)
    assert any(expected in m for m in msgs), (expected, msgs, out[-3000:])
    assert "Redis server, Sentinel and redis-cli" not in out


ENDPOINT_OK = {"redis_endpoint_check_password": "monitor-Secret-0123", "redis_endpoint_servers": [
    {"name": "r1", "address": "10.0.0.11"}]}


def test_redis_endpoint_good_input_passes_preflight():
    rc, out = run("redis_endpoint", ENDPOINT_OK)
    assert rc == 0, out[-3000:]
    assert "Servers and services are given" in out


@pytest.mark.parametrize(
    "override,expected",
    [
        ({"redis_endpoint_check_password": ""}, "redis_endpoint_check_password is empty"),
        ({"redis_endpoint_servers": []}, "redis_endpoint_servers must list"),
        ({"redis_endpoint_services": [{"name": "a", "listen_port": 1, "backend_port": 2},
                                      {"name": "b", "listen_port": 1, "backend_port": 3}]}, "unique listen ports"),
    ],
    ids=["no-password", "no-servers", "duplicate-port"],
)
def test_redis_endpoint_bad_input_fails_naming_variable(override, expected):
    rc, out = run("redis_endpoint", {**ENDPOINT_OK, **override})
    assert rc != 0, out[-3000:]
    msgs = failure_messages(out)
    assert any(expected in m for m in msgs), (expected, msgs, out[-3000:])


ADAPTER_OK = {"adapter_db_password": "x" * 20, "adapter_db_host": "pgbouncer1",
              "adapter_jwt_public_key": "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"}


def test_adapter_good_input_passes_preflight():
    rc, out = run("adapter", ADAPTER_OK)
    assert rc == 0, out[-3000:]
    assert "Bounds are positive" in out


@pytest.mark.parametrize(
    "override,expected",
    [
        ({"adapter_db_password": ""}, "adapter_db_password is empty"),
        ({"adapter_db_host": ""}, "adapter_db_host is empty"),
        ({"adapter_jwt_public_key": "secret"}, "adapter_jwt_public_key must be the site's public key"),
        ({"adapter_jwt_algorithms": ["HS256"]}, "adapter_jwt_algorithms"),
        ({"adapter_max_limit": 10, "adapter_default_limit": 50}, "default_limit <= max_limit"),
    ],
    ids=["no-password", "no-host", "not-a-key", "symmetric-alg", "limits"],
)
def test_adapter_bad_input_fails_naming_variable(override, expected):
    rc, out = run("adapter", {**ADAPTER_OK, **override})
    assert rc != 0, out[-3000:]
    assert any(expected in m for m in failure_messages(out)), (expected, out[-3000:])


GATEWAY_OK = {"gateway_consumers": [{"name": "wix_site", "api_key": "k" * 32}]}


def test_gateway_good_input_passes_preflight():
    rc, out = run("gateway", GATEWAY_OK)
    assert rc == 0, out[-3000:]
    assert "Kong needs a package source" in out


@pytest.mark.parametrize(
    "override,expected",
    [
        ({"gateway_consumers": []}, "gateway_consumers: at least one consumer"),
        ({"gateway_consumers": [{"name": "a", "api_key": "short"}]}, "api_key missing or not 24-256"),
        ({"gateway_engine": "kong", "gateway_kong_rate_limit_policy": "local"},
         "gateway_kong_package_source is empty: Kong is not installable"),
    ],
    ids=["no-consumers", "short-key", "kong-without-source"],
)
def test_gateway_bad_input_fails_naming_variable(override, expected):
    rc, out = run("gateway", {**GATEWAY_OK, **override})
    assert rc != 0, out[-3000:]
    msgs = failure_messages(out)
    assert any(expected in m for m in msgs), (expected, msgs, out[-3000:])
    assert "short" not in " ".join(msgs)


EXPORTERS_OK = {"exporters_postgres_enabled": True, "exporters_postgres_password": "x" * 20,
                "exporters_postgres_host": "pg1"}


def test_exporters_good_input_passes_preflight():
    rc, out = run("exporters", EXPORTERS_OK)
    assert rc == 0, out[-3000:]
    assert "Settings are valid" in out
    assert "Exporter packages" not in out


@pytest.mark.parametrize(
    "override,expected",
    [
        ({"exporters_postgres_password": ""}, "exporters_postgres_password is empty"),
        ({"exporters_textfile_enabled": True, "exporters_textfile_pgpool_enabled": True},
         "exporters_textfile_pgpool_password is empty"),
        ({"exporters_postgres_user": 'x"; DROP ROLE y; --'}, "exporters_postgres_user"),
        ({"exporters_node_enabled": True, "exporters_node_port": 9187}, "share a port"),
        ({"exporters_tls_min_version": "TLS10"}, "exporters_tls_min_version"),
    ],
    ids=["no-password", "no-pgpool-password", "hostile-user", "port-clash", "tls-version"],
)
def test_exporters_bad_input_fails_naming_variable(override, expected):
    rc, out = run("exporters", {**EXPORTERS_OK, **override})
    assert rc != 0, out[-3000:]
    msgs = failure_messages(out)
    assert any(expected in m for m in msgs), (expected, msgs, out[-3000:])


def test_monitoring_good_input_passes_preflight():
    rc, out = run("monitoring", {"monitoring_node_hosts": ["pg1", "mon1"]})
    assert rc == 0, out[-3000:]
    assert "Target lists hold host names" in out


@pytest.mark.parametrize(
    "override,expected",
    [
        ({"monitoring_alertmanager_receiver": {"webhook_configs": []}}, "monitoring_alertmanager_receiver"),
        ({"monitoring_scrape_interval": "5s", "monitoring_scrape_timeout": "10s"}, "scrape timeout"),
        ({"monitoring_node_hosts": ["pg1:9100/x y"]}, "monitoring_*_hosts"),
    ],
    ids=["unnamed-receiver", "timeout-over-interval", "bad-host"],
)
def test_monitoring_bad_input_fails_naming_variable(override, expected):
    rc, out = run("monitoring", override)
    assert rc != 0, out[-3000:]
    msgs = failure_messages(out)
    assert any(expected in m for m in msgs), (expected, msgs, out[-3000:])
