"""From another container: TLS verify-full + SCRAM works, plaintext and wrong secrets are refused."""

import os
import shlex

testinfra_hosts = ["docker://hc-mol-postgresql-client"]

SECRETS = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "secrets")
CA = "/etc/hingecraft/pki/hc_cert/ca.crt"


def app_password():
    with open(os.path.join(SECRETS, "hingecraft_app"), encoding="utf-8") as f:
        return f.read().split()[0]


def connect(host, conninfo, sql, password=None):
    env = f"PGPASSWORD={shlex.quote(password)} " if password else ""
    cmd = (f"{env}PGCONNECT_TIMEOUT=10 timeout 120 psql -X -At -v ON_ERROR_STOP=1 {shlex.quote(conninfo)} "
           f"-c {shlex.quote(sql)}")
    return host.run(cmd)


APP = f"host=pg1 port=5432 dbname=hingecraft user=hingecraft_app sslmode=verify-full sslrootcert={CA}"


def test_app_connects_verify_full_scram(host):
    res = connect(
        host,
        APP + " require_auth=scram-sha-256 channel_binding=require",
        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        app_password(),
    )
    assert res.rc == 0, res.stderr
    ssl, version = res.stdout.strip().split("|")
    assert ssl == "t"
    assert version.startswith("TLSv1.")


def test_app_can_write(host):
    sql = "CREATE TABLE IF NOT EXISTS hc_verify(i int); INSERT INTO hc_verify VALUES (1); SELECT count(*) > 0 FROM hc_verify"
    res = connect(host, APP, sql, app_password())
    assert res.rc == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "t"


def test_wrong_password_refused(host):
    res = connect(host, APP, "SELECT 1", "not-the-password")
    assert res.rc != 0
    assert "password authentication failed" in res.stderr


def test_plaintext_refused(host):
    conninfo = "host=pg1 port=5432 dbname=hingecraft user=hingecraft_app sslmode=disable"
    res = connect(host, conninfo, "SELECT 1", app_password())
    assert res.rc != 0
    assert "no encryption" in res.stderr


def test_verify_full_rejects_other_ca(host):
    # The system CA bundle does not contain our CA: verification must fail.
    conninfo = (
        "host=pg1 port=5432 dbname=hingecraft user=hingecraft_app sslmode=verify-full "
        "sslrootcert=/etc/ssl/certs/ca-certificates.crt"
    )
    res = connect(host, conninfo, "SELECT 1", app_password())
    assert res.rc != 0
    assert "certificate verify failed" in res.stderr


def test_client_certificate_auth(host):
    conninfo = (
        f"host=pg1 port=5432 dbname=postgres user=hc_cert sslmode=verify-full sslrootcert={CA} "
        "sslcert=/etc/hingecraft/pki/hc_cert/client.crt sslkey=/etc/hingecraft/pki/hc_cert/client.key"
    )
    res = connect(host, conninfo, "SELECT current_user")
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == "hc_cert"


def test_client_certificate_required_for_cert_user(host):
    """Same user, same path, no client certificate: refused by the `cert` rule itself (test_client_certificate_auth
    is the positive control with the certificate)."""
    conninfo = f"host=pg1 port=5432 dbname=postgres user=hc_cert sslmode=verify-full sslrootcert={CA}"
    res = connect(host, conninfo, "SELECT 1")
    assert res.rc == 2, (res.rc, res.stderr)
    assert 'connection requires a valid client certificate' in res.stderr, res.stderr
