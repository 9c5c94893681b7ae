# Copyright: HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgbackrest_info
short_description: Report the state of a pgBackRest repository (backups, sizes, WAL range, age of the last good backup)
version_added: "0.1.0"
description:
  - Runs C(pgbackrest info --output=json) on the target host and returns the parsed repository state of one stanza
    (or of every stanza the host may see) - the backup sets with their sizes, LSN and WAL ranges and times,
    the archived WAL range, the encryption in use, and the age of the newest backup that completed without error.
  - Optionally checks a point-in-time-recovery target (a time, an LSN, a transaction id, a restore point name) against
    the repository, so that a restore playbook can refuse a target that is malformed, in the future or older than
    the oldest backup B(before) it stops anything.
  - The module only reads. It never changes the repository, the configuration or the cluster, in check mode or not.
options:
  stanza:
    description:
      - Stanza to report. When omitted, every stanza that the host's configuration can reach is reported, and the
        summary keys (RV(backups), RV(last_good_backup), ...) describe the first one.
    type: str
  config:
    description: pgBackRest configuration file to use instead of the default.
    type: path
  binary:
    description: Path or name of the pgbackrest executable.
    type: str
    default: pgbackrest
  fail_on_status:
    description:
      - Fail when pgBackRest reports a stanza status other than C(ok) (code 0), for example a missing stanza or
        an unreachable repository. When false, the status is returned and the caller decides.
    type: bool
    default: false
  target_type:
    description:
      - Kind of recovery target to check. C(latest) and C(immediate) need no I(target).
      - C(time) expects an ISO 8601 timestamp with an explicit UTC offset, for example C(2026-11-25 04:30:00+00:00)
        (a time without an offset is refused as ambiguous).
      - C(lsn) expects C(X/X) in hexadecimal, C(xid) a positive integer, C(name) a restore point name of at most
        63 bytes.
    type: str
    choices: [time, lsn, xid, name, latest, immediate]
  target:
    description: The recovery target value to check, as described under I(target_type).
    type: str
  now:
    description:
      - Epoch seconds to treat as the current time when checking a C(time) target. Defaults to the host's clock.
        Meant for tests.
    type: float
attributes:
  check_mode:
    support: full
    description: The module only reads; it behaves the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
notes:
  - The user running the module must be able to read the pgBackRest configuration (usually C(postgres)); on a
    database host the repository is reached through the configured repository host.
seealso:
  - name: pgBackRest info command
    description: Reference of the command this module runs.
    link: https://pgbackrest.org/command.html#command-info
  - name: PostgreSQL recovery targets
    description: The recovery target settings a restore writes.
    link: https://www.postgresql.org/docs/17/runtime-config-wal.html#RUNTIME-CONFIG-WAL-RECOVERY-TARGET
author:
  - HingeCraft platform engineering (@hingecraft)
"""

EXAMPLES = r"""
- name: Read the repository state
  hingecraft.enterprise_db.pgbackrest_info:
    stanza: main
  become: true
  become_user: postgres
  register: repo

- name: A good backup is less than a day old
  ansible.builtin.assert:
    that:
      - repo.last_good_backup is not none
      - repo.last_good_backup.age_seconds < 86400
    fail_msg: "Last good backup is {{ repo.last_good_backup.age_seconds | default('n/a') }} s old"

- name: Check a PITR target before stopping anything
  hingecraft.enterprise_db.pgbackrest_info:
    stanza: main
    target_type: time
    target: "2026-11-25 04:30:00+00:00"
  become: true
  become_user: postgres
  register: target
  failed_when: not target.target_check.ok
"""

RETURN = r"""
stanzas:
  description: Every stanza reported, in the summarised shape described by the keys below (one dict per stanza).
  returned: always
  type: list
  elements: dict
stanza:
  description: Name of the summarised stanza.
  returned: always
  type: str
  sample: main
status:
  description: pgBackRest's status of the stanza (code 0 is ok).
  returned: always
  type: dict
  sample: {code: 0, message: ok}
ok:
  description: True when the stanza status code is 0.
  returned: always
  type: bool
cipher:
  description: Repository cipher (C(none) when the repository is not encrypted).
  returned: always
  type: str
  sample: aes-256-cbc
backups:
  description: Backup sets, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    label: {description: Backup label, type: str, sample: 20261125-043038F}
    type:
      description: "full, diff or incr"
      type: str
    error:
      description: "True when pgBackRest found checksum errors in the backup"
      type: bool
    start:
      description: "Start time, epoch seconds"
      type: int
    stop:
      description: "Stop time, epoch seconds"
      type: int
    stop_iso:
      description: "Stop time, ISO 8601 UTC"
      type: str
    duration_seconds:
      description: "stop - start"
      type: int
    size:
      description: "Database size in bytes"
      type: int
    delta:
      description: "Bytes copied by this backup"
      type: int
    repo_size:
      description: "Size in the repository in bytes (compressed, encrypted)"
      type: int
    repo_delta:
      description: "Repository bytes written by this backup"
      type: int
    lsn_start:
      description: "LSN at backup start"
      type: str
    lsn_stop:
      description: "LSN at backup stop (the earliest consistent point)"
      type: str
    wal_start:
      description: "First WAL segment needed"
      type: str
    wal_stop:
      description: "Last WAL segment needed"
      type: str
    prior:
      description: "Label of the backup this one depends on"
      type: str
wal:
  description: Archived WAL range of the current database (C(min)/C(max) segment names), or null when none.
  returned: always
  type: dict
  sample: {min: "000000010000000000000001", max: "000000010000000000000005"}
oldest_backup:
  description: The oldest backup set (same shape as an item of RV(backups)), or null.
  returned: always
  type: dict
last_good_backup:
  description: The newest backup without error, with C(age_seconds) added, or null.
  returned: always
  type: dict
last_full_backup:
  description: The newest full backup without error, with C(age_seconds) added, or null.
  returned: always
  type: dict
total_repo_size:
  description: Sum of the repository sizes of all backup sets (bytes, WAL archive not included).
  returned: always
  type: int
target_check:
  description:
    - Result of checking I(target_type)/I(target) against the repository. C(ok) false comes with C(msg) saying why.
    - C(backup) names the backup set that a restore to this target would start from (the newest one that ends
      before the target), when the module can tell.
  returned: when I(target_type) is set
  type: dict
  sample: {ok: false, msg: "target 2026-01-01 00:00:00+00:00 is before the oldest backup's end", backup: null}
cmd:
  description: The command that was run.
  returned: always
  type: list
  elements: str
"""

import datetime
import json
import re
import time

from ansible.module_utils.basic import AnsibleModule

LSN_RE = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
XID_RE = re.compile(r"^[0-9]{1,20}$")
TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?\s*(Z|[+-]\d{2}(:?\d{2})?)$"
)


def lsn_to_int(lsn):
    """'16/B374D848' -> integer position."""
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def iso_utc(epoch):
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).isoformat()


def parse_time(value):
    """Parse an ISO 8601 time that carries an explicit offset; return epoch seconds (float) or raise ValueError."""
    text = value.strip()
    if not TIME_RE.match(text):
        raise ValueError(
            "expected YYYY-MM-DD HH:MM[:SS[.ffffff]] followed by a UTC offset such as +00:00 or Z"
        )
    text = text.replace(" ", "T", 1).replace("Z", "+00:00")
    text = re.sub(r"\s+", "", text)
    # Python 3.10 accepts only +HH:MM; normalise +HH and +HHMM.
    match = re.search(r"([+-])(\d{2})(\d{2})?$", text)
    if match and ":" not in text[match.start():]:
        text = text[: match.start()] + "{}{}:{}".format(match.group(1), match.group(2), match.group(3) or "00")
    parsed = datetime.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("the time has no UTC offset")
    return parsed.timestamp()


def summarise_backup(raw):
    info = raw.get("info") or {}
    repo = info.get("repository") or {}
    ts = raw.get("timestamp") or {}
    lsn = raw.get("lsn") or {}
    archive = raw.get("archive") or {}
    start, stop = ts.get("start"), ts.get("stop")
    return {
        "label": raw.get("label"),
        "type": raw.get("type"),
        "error": bool(raw.get("error", False)),
        "start": start,
        "stop": stop,
        "stop_iso": iso_utc(stop),
        "duration_seconds": (stop - start) if start is not None and stop is not None else None,
        "size": info.get("size"),
        "delta": info.get("delta"),
        "repo_size": repo.get("size"),
        "repo_delta": repo.get("delta"),
        "lsn_start": lsn.get("start"),
        "lsn_stop": lsn.get("stop"),
        "wal_start": archive.get("start"),
        "wal_stop": archive.get("stop"),
        "prior": raw.get("prior"),
    }


def with_age(backup, now):
    if backup is None:
        return None
    result = dict(backup)
    result["age_seconds"] = int(now - backup["stop"]) if backup.get("stop") is not None else None
    return result


def summarise_stanza(raw, now):
    backups = sorted(
        (summarise_backup(b) for b in raw.get("backup") or []),
        key=lambda b: (b["stop"] or 0, b["label"] or ""),
    )
    good = [b for b in backups if not b["error"]]
    full = [b for b in good if b["type"] == "full"]
    db_list = raw.get("db") or []
    current_db = max((d.get("id", 0) for d in db_list), default=None)
    wal = None
    for archive in raw.get("archive") or []:
        same_db = current_db is None or (archive.get("database") or {}).get("id") == current_db
        if same_db and (archive.get("min") or archive.get("max")):
            wal = {"id": archive.get("id"), "min": archive.get("min"), "max": archive.get("max")}
    status = raw.get("status") or {}
    return {
        "stanza": raw.get("name"),
        "status": {"code": status.get("code"), "message": status.get("message")},
        "ok": status.get("code") == 0,
        "cipher": raw.get("cipher"),
        "backups": backups,
        "wal": wal,
        "oldest_backup": good[0] if good else None,
        "last_good_backup": with_age(good[-1], now) if good else None,
        "last_full_backup": with_age(full[-1], now) if full else None,
        "total_repo_size": sum(b["repo_size"] or 0 for b in backups),
        "backup_lock_held": bool(((status.get("lock") or {}).get("backup") or {}).get("held", False)),
    }


def wal_segment_end_lsn(segment, wal_segment_size=16 * 1024 * 1024):
    """End position (exclusive) of a WAL segment name such as 000000010000000000000005."""
    log_id = int(segment[8:16], 16)
    seg = int(segment[16:24], 16)
    segs_per_id = 0x100000000 // wal_segment_size
    return (log_id * segs_per_id + seg + 1) * wal_segment_size


def check_target(summary, target_type, target, now):
    """Return {ok, msg, backup}: can a restore reach this target from this repository?"""
    good = [b for b in summary["backups"] if not b["error"]]
    result = {"ok": False, "msg": "", "backup": None, "type": target_type, "target": target}
    if not summary["ok"]:
        result["msg"] = "stanza {} is not usable: {}".format(summary["stanza"], summary["status"]["message"])
        return result
    if not good:
        result["msg"] = "the repository holds no usable backup for stanza {}".format(summary["stanza"])
        return result
    oldest = good[0]
    if target_type in ("latest", "immediate"):
        if target not in (None, ""):
            result["msg"] = f"target_type {target_type} takes no target (got {target!r})"
            return result
        result.update(ok=True, msg="ok", backup=good[-1]["label"])
        return result
    if target in (None, "") or not str(target).strip():
        result["msg"] = f"target_type {target_type} needs a target value"
        return result
    target = str(target).strip()
    if target_type == "time":
        try:
            epoch = parse_time(target)
        except ValueError as exc:
            result["msg"] = f"malformed time target {target!r}: {exc}"
            return result
        result["target_epoch"] = epoch
        if epoch > now:
            result["msg"] = f"time target {target} is in the future (now is {iso_utc(now)})"
            return result
        if epoch < oldest["stop"]:
            result["msg"] = (
                "time target {} is before the end of the oldest backup {} ({}); no backup can reach it".format(target, oldest["label"], oldest["stop_iso"])
            )
            return result
        candidates = [b for b in good if b["stop"] <= epoch]
        result.update(ok=True, msg="ok", backup=candidates[-1]["label"])
        return result
    if target_type == "lsn":
        if not LSN_RE.match(target):
            result["msg"] = f"malformed LSN target {target!r}: expected hexadecimal X/X such as 0/3000060"
            return result
        position = lsn_to_int(target)
        if position < lsn_to_int(oldest["lsn_stop"]):
            result["msg"] = "LSN target {} is before the end of the oldest backup {} ({})".format(
                target, oldest["label"], oldest["lsn_stop"])
            return result
        wal = summary.get("wal")
        if wal and wal.get("max") and position >= wal_segment_end_lsn(wal["max"]):
            result["msg"] = "LSN target {} is beyond the newest archived WAL segment {} (in the future)".format(
                target, wal["max"])
            return result
        candidates = [b for b in good if lsn_to_int(b["lsn_stop"]) <= position]
        result.update(ok=True, msg="ok", backup=candidates[-1]["label"])
        return result
    if target_type == "xid":
        if not XID_RE.match(target) or int(target) < 3 or int(target) >= 2 ** 64:
            result["msg"] = f"malformed transaction id target {target!r}: expected an integer >= 3"
            return result
        result.update(ok=True, msg="ok")
        return result
    if target_type == "name":
        if len(target.encode("utf-8")) > 63:
            result["msg"] = f"restore point name {target!r} is longer than 63 bytes"
            return result
        if "'" in target or "\n" in target:
            result["msg"] = f"restore point name {target!r} contains a quote or a newline"
            return result
        result.update(ok=True, msg="ok")
        return result
    result["msg"] = f"unknown target_type {target_type!r}"
    return result


def clean_text(text):
    """Text with every byte that is not valid UTF-8 (decoded as a surrogate) replaced by U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_info(text, now):
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("pgbackrest info did not return a JSON list")  # noqa: TRY004 - caught with other parse errors
    return [summarise_stanza(item, now) for item in data]


def main():
    module = AnsibleModule(
        argument_spec={
            "stanza": {"type": "str"},
            "config": {"type": "path"},
            "binary": {"type": "str", "default": "pgbackrest"},
            "fail_on_status": {"type": "bool", "default": False},
            "target_type": {"type": "str", "choices": ["time", "lsn", "xid", "name", "latest", "immediate"]},
            "target": {"type": "str"},
            "now": {"type": "float"},
        },
        supports_check_mode=True,
    )
    params = module.params
    binary = module.get_bin_path(params["binary"], required=True) if "/" not in params["binary"] else params["binary"]
    cmd = [binary, "--output=json"]
    if params["config"]:
        cmd.append("--config={}".format(params["config"]))
    if params["stanza"]:
        cmd.append("--stanza={}".format(params["stanza"]))
    cmd.append("info")
    rc, out, err = module.run_command(cmd)
    # pgBackRest quotes the raw bytes of an unreadable info file in its message (an info file encrypted with
    # another cipher passphrase): replace what is not UTF-8 so the message reaches the user instead of a
    # serialisation error.
    out, err = (clean_text(text) for text in (out, err))
    if rc != 0:
        module.fail_json(msg=f"pgbackrest info failed (rc={rc}): {(err or out).strip()}", cmd=cmd, rc=rc)
    now = params["now"] if params["now"] is not None else time.time()
    try:
        stanzas = parse_info(out, now)
    except ValueError as exc:
        module.fail_json(msg=f"cannot parse pgbackrest info output: {exc}", cmd=cmd, stdout=out)
    if not stanzas:
        module.fail_json(msg="pgbackrest info reported no stanza", cmd=cmd)
    first = stanzas[0]
    result = dict(changed=False, cmd=cmd, stanzas=stanzas, **first)
    if params["target_type"]:
        result["target_check"] = check_target(first, params["target_type"], params["target"], now)
    if params["fail_on_status"] and not first["ok"]:
        module.fail_json(
            msg="stanza {} status is {}: {}".format(first["stanza"], first["status"]["code"], first["status"]["message"]),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
