"""Behaviour of the backup layer: archiving through the TLS repository host, backups copied from the streaming
standby, an encrypted repository, PITR to a time, to a named restore point and to a transaction id with the real
playbooks (each ending with the standby streaming again), refusals before anything stops, the restore drill.

The tests run in file order and build on each other (the PITR tests change the cluster)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "helpers"))
from testlib import require

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) if "MOLECULE_EPHEMERAL_DIRECTORY" in os.environ else None
PG1 = testinfra.get_host("docker://hc-mol-backup-pg1")
PG2 = testinfra.get_host("docker://hc-mol-backup-pg2")
PG2_NAME = "hc-mol-backup-pg2"  # inventory name: the standby's application_name
REPO = testinfra.get_host("docker://hc-mol-backup-backup1")
RESTORE = testinfra.get_host("docker://hc-mol-backup-restore1")
CANARY = "HC-PLAINTEXT-CANARY-7f3a9c"
STANZA = "main"


def psql(host, sql, db="shop"):
    """Run SQL (fixed text written in this file) as postgres over the local socket; return stdout stripped."""
    cmd = host.run("timeout 300 runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s", db, sql)
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


def pgbackrest(host, *args):
    """pgBackRest as postgres, bounded (timeout exits 124 when the command hangs)."""
    return host.run("timeout 900 runuser -u postgres -- pgbackrest --stanza=%s " + " ".join(["%s"] * len(args)),
                    STANZA, *args)


def repo_info():
    cmd = pgbackrest(REPO, "--output=json", "info")
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)[0]


def postmaster_start(host):
    return psql(host, "SELECT pg_postmaster_start_time()", db="postgres")


def backup_manifest(label):
    """The backup's manifest from the (encrypted) repository, decrypted by pgBackRest's repo-get."""
    cmd = pgbackrest(REPO, "repo-get", f"backup/{STANZA}/{label}/backup.manifest")
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout


def assert_standby_follows(table):
    """pg2 streams from pg1 and replays a row written on pg1 now (after any restore): the cluster is whole."""
    rows = psql(PG1, "SELECT application_name || '|' || state FROM pg_stat_replication", db="postgres").splitlines()
    assert f"{PG2_NAME}|streaming" in rows, rows
    assert psql(PG2, "SELECT pg_is_in_recovery()", db="postgres") == "t"
    marker = psql(PG1, f"INSERT INTO {table} (id) VALUES (100000 + (random() * 100000)::int) RETURNING id")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if psql(PG2, f"SELECT count(*) FROM {table} WHERE id = {int(marker)}") == "1":
            break
        time.sleep(1)
    else:
        pytest.fail(f"row {marker} written on pg1 after the restore did not reach pg2 within 30 s")
    # Same timeline on both sides: the standby follows the restored primary, not the history before it.
    psql(PG1, "CHECKPOINT", db="postgres")
    primary_tli = psql(PG1, "SELECT timeline_id FROM pg_control_checkpoint()", db="postgres")
    assert psql(PG2, "SELECT received_tli FROM pg_stat_wal_receiver", db="postgres") == primary_tli


def run_playbook(name, **extra):
    """Run one of the project's playbooks against the Molecule inventory, the way an operator would."""
    require(EPHEMERAL is not None, "MOLECULE_EPHEMERAL_DIRECTORY is not set: these tests run under `molecule verify`")
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory"))
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(EPHEMERAL / "ansible.cfg")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(PROJECT / ".collections"))
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    cmd = ["ansible-playbook", "-i", inventory, str(PROJECT / "playbooks" / name)]
    for key, value in extra.items():
        cmd += ["-e", json.dumps({key: value})]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    return proc


def test_tls_servers_listen():
    assert REPO.socket("tcp://0.0.0.0:8432").is_listening
    assert PG1.socket("tcp://0.0.0.0:8432").is_listening
    assert PG2.socket("tcp://0.0.0.0:8432").is_listening
    assert REPO.service("pgbackrest").is_running


def test_tls_server_maps_client_names_to_the_stanza():
    # pg1's certificate is accepted for stanza main only: any other stanza is refused by the repository host.
    cmd = PG1.run("timeout 300 runuser -u postgres -- pgbackrest --stanza=other --output=json info")
    assert cmd.rc == 0, cmd.stderr
    status = json.loads(cmd.stdout)[0]["repo"][0]["status"]
    assert status["code"] != 0 and "access denied" in status["message"]


def test_no_ssh_between_hosts():
    """pgBackRest talks TLS between the hosts, never SSH: every side's configuration names the TLS transport for
    each remote, no SSH material exists for postgres, and nothing listens on 22 (a port check alone cannot fail
    on an image without sshd, so the configuration is what is asserted)."""
    conf = {h: h.file("/etc/pgbackrest.conf").content_string for h in (PG1, PG2, REPO)}
    for host in (PG1, PG2):
        assert re.search(r"^repo1-host-type=tls$", conf[host], re.MULTILINE), conf[host]
        assert not re.search(r"^repo1-host-type=ssh$", conf[host], re.MULTILINE)
    remotes = re.findall(r"^(pg\d+)-host=", conf[REPO], re.MULTILINE)
    assert remotes, conf[REPO]
    for pg in remotes:
        assert re.search(rf"^{pg}-host-type=tls$", conf[REPO], re.MULTILINE), (pg, conf[REPO])
    for host in (PG1, PG2, REPO):
        assert not host.file("/var/lib/postgresql/.ssh").exists
        assert not host.socket("tcp://0.0.0.0:22").is_listening


def test_check_passes_from_every_side():
    for host in (REPO, PG1, PG2):
        cmd = pgbackrest(host, "check")
        assert cmd.rc == 0, cmd.stderr


def test_standby_streams_and_backups_copy_from_it():
    assert psql(PG2, "SELECT pg_is_in_recovery()", db="postgres") == "t"
    replication = psql(PG1, "SELECT application_name || '|' || state FROM pg_stat_replication", db="postgres")
    assert f"{PG2_NAME}|streaming" in replication.splitlines()
    backups = repo_info()["backup"]
    assert backups
    # Each backup's own record (its manifest in the repository) says it was taken from a standby.
    for backup in backups:
        assert "option-backup-standby=true" in backup_manifest(backup["label"]).splitlines(), backup["label"]
    # The repository host's backup log shows pgBackRest waiting for the standby to replay to the backup start.
    log = REPO.file(f"/var/log/pgbackrest/{STANZA}-backup.log").content_string
    assert "replay on the standby reached" in log


def test_archiving_is_async_through_pgbackrest():
    assert psql(PG1, "SHOW archive_mode") == "on"
    assert "pgbackrest --stanza=main archive-push %p" in psql(PG1, "SHOW archive_command")
    conf = PG1.file("/etc/pgbackrest.conf").content_string
    assert "archive-async=y" in conf and "spool-path=/var/spool/pgbackrest" in conf
    assert "repo1-cipher-pass" not in conf  # only the repository host holds the passphrase
    # Pushes fail until the stanza exists (converge turns archive_mode on first); the latest attempt succeeded.
    assert pgbackrest(REPO, "check").rc == 0
    archived, ok = psql(
        PG1,
        "SELECT archived_count, last_archived_time > coalesce(last_failed_time, '-infinity') FROM pg_stat_archiver",
    ).split("|")
    assert int(archived) > 0 and ok == "t"


def test_full_backup_exists_and_repository_is_encrypted_aes():
    info = repo_info()
    assert info["status"]["code"] == 0
    assert info["cipher"] == "aes-256-cbc"
    assert any(b["type"] == "full" and not b["error"] for b in info["backup"])


def test_repository_files_hold_no_plaintext():
    psql(PG1, "CREATE TABLE IF NOT EXISTS canary (id int PRIMARY KEY, v text NOT NULL)")
    psql(PG1, f"INSERT INTO canary SELECT g, '{CANARY}-' || g FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING")
    psql(PG1, "CHECKPOINT")
    assert pgbackrest(REPO, "--type=incr", "backup").rc == 0
    assert pgbackrest(REPO, "check").rc == 0
    # Positive control: the value is readable in the database files, so grep would find it if it were stored so.
    assert PG1.run("timeout 300 grep -rqa %s /var/lib/postgresql/17/main/base", CANARY).rc == 0
    found = REPO.run("timeout 300 grep -rla %s /var/lib/pgbackrest", CANARY)
    assert found.rc == 1, f"plaintext found in repository files: {found.stdout}"
    # Every repository file is an OpenSSL-format encrypted stream (magic "Salted__").
    files = REPO.check_output("find /var/lib/pgbackrest -type f -size +0 | head -n 200").splitlines()
    assert len(files) > 10
    for path in files:
        assert REPO.check_output("head -c 8 %s", path) == "Salted__", path


def test_wrong_passphrase_restore_fails_clearly_and_changes_nothing():
    before = postmaster_start(PG1)
    REPO.run("rm -rf /tmp/wrongpass-target /tmp/wrongpass.conf")
    REPO.check_output("install -d -o postgres -g postgres -m 0700 /tmp/wrongpass-target")
    conf = (
        "[global]\\nrepo1-path=/var/lib/pgbackrest\\nrepo1-cipher-type=aes-256-cbc\\n"
        "repo1-cipher-pass=this-is-not-the-passphrase-0000\\n[main]\\npg1-path=/tmp/wrongpass-target\\n"
    )
    REPO.check_output(f"printf '{conf}' > /tmp/wrongpass.conf && chown postgres /tmp/wrongpass.conf")
    # pgBackRest echoes the undecryptable bytes: keep its output in a file and grep it as binary.
    cmd = REPO.run(
        "timeout 600 runuser -u postgres -- pgbackrest --config=/tmp/wrongpass.conf --stanza=main restore > /tmp/wrongpass.out 2>&1"
    )
    assert cmd.rc != 0
    assert REPO.run("grep -aq 'unable to load info file' /tmp/wrongpass.out").rc == 0
    assert REPO.run("grep -aq 'no backup set found to restore' /tmp/wrongpass.out").rc == 0
    assert REPO.check_output("ls -A /tmp/wrongpass-target") == ""
    assert postmaster_start(PG1) == before
    assert psql(PG1, "SELECT count(*) FROM canary") == "1000"
    assert repo_info()["status"]["code"] == 0


def test_pitr_refuses_bad_targets_before_stopping_anything():
    before = postmaster_start(PG1)
    oldest_stop = min(b["timestamp"]["stop"] for b in repo_info()["backup"])
    too_old = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(oldest_stop - 3600))
    future = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(time.time() + 3600))
    cases = [
        ({"pitr_target_type": "time", "pitr_target": future}, "in the future"),
        ({"pitr_target_type": "time", "pitr_target": too_old}, "before the end of the oldest backup"),
        ({"pitr_target_type": "time", "pitr_target": "yesterday at noon"}, "malformed time target"),
        ({"pitr_target_type": "lsn", "pitr_target": "0/0"}, "before the end of the oldest backup"),
        ({"pitr_target_type": "xid", "pitr_target": "12ab"}, "malformed transaction id target"),
        ({"pitr_target_type": "when-ever"}, "pitr_target_type must be one of"),
    ]
    for extra, words in cases:
        proc = run_playbook("pitr_restore.yml", **extra)
        assert proc.returncode != 0, extra
        out = proc.stdout + proc.stderr
        assert words in out, (extra, out[-3000:])
        assert "Refusing to restore, nothing was stopped" in out or "must be one of" in out
    assert postmaster_start(PG1) == before


def test_pitr_to_a_time_brings_back_exactly_the_rows_before_it():
    psql(PG1, "DROP TABLE IF EXISTS pitr_t")
    psql(PG1, "CREATE TABLE pitr_t (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    psql(PG1, "INSERT INTO pitr_t (id) SELECT generate_series(1, 100)")
    time.sleep(1.2)
    target = psql(PG1, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00'")
    time.sleep(1.2)
    psql(PG1, "INSERT INTO pitr_t (id) SELECT generate_series(101, 150)")
    psql(PG1, "DROP TABLE pitr_t")
    started = time.monotonic()
    proc = run_playbook("pitr_restore.yml", pitr_target_type="time", pitr_target=target)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    print("PITR to time took %.1f s" % (time.monotonic() - started))
    assert psql(PG1, "SELECT count(*), min(id), max(id) FROM pitr_t") == "100|1|100"
    assert psql(PG1, f"SELECT count(*) FROM pitr_t WHERE at > '{target}'") == "0"
    # A working primary again: not in recovery, accepts writes, archives the new timeline.
    assert psql(PG1, "SELECT pg_is_in_recovery()") == "f"
    psql(PG1, "INSERT INTO pitr_t (id) VALUES (1000)")
    assert int(psql(PG1, "SELECT timeline_id FROM pg_control_checkpoint()")) >= 2
    assert pgbackrest(PG1, "check").rc == 0
    assert psql(PG1, "SELECT count(*) FROM canary") == "1000"
    assert_standby_follows("pitr_t")


def test_pitr_to_a_named_restore_point():
    psql(PG1, "DROP TABLE IF EXISTS rp_t")
    psql(PG1, "CREATE TABLE rp_t (id int PRIMARY KEY)")
    psql(PG1, "INSERT INTO rp_t SELECT generate_series(1, 10)")
    psql(PG1, "SELECT pg_create_restore_point('hc_before_cleanup')")
    psql(PG1, "INSERT INTO rp_t SELECT generate_series(11, 15)")
    psql(PG1, "DELETE FROM rp_t WHERE id <= 5")
    proc = run_playbook("pitr_restore.yml", pitr_target_type="name", pitr_target="hc_before_cleanup")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert psql(PG1, "SELECT count(*), min(id), max(id) FROM rp_t") == "10|1|10"
    assert psql(PG1, "SELECT pg_is_in_recovery()") == "f"
    psql(PG1, "INSERT INTO rp_t VALUES (99)")
    assert pgbackrest(PG1, "check").rc == 0
    assert_standby_follows("rp_t")


def test_pitr_to_a_transaction_id_keeps_that_transaction_and_drops_later_ones():
    psql(PG1, "DROP TABLE IF EXISTS xid_t")
    psql(PG1, "CREATE TABLE xid_t (id int PRIMARY KEY)")
    psql(PG1, "INSERT INTO xid_t SELECT generate_series(1, 10)")
    # One committing transaction inserts 11..20 and reports its own id.
    insert = (
        "WITH ins AS (INSERT INTO xid_t SELECT generate_series({}, {}) RETURNING id) "
        "SELECT txid_current(), count(*) FROM ins"
    )
    xid, inserted = psql(PG1, insert.format(11, 20)).split("|")
    assert inserted == "10"
    later, inserted = psql(PG1, insert.format(21, 30)).split("|")
    assert int(later) > int(xid)
    psql(PG1, "DELETE FROM xid_t WHERE id <= 15")
    proc = run_playbook("pitr_restore.yml", pitr_target_type="xid", pitr_target=xid)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # Inclusive target: the transaction itself and the earlier one are back; the later insert and the delete are not.
    assert psql(PG1, "SELECT count(*), min(id), max(id) FROM xid_t") == "20|1|20"
    assert psql(PG1, "SELECT pg_is_in_recovery()") == "f"
    assert pgbackrest(PG1, "check").rc == 0
    assert_standby_follows("xid_t")


def test_restore_drill_passes_without_touching_the_cluster():
    before = postmaster_start(PG1)
    timeline = psql(PG1, "SELECT timeline_id FROM pg_control_checkpoint()")
    proc = run_playbook(
        "restore_drill.yml",
        restore_drill_canary_db="shop",
        restore_drill_canary_table="public.canary",
        restore_drill_canary_expected_rows=1000,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "RESTORE DRILL PASSED" in proc.stdout
    assert postmaster_start(PG1) == before
    # The running cluster kept its server process and timeline; the drill left nothing running behind.
    assert psql(PG1, "SELECT timeline_id FROM pg_control_checkpoint()") == timeline
    assert RESTORE.run("pgrep -u postgres -f 'postgres -D'").rc == 1
    assert not RESTORE.file("/var/lib/postgresql/restore-drill").exists


def test_restore_drill_fails_on_a_wrong_canary_count():
    proc = run_playbook(
        "restore_drill.yml",
        restore_drill_canary_db="shop",
        restore_drill_canary_table="public.canary",
        restore_drill_canary_expected_rows=999,
    )
    assert proc.returncode != 0
    assert "Restore drill FAILED" in proc.stdout + proc.stderr
    assert re.search(r"has\s+1000\s+rows.*expected\s+999", proc.stdout + proc.stderr, re.DOTALL)


def test_scheduled_backup_unit_takes_a_backup():
    timers = REPO.check_output("systemctl list-timers --all --no-legend")
    for kind in ("full", "diff", "incr"):
        assert f"pgbackrest-{kind}.timer" in timers
        assert REPO.service(f"pgbackrest-{kind}.timer").is_enabled
    labels_before = {b["label"] for b in repo_info()["backup"]}
    REPO.check_output("timeout 900 systemctl start pgbackrest-incr.service")
    new = [b for b in repo_info()["backup"] if b["label"] not in labels_before]
    assert len(new) == 1 and new[0]["type"] in ("incr", "full") and not new[0]["error"]
