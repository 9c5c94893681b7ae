"""Unit tests of pgbackrest_info on `pgbackrest info --output=json` captured from pgBackRest 2.55.1
(an encrypted repository reached over TLS: one full and one incremental backup; a stanza the TLS server refuses;
a stanza that does not exist)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible.module_utils.testing import patch_module_args
from ansible_collections.hingecraft.enterprise_db.plugins.modules import (
    pgbackrest_info as mod,
)

FIXTURES = Path(__file__).parent / "fixtures"
FULL_STOP = 1795581040  # 20261125-043038F ends here
INCR_STOP = 1795581047


def load(name):
    return (FIXTURES / (f"pgbackrest_info_{name}.json")).read_text()


@pytest.fixture(name="summary")
def fixture_summary():
    return mod.parse_info(load("info2"), now=INCR_STOP + 100)[0]


def test_backups_sorted_with_sizes_and_ranges(summary):
    assert summary["stanza"] == "main"
    assert summary["ok"] is True
    assert summary["cipher"] == "aes-256-cbc"
    labels = [b["label"] for b in summary["backups"]]
    assert labels == ["20261125-043038F", "20261125-043038F_20261125-043045I"]
    full, incr = summary["backups"]
    assert full["type"] == "full" and incr["type"] == "incr"
    assert full["size"] == 23382430 and full["repo_size"] == 3027200
    assert incr["delta"] == 1663234 and incr["repo_delta"] == 181120
    assert incr["prior"] == "20261125-043038F"
    assert full["lsn_stop"] == "0/3000050"
    assert full["wal_start"] == "000000010000000000000002"
    assert full["duration_seconds"] == 2
    assert full["stop_iso"].startswith("2026-11-25T")
    assert summary["total_repo_size"] == 3027200 + 3034464


def test_wal_range_and_ages(summary):
    assert summary["wal"]["min"] == "000000010000000000000001"
    assert summary["wal"]["max"] == "000000010000000000000005"
    assert summary["last_good_backup"]["label"].endswith("I")
    assert summary["last_good_backup"]["age_seconds"] == 100
    assert summary["last_full_backup"]["label"] == "20261125-043038F"
    assert summary["last_full_backup"]["age_seconds"] == INCR_STOP + 100 - FULL_STOP
    assert summary["oldest_backup"]["label"] == "20261125-043038F"


def test_backup_with_error_is_not_good():
    data = json.loads(load("info2"))
    data[0]["backup"][1]["error"] = True
    summary = mod.parse_info(json.dumps(data), now=INCR_STOP)[0]
    assert summary["last_good_backup"]["label"] == "20261125-043038F"
    assert summary["backups"][1]["error"] is True


def test_missing_stanza_and_refused_stanza():
    missing = mod.parse_info(load("info_nostanza"), now=0)[0]
    assert missing["ok"] is False
    assert missing["status"] == {"code": 1, "message": "missing stanza path"}
    assert missing["backups"] == [] and missing["last_good_backup"] is None and missing["wal"] is None
    refused = mod.parse_info(load("info_missing"), now=0)[0]
    assert refused["ok"] is False and refused["status"]["code"] == 99
    check = mod.check_target(refused, "latest", None, now=0)
    assert check["ok"] is False and "not usable" in check["msg"]


def test_not_a_list_is_rejected():
    with pytest.raises(ValueError):
        mod.parse_info('{"name": "main"}', now=0)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("2026-11-25 04:30:40+00:00", FULL_STOP),
        ("2026-11-25T04:30:40Z", FULL_STOP),
        ("2026-11-25 05:30:40+01", FULL_STOP),
        ("2026-11-25 05:30:40+0100", FULL_STOP),
        ("2026-11-25 04:30:40.5+00:00", FULL_STOP + 0.5),
    ],
)
def test_parse_time_accepts_offsets(value, expected):
    assert mod.parse_time(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value", ["2026-11-25 04:30:40", "yesterday", "2026-13-45 04:30:40+00", "2026-11-25 04:30:40+00; drop"]
)
def test_parse_time_rejects_naive_or_malformed(value):
    with pytest.raises(ValueError):
        mod.parse_time(value)


def test_time_target_between_backups_picks_the_full(summary):
    check = mod.check_target(summary, "time", "2026-11-25 04:30:42+00:00", now=INCR_STOP + 100)
    assert check == {**check, "ok": True, "backup": "20261125-043038F"}


def test_time_target_after_incr_picks_the_incr(summary):
    check = mod.check_target(summary, "time", "2026-11-25 04:31:00+00:00", now=INCR_STOP + 100)
    assert check["ok"] is True and check["backup"].endswith("I")


@pytest.mark.parametrize(
    "target,words",
    [
        ("2026-11-25 04:30:39+00:00", "before the end of the oldest backup"),
        ("2020-01-01 00:00:00+00:00", "before the end of the oldest backup"),
        ("2026-11-25 05:00:00+00:00", "in the future"),
        ("2026-11-25 04:31:00", "malformed time target"),
        ("", "needs a target"),
    ],
)
def test_time_target_refused(summary, target, words):
    check = mod.check_target(summary, "time", target, now=INCR_STOP + 100)
    assert check["ok"] is False
    assert words in check["msg"]


@pytest.mark.parametrize(
    "target,ok,words",
    [
        ("0/3000050", True, "ok"),
        ("0/5000200", True, "ok"),
        ("0/2FFFFFF", False, "before the end of the oldest backup"),
        ("0/6000000", False, "beyond the newest archived WAL"),
        ("0/XYZ", False, "malformed LSN"),
        ("3000050", False, "malformed LSN"),
    ],
)
def test_lsn_target(summary, target, ok, words):
    check = mod.check_target(summary, "lsn", target, now=INCR_STOP)
    assert check["ok"] is ok
    assert words in check["msg"]


def test_lsn_helpers():
    assert mod.lsn_to_int("1/0") == 2 ** 32
    assert mod.wal_segment_end_lsn("000000010000000000000005") == 6 * 16 * 1024 * 1024
    assert mod.wal_segment_end_lsn("000000020000000100000000") == 2 ** 32 + 16 * 1024 * 1024


@pytest.mark.parametrize(
    "kind,target,ok",
    [
        ("xid", "1234", True),
        ("xid", "-5", False),
        ("xid", "12a", False),
        ("name", "before_drop", True),
        ("name", "x" * 64, False),
        ("name", "it's", False),
        ("latest", None, True),
        ("latest", "now", False),
        ("immediate", "", True),
    ],
)
def test_other_targets(summary, kind, target, ok):
    assert mod.check_target(summary, kind, target, now=INCR_STOP)["ok"] is ok


def test_no_backup_refuses_every_target():
    empty = json.loads(load("info2"))
    empty[0]["backup"] = []
    summary = mod.parse_info(json.dumps(empty), now=0)[0]
    check = mod.check_target(summary, "latest", None, now=0)
    assert check["ok"] is False and "no usable backup" in check["msg"]


def run_main(monkeypatch, args, rc=0, out="", err=""):
    calls = []

    def fake_run_command(self, cmd, *a, **kw):
        calls.append(cmd)
        return rc, out, err

    monkeypatch.setattr(mod.AnsibleModule, "run_command", fake_run_command)
    monkeypatch.setattr(mod.AnsibleModule, "get_bin_path", lambda self, name, required=False: "/usr/bin/" + name)
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        mod.main()
    return exc.value.code, calls


def test_main_reports_without_change_in_check_mode(monkeypatch, capsys):
    code, calls = run_main(
        monkeypatch,
        {"stanza": "main", "target_type": "time", "target": "2026-11-25 04:30:42+00:00",
         "now": INCR_STOP + 100, "_ansible_check_mode": True},
        out=load("info2"),
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert calls == [["/usr/bin/pgbackrest", "--output=json", "--stanza=main", "info"]]
    assert result["changed"] is False
    assert result["last_good_backup"]["age_seconds"] == 100
    assert result["target_check"]["ok"] is True


def test_main_fails_when_command_fails(monkeypatch, capsys):
    code, _calls = run_main(monkeypatch, {"stanza": "main"}, rc=31, err="ERROR: [031]: option is not allowed")
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["failed"] is True
    assert "rc=31" in result["msg"]


def test_main_fail_on_status(monkeypatch, capsys):
    code, _calls = run_main(monkeypatch, {"stanza": "ghost", "fail_on_status": True}, out=load("info_nostanza"))
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and "missing stanza path" in result["msg"]


def test_main_reports_unreadable_info_file_as_text(monkeypatch, capsys):
    """An info file encrypted with another passphrase: pgBackRest quotes its raw bytes in the status message.

    run_command decodes them as surrogates; the module must still return JSON (Ansible refuses surrogates) and keep
    the message, so the role can name the problem (lab left by another checkout, code 99).
    """
    raw = b'key/value found outside of section at line 1: \xf8\x941*[|\xc3^\x94'.decode("utf-8", "surrogateescape")
    info = json.dumps([{"name": "main", "status": {"code": 99, "message": "[FormatError] unable to load info file: "},
                        "backup": [], "archive": [], "db": [], "cipher": "aes-256-cbc", "repo": []}])
    out = info.replace('info file: "', 'info file: ' + raw.replace("\\", "\\\\") + '"')
    code, _calls = run_main(monkeypatch, {"stanza": "main"}, out=out)
    printed = capsys.readouterr().out
    result = json.loads(printed)
    assert code == 0
    assert result["status"]["code"] == 99
    assert result["status"]["message"].startswith("[FormatError] unable to load info file: key/value found outside")
    assert "\ufffd" in result["status"]["message"]
    printed.encode("utf-8")  # strict: no surrogate survived
