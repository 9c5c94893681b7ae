#!/usr/bin/python3
"""Node agent of hingecraft.enterprise_db.replication: fences a stale primary and rejoins it as a standby.

Runs on every PostgreSQL node (the hc-pg-keeper service). Every few seconds it asks the local server whether it
is a primary and, if so, asks its peers. When a peer is a primary on a NEWER timeline (it was promoted while
this node was dead or cut off), this node is a stale primary: on two polls in a row it is stopped at once
(fenced), rewound from the new primary with pg_rewind, and started as a standby of it (standby.signal,
primary_conninfo, its physical slot). pgpool's keeper then attaches it again once it streams.

It never promotes, never touches a standby, never starts a server it did not stop itself, and does nothing
while the pause file exists (playbooks/rejoin.yml and planned maintenance create it). When pg_rewind fails the
node stays stopped, which is safe, and needs playbooks/rejoin.yml (a fresh clone).
Settings: /etc/hingecraft/pg_keeper.json (passwords only through the passfile it names).
"""

import json
import os
import pwd
import subprocess
import sys
import time

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

CONFIG = os.environ.get("HC_PG_KEEPER_CONFIG", "/etc/hingecraft/pg_keeper.json")
STATE_SQL = (
    "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN NULL "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END"
)


def log(msg):
    print(f"hc_pg_keeper: {msg}", file=sys.stderr, flush=True)


def conninfo(cfg, host, port, **extra):
    params = {
        "host": host, "port": port, "dbname": "postgres", "user": cfg["superuser"],
        "sslmode": "verify-full", "sslrootcert": cfg["sslrootcert"], "passfile": cfg["passfile"],
        "connect_timeout": cfg.get("connect_timeout", 2), "application_name": "hc_pg_keeper",
    }
    params.update(extra)
    return make_conninfo(**params)


def state(cfg, host, port):
    """(in_recovery, timeline of a primary) or None when the node does not answer."""
    try:
        with psycopg.connect(conninfo(cfg, host, port), autocommit=True) as conn:
            row = conn.execute(sql.SQL(STATE_SQL)).fetchone()
            return bool(row[0]), row[1]
    except psycopg.Error:
        return None


def newer_primary(me, peers):
    """Pure decision. me: (in_recovery, timeline) of this node; peers: {name: state or None}.
    Returns the name of a peer that is a primary on a newer timeline than this primary, else None."""
    if me is None or me[0] or me[1] is None:
        return None
    newer = [(st[1], name) for name, st in peers.items() if st is not None and not st[0] and st[1] is not None
             and st[1] > me[1]]
    return max(newer)[1] if newer else None


def run(argv, timeout, as_postgres=False):
    if as_postgres:
        argv = ["runuser", "-u", "postgres", "--"] + argv
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        log(f"{' '.join(argv[:6])} failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    return res.returncode == 0


def set_auto_conf(path, values):
    lines = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.split("=", 1)[0].strip() not in values]
    for key, value in values.items():
        lines.append(f"{key} = '{value.replace(chr(39), chr(39) * 2)}'")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chown(path, *owner_ids())


def owner_ids():
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


# pg_rewind sets the rewound node's minimum recovery point to the source's WAL position at the end of the rewind;
# the node is consistent (and starts) only once it has replayed past it. An idle primary writes nothing more, and
# the standby waited for the next write (seen: 16 minutes, systemctl start timing out). One flushed WAL record
# written after the rewind moves the primary past that point.
NUDGE_SQL = "SELECT pg_logical_emit_message(false, 'hingecraft', 'rewound standby catch-up', true)"


def nudge_wal(cfg, peer):
    try:
        with psycopg.connect(conninfo(cfg, peer["host"], int(peer["port"])), autocommit=True) as conn:
            conn.execute(sql.SQL(NUDGE_SQL))
    except psycopg.Error as exc:
        log(f"could not write a WAL record on {peer['name']} after the rewind: {str(exc).strip()}")


def rejoin(cfg, peer):
    host, port = peer["host"], int(peer["port"])
    log(f"fencing: stopping the stale primary {cfg['me']} (newer primary: {peer['name']})")
    if not run(["systemctl", "stop", cfg["service"]], timeout=60):
        run(["systemctl", "kill", "--signal=SIGKILL", cfg["service"]], timeout=30)
        return False
    slot = cfg.get("slot", "")
    if slot:
        try:
            with psycopg.connect(conninfo(cfg, host, port), autocommit=True) as conn:
                conn.execute(
                    sql.SQL("SELECT pg_create_physical_replication_slot(%s, true) "
                            "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)"),
                    [slot, slot],
                )
        except psycopg.Error as exc:
            log(f"slot {slot} on {peer['name']}: {str(exc).strip()}")
    ok = run([os.path.join(cfg["bin_dir"], "pg_rewind"), f"--target-pgdata={cfg['data_dir']}",
              f"--config-file={cfg['config_file']}",
              f"--source-server={conninfo(cfg, host, port, application_name='hc_pg_keeper_rewind')}"],
             timeout=int(cfg.get("rewind_timeout", 600)), as_postgres=True)
    if not ok:
        log("pg_rewind failed: the node stays stopped (fenced); rebuild it with playbooks/rejoin.yml")
        return False
    nudge_wal(cfg, peer)
    data = cfg["data_dir"]
    with open(os.path.join(data, "standby.signal"), "w", encoding="utf-8"):
        pass
    os.chown(os.path.join(data, "standby.signal"), *owner_ids())
    upstream = dict(cfg["replication_conninfo"], host=host, port=str(port))
    set_auto_conf(os.path.join(data, "postgresql.auto.conf"),
                  {"primary_conninfo": make_conninfo(**upstream), "primary_slot_name": slot})
    if not run(["systemctl", "start", cfg["service"]], timeout=120):
        return False
    log(f"{cfg['me']} rewound and started as a standby of {peer['name']}")
    return True


def loop(cfg):
    interval = float(cfg.get("interval", 3))
    peers = {p["name"]: p for p in cfg["peers"]}
    suspect = None
    log(f"started on {cfg['me']} (every {interval} s, peers {', '.join(sorted(peers))})")
    while True:
        time.sleep(interval)
        if os.path.exists(cfg["pause_file"]):
            suspect = None
            continue
        me = state(cfg, cfg["host"], int(cfg["port"]))
        if me is None or me[0]:
            suspect = None
            continue
        name = newer_primary(me, {n: state(cfg, p["host"], int(p["port"])) for n, p in peers.items()})
        if name is None:
            suspect = None
            continue
        if suspect != name:
            log(f"{cfg['me']} is a primary on timeline {me[1]} but {name} is a primary on a newer one")
            suspect = name
            continue
        rejoin(cfg, peers[name])
        suspect = None


def main():
    with open(CONFIG, encoding="utf-8") as fh:
        cfg = json.load(fh)
    try:
        loop(cfg)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
