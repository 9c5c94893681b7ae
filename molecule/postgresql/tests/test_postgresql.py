"""roles/postgresql by behaviour: TLS + SCRAM from another host, plaintext refused, settings, extensions."""

import os
import shlex
import time

import pytest

testinfra_hosts = ["docker://hc-mol-postgresql-pg1"]

SECRETS = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"), "secrets")


def psql(host, sql, db="postgres"):
    """Run one statement as the postgres OS account over the local socket (peer)."""
    cmd = f"timeout 300 runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d {shlex.quote(db)} -c {shlex.quote(sql)}"
    return host.check_output(cmd)


def test_service_running(host):
    svc = host.service("postgresql@17-main")
    assert svc.is_running
    assert svc.is_enabled


def test_data_checksums(host):
    assert psql(host, "SHOW data_checksums") == "on"


@pytest.mark.parametrize(
    "setting,value",
    [
        ("ssl", "on"),
        ("password_encryption", "scram-sha-256"),
        ("wal_log_hints", "on"),
        ("log_connections", "on"),
        ("log_disconnections", "on"),
        ("listen_addresses", "*"),
        # postgresql_settings overrides
        ("work_mem", "8MB"),
        ("log_min_duration_statement", "250ms"),
        ("statement_timeout", "1min"),
        # derived from postgresql_memory_mb=1024, postgresql_cpus=2, postgresql_max_connections=120
        ("max_connections", "120"),
        ("shared_buffers", "256MB"),
        ("effective_cache_size", "768MB"),
        ("maintenance_work_mem", "64MB"),
        ("max_parallel_workers", "2"),
        ("max_worker_processes", "18"),
        ("cron.database_name", "postgres"),
        ("ssl_cert_file", "/etc/hingecraft/pki/postgresql/server.crt"),
    ],
)
def test_settings_in_effect(host, setting, value):
    assert psql(host, f"SHOW {setting}") == value


def test_conf_d_fragment_is_read(host):
    """Other roles drop fragments into conf.d: a fragment is picked up on reload."""
    frag = "/etc/postgresql/17/main/conf.d/99-hc-verify.conf"
    host.check_output(f"printf \"idle_session_timeout = '77s'\\n\" > {frag}")
    try:
        psql(host, "SELECT pg_reload_conf()")
        value = ""
        for _unused in range(20):
            value = psql(host, "SHOW idle_session_timeout")
            if value == "77s":
                break
            host.run("sleep 0.5")
        assert value == "77s"
    finally:
        host.check_output(f"rm -f {frag}")
        psql(host, "SELECT pg_reload_conf()")


def test_shared_preload_libraries(host):
    libs = psql(host, "SHOW shared_preload_libraries").split(",")
    assert libs == ["pg_stat_statements", "auto_explain", "pgaudit", "pg_cron", "timescaledb"]


def test_no_pending_restart(host):
    assert psql(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_app_password_is_scram(host):
    assert psql(host, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'hingecraft_app'") == "t"


@pytest.mark.parametrize(
    "ext,db",
    [
        ("pg_stat_statements", "hingecraft"),
        ("pgaudit", "hingecraft"),
        ("timescaledb", "hingecraft"),
        ("vector", "hingecraft"),
        ("hypopg", "hingecraft"),
        ("pg_partman", "hingecraft"),
        ("pg_qualstats", "hingecraft"),
        ("pg_trgm", "hingecraft"),
        ("pg_cron", "postgres"),
    ],
)
def test_listed_extensions_created(host, ext, db):
    assert psql(host, f"SELECT count(*) FROM pg_extension WHERE extname = '{ext}'", db=db) == "1"


@pytest.fixture(scope="module")
def scratch_db(host):
    psql(host, "DROP DATABASE IF EXISTS hc_verify_ext")
    psql(host, "CREATE DATABASE hc_verify_ext")
    yield "hc_verify_ext"
    psql(host, "DROP DATABASE IF EXISTS hc_verify_ext")


@pytest.mark.parametrize(
    "ext,probe",
    [
        # preloaded: a statement run just before is recorded (normalised: the constant becomes $1)
        ("pg_stat_statements", ("SELECT 4242 AS hc_pgss_probe; "
                                "SELECT count(*) = 1 FROM pg_stat_statements WHERE query LIKE '%AS hc_pgss_probe'")),
        ("pgaudit", "SELECT current_setting('pgaudit.log') = 'ddl,role'"),
        ("timescaledb", ("CREATE TABLE m(t timestamptz NOT NULL, v int); "
                         "SELECT create_hypertable('m', 't') IS NOT NULL; DROP TABLE m")),
        ("vector", "SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector = 1"),
        ("hypopg", ("CREATE TABLE h(a int); SELECT count(*) = 1 FROM hypopg_create_index('CREATE INDEX ON h(a)'); "
                    "DROP TABLE h")),
        ("pg_partman", "SELECT count(*) > 0 FROM pg_proc WHERE proname = 'create_parent'"),
        # not in shared_preload_libraries here: the extension's function exists with its documented columns
        ("pg_qualstats", ("SELECT 'qualid' = ANY(proargnames) AND 'occurences' = ANY(proargnames) "
                          "FROM pg_proc WHERE proname = 'pg_qualstats'")),
        ("pg_trgm", "SELECT similarity('hingecraft', 'hingecraf') > 0.5"),
    ],
)
def test_extension_can_be_created(host, scratch_db, ext, probe):
    psql(host, f"CREATE EXTENSION {ext}", db=scratch_db)
    out = psql(host, probe, db=scratch_db).splitlines()
    assert "t" in out, out
    psql(host, f"DROP EXTENSION {ext}", db=scratch_db)


def test_pg_cron_schedules_in_its_database(host):
    jobid = psql(host, "SELECT cron.schedule('hc-verify', '* * * * *', 'SELECT 1')")
    assert jobid.isdigit()
    assert psql(host, "SELECT cron.unschedule('hc-verify')") == "t"


def test_pg_cron_runs_a_scheduled_job(host):
    """A job scheduled every second really runs (pg_cron's worker connects and commits): poll, bounded."""
    psql(host, "DROP TABLE IF EXISTS hc_cron_probe; CREATE TABLE hc_cron_probe (at timestamptz DEFAULT now())")
    jobid = psql(host, "SELECT cron.schedule('hc-verify-run', '1 seconds', 'INSERT INTO hc_cron_probe DEFAULT VALUES')")
    assert jobid.isdigit()
    try:
        deadline = time.monotonic() + 60
        while int(psql(host, "SELECT count(*) FROM hc_cron_probe")) == 0:
            if time.monotonic() > deadline:
                details = psql(host, f"SELECT status, return_message FROM cron.job_run_details WHERE jobid = {jobid} "
                                     "ORDER BY runid DESC LIMIT 3")
                pytest.fail(f"pg_cron did not run job {jobid} within 60 s; last runs: {details!r}")
            time.sleep(1)
        status = psql(host, f"SELECT status FROM cron.job_run_details WHERE jobid = {jobid} AND status <> 'running' "
                            "ORDER BY runid LIMIT 1")
        assert status == "succeeded", status
    finally:
        psql(host, "SELECT cron.unschedule('hc-verify-run')")
        psql(host, "DROP TABLE IF EXISTS hc_cron_probe")


def test_tls_key_private(host):
    key = host.file("/etc/hingecraft/pki/postgresql/server.key")
    assert key.user == "postgres"
    assert key.mode == 0o600
