"""Lab check of the backup repository's encryption, as part of the security layer's whole (issue 6, 4b): on the
repository host (backup1) the cipher in effect is aes-256-cbc, only that host holds the passphrase, a wrong
passphrase cannot read the repository, every repository file is an encrypted stream, and a canary written to the
primary reaches the repository (its WAL segment is archived) without appearing there in plaintext. Needs `make lab`.

Every command runs inside the lab's own containers (docker exec). The canary table is dropped afterwards."""

import json
import pathlib
import secrets
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "helpers"))
from testlib import require

REPO = "hc-lab-backup1"
PG_NODES = ["hc-lab-pg1", "hc-lab-pg2", "hc-lab-pg3"]
STANZA = "main"  # pgbackrest_stanza (role default; the lab does not override it)
REPO_PATH = "/var/lib/pgbackrest"  # pgbackrest_repo_path
CIPHER = "aes-256-cbc"  # pgbackrest_cipher_type
TABLE = "hc_e2e_backup_canary"


def run(container, *args, user="postgres", check=True, timeout=120, env=()):
    cmd = ["docker", "exec", "-u", user]
    for item in env:
        cmd += ["-e", item]
    res = subprocess.run([*cmd, container, *args], capture_output=True, text=True, errors="replace", timeout=timeout,
                         check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{container}: {args} failed ({res.returncode}): {res.stderr}")
    return res


def psql(container, sql):
    return run(container, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql).stdout.strip()


def _running(container):
    res = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True,
                         text=True, check=False)
    return res.stdout.strip() == "true"


@pytest.fixture(scope="module")
def lab():
    down = [c for c in [REPO, *PG_NODES] if not _running(c)]
    require(not (REPO in down or len(down) == len(PG_NODES)), f"lab containers not running: {', '.join(down)} (make lab)")
    primaries = [c for c in PG_NODES if c not in down and psql(c, "SELECT pg_is_in_recovery()") == "f"]
    assert len(primaries) == 1, primaries
    return primaries[0]


def test_repository_cipher_in_effect_and_passphrase_only_on_the_repository_host(lab):
    conf = run(REPO, "cat", "/etc/pgbackrest.conf", user="root").stdout
    assert f"repo1-cipher-type={CIPHER}" in conf.splitlines()
    info = json.loads(run(REPO, "pgbackrest", f"--stanza={STANZA}", "--output=json", "info").stdout)
    assert info[0]["status"]["code"] == 0, info[0]["status"]
    assert info[0]["cipher"] == CIPHER
    for node in PG_NODES:
        if _running(node):
            assert "repo1-cipher-pass" not in run(node, "cat", "/etc/pgbackrest.conf", user="root").stdout, node


def test_wrong_passphrase_cannot_read_the_repository(lab):
    res = run(REPO, "pgbackrest", f"--stanza={STANZA}", "--output=json", "info", check=False,
              env=["PGBACKREST_REPO1_CIPHER_PASS=" + secrets.token_hex(16)])
    # pgBackRest answers with status 99 and the decryption garbage in its message (not valid JSON to parse)
    assert res.returncode != 0 or '"code":99' in res.stdout, res.stdout
    assert "unable to load info file" in res.stdout + res.stderr, res.stdout + res.stderr


def test_canary_reaches_the_repository_only_encrypted(lab):
    canary = "HCE2ECANARY" + secrets.token_hex(8).upper()  # letters and digits only: safe as a SQL literal
    try:
        psql(lab, f"CREATE TABLE IF NOT EXISTS public.{TABLE} (v text NOT NULL)")
        psql(lab, f"INSERT INTO public.{TABLE} SELECT '{canary}-' || g FROM generate_series(1, 200) g")
        segment = psql(lab, "SELECT pg_walfile_name(pg_current_wal_lsn())")
        psql(lab, "SELECT pg_switch_wal()")
        psql(lab, "CHECKPOINT")
        # Positive control: the canary is plaintext in the primary's heap file, so grep finds it where it is so.
        heap = psql(lab, f"SELECT current_setting('data_directory') || '/' || pg_relation_filepath('public.{TABLE}')")
        assert run(lab, "grep", "-qaF", canary, heap, check=False).returncode == 0
        # The WAL segment holding the insert is archived into the repository (bounded wait: 30 x 2 s).
        archived = ""
        for _attempt in range(30):
            archived = run(REPO, "find", f"{REPO_PATH}/archive/{STANZA}", "-name", f"{segment}-*", "-type", "f").stdout
            if archived.strip():
                break
            time.sleep(2)
        assert archived.strip(), f"segment {segment} not archived within 60 s"
        seg_file = archived.split()[0]
        assert run(REPO, "head", "-c", "8", seg_file).stdout == "Salted__", seg_file
        found = run(REPO, "grep", "-rlaF", canary, REPO_PATH, check=False)
        assert found.returncode == 1, f"plaintext canary in repository files: {found.stdout}"
        # Every repository file (bounded sample) is an OpenSSL-format encrypted stream.
        files = run(REPO, "sh", "-c", f"find {REPO_PATH} -type f -size +0 | head -n 300").stdout.split()
        assert len(files) > 5
        plain = [f for f in files if run(REPO, "head", "-c", "8", f).stdout != "Salted__"]
        assert plain == []
    finally:
        psql(lab, f"DROP TABLE IF EXISTS public.{TABLE}")
