#!/usr/bin/python3
"""pgpool-II failover_command / follow_primary_command of hingecraft.enterprise_db.

No SSH between hosts: everything happens over libpq (TLS verify-full) as the configured admin role.

  hc_pgpool_ha.py failover %d %h %p %D %m %H %M %P %r %R %N %S
  hc_pgpool_ha.py follow   %d %h %p %D %m %H %M %P %r %R
  hc_pgpool_ha.py keeper   (long-running: the hc-pgpool-keeper service)

failover: if the failed node was the primary, promote the standby that has received the most WAL (so a
commit acknowledged by ANY synchronous standby survives) with pg_promote(); refuses to promote while the old
primary still answers as a primary (no split brain). A failed standby needs nothing.
follow: re-point one standby at the new primary (physical slot on the primary, ALTER SYSTEM SET
primary_conninfo / primary_slot_name, pg_reload_conf()), wait for it to stream, then pcp_attach_node it.
During a planned switchover (lock file present) failover promotes nothing: the playbook promotes its target.
keeper: every few seconds, compare pgpool's view (pcp_node_info) with what the backends say of themselves, and
attach again, without a person, a node that pgpool detached although it is healthy: a standby that streams from
the attached primary, or the only primary when pgpool has none attached (a transient error detached it). A node
must look attachable on two polls in a row; nothing is detached, promoted or fenced here, and nothing happens
while the switchover lock exists. A stale primary (an old timeline) is never attached: the node agent of the
replication role fences and rewinds it.
Settings come from a JSON file (default /etc/pgpool2/hc_ha.json); passwords from the passfile it names.
"""

import json
import os
import subprocess
import sys
import time

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

CONFIG = os.environ.get("HC_PGPOOL_HA_CONFIG", "/etc/pgpool2/hc_ha.json")


def log(msg):
    print(f"hc_pgpool_ha: {msg}", file=sys.stderr, flush=True)


def load_config():
    with open(CONFIG, encoding="utf-8") as fh:
        return json.load(fh)


def connect(cfg, host, port, timeout=None):
    params = {
        "host": host,
        "port": port,
        "dbname": cfg["dbname"],
        "user": cfg["admin_user"],
        "sslmode": cfg.get("sslmode", "verify-full"),
        "sslrootcert": cfg["sslrootcert"],
        "passfile": cfg["passfile"],
        "connect_timeout": timeout or cfg.get("connect_timeout", 3),
        "application_name": "hc_pgpool_ha",
    }
    if cfg.get("sslcert"):
        params["sslcert"] = cfg["sslcert"]
        params["sslkey"] = cfg["sslkey"]
    return psycopg.connect(make_conninfo(**params), autocommit=True)


def node_state(cfg, host, port, timeout=None):
    """Return (in_recovery, lsn) or None when the node does not answer."""
    try:
        with connect(cfg, host, port, timeout) as conn:
            row = conn.execute(
                sql.SQL(
                    "SELECT pg_is_in_recovery(), "
                    "COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), pg_current_wal_lsn()) "
                    "- '0/0'::pg_lsn"
                )
            ).fetchone()
            return bool(row[0]), int(row[1])
    except psycopg.Error as exc:
        log(f"{host}:{port} unreachable: {str(exc).strip()}")
        return None


def node_timeline(cfg, host, port, timeout=None):
    """Timeline of a primary (from its current WAL file name), or None."""
    try:
        with connect(cfg, host, port, timeout) as conn:
            row = conn.execute(
                sql.SQL("SELECT CASE WHEN pg_is_in_recovery() THEN NULL "
                        "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END")
            ).fetchone()
            return row[0]
    except psycopg.Error:
        return None


def backends(cfg):
    return {int(b["id"]): b for b in cfg["backends"]}


def failover(cfg, args):
    failed_id, failed_host, failed_port = int(args[0]), args[1], int(args[2])
    new_main_id, old_primary_id = int(args[4]), int(args[7])
    if failed_id != old_primary_id:
        log(f"standby node {failed_id} ({failed_host}) failed: nothing to promote")
        return 0
    lock = cfg.get("switchover_lock", "/var/lib/postgresql/hc_switchover.lock")
    if os.path.exists(lock):
        log(f"planned switchover in progress ({lock}): playbooks/switchover.yml promotes the target")
        return 0
    old = node_state(cfg, failed_host, failed_port, timeout=2)
    if old is not None and not old[0]:
        log(f"old primary {failed_host} still answers as a primary: refusing to promote (split brain)")
        return 1
    candidates = []
    for node_id, b in sorted(backends(cfg).items()):
        if node_id == failed_id:
            continue
        st = node_state(cfg, b["host"], int(b["port"]))
        if st is None:
            continue
        if not st[0]:
            log(f"node {node_id} ({b['host']}) is already a primary: nothing to promote")
            return 0
        candidates.append((st[1], node_id == new_main_id, -node_id, node_id, b))
    if not candidates:
        log("no standby answers: cannot promote")
        return 1
    candidates.sort(reverse=True)
    lsn, _unused, _unused, node_id, b = candidates[0]
    log(f"promoting node {node_id} ({b['host']}), received WAL at byte {lsn}")
    with connect(cfg, b["host"], int(b["port"])) as conn:
        ok = conn.execute(sql.SQL("SELECT pg_promote(true, %s)"), [int(cfg.get("promote_wait", 60))]).fetchone()[0]
    if not ok:
        log(f"pg_promote() on {b['host']} did not finish in time")
        return 1
    log(f"node {node_id} ({b['host']}) promoted")
    return 0


def find_primary(cfg, hint_id):
    nodes = backends(cfg)
    order = [hint_id] + [i for i in sorted(nodes) if i != hint_id] if hint_id in nodes else sorted(nodes)
    for node_id in order:
        b = nodes[node_id]
        st = node_state(cfg, b["host"], int(b["port"]))
        if st is not None and not st[0]:
            return node_id, b
    return None, None


def slot_name(name):
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name).lower()


def follow(cfg, args):
    node_id, host, port = int(args[0]), args[1], int(args[2])
    new_main_id = int(args[4])
    primary_id, primary = find_primary(cfg, new_main_id)
    if primary is None:
        log("no primary found: cannot re-point standbys")
        return 1
    if primary_id == node_id:
        return 0
    me = backends(cfg)[node_id]
    try:
        standby = connect(cfg, host, port)
    except psycopg.Error as exc:
        log(f"standby {host} unreachable ({str(exc).strip()}): leave it detached, rejoin it later")
        return 0
    with standby:
        in_recovery = standby.execute(sql.SQL("SELECT pg_is_in_recovery()")).fetchone()[0]
        if not in_recovery:
            log(f"{host} is not in recovery: it needs playbooks/rejoin.yml, not a follow")
            return 0
        current = standby.execute(sql.SQL("SHOW primary_conninfo")).fetchone()[0]
        params = conninfo_to_dict(current) if current else {}
        params.update(host=primary["host"], port=str(primary["port"]))
        params.setdefault("application_name", me.get("application_name", host))
        new_conninfo = make_conninfo(**params)
        slot = slot_name(me.get("application_name", host)) if cfg.get("use_slots", True) else ""
        if slot:
            with connect(cfg, primary["host"], int(primary["port"])) as pconn:
                pconn.execute(
                    sql.SQL(
                        "SELECT pg_create_physical_replication_slot(%s, true) "
                        "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)"
                    ),
                    [slot, slot],
                )
        standby.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(new_conninfo)))
        standby.execute(sql.SQL("ALTER SYSTEM SET primary_slot_name = {}").format(sql.Literal(slot)))
        standby.execute(sql.SQL("SELECT pg_reload_conf()"))
        deadline = time.monotonic() + float(cfg.get("follow_wait", 30))
        streaming = False
        while time.monotonic() < deadline:
            row = standby.execute(
                sql.SQL("SELECT status, sender_host FROM pg_stat_wal_receiver")
            ).fetchone()
            if row and row[0] == "streaming" and row[1] == primary["host"]:
                streaming = True
                break
            time.sleep(0.5)
    if not streaming:
        log(f"{host} does not stream from {primary['host']}: left detached (rejoin it with playbooks/rejoin.yml)")
        return 1
    attach = [
        "pcp_attach_node", "-h", cfg.get("pcp_host", "localhost"), "-p", str(cfg.get("pcp_port", 9898)),
        "-U", cfg["pcp_user"], "-n", str(node_id), "-w",
    ]
    res = subprocess.run(attach, capture_output=True, text=True, timeout=30, check=False)
    if res.returncode != 0:
        log(f"pcp_attach_node {node_id} failed: {res.stderr.strip()}")
        return 1
    log(f"standby {host} follows {primary['host']} and is attached again")
    return 0


def pcp(cfg, command, *extra, timeout=10):
    argv = [command, "-h", cfg.get("pcp_host", "localhost"), "-p", str(cfg.get("pcp_port", 9898)),
            "-U", cfg["pcp_user"], "-w", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def parse_node_info(text):
    """pcp_node_info -a lines -> {node id: {'host', 'status', 'role'}} (status 'up' or 'down')."""
    nodes = {}
    for node_id, line in enumerate(ln for ln in text.splitlines() if ln.strip()):
        f = line.split()
        # host port status weight status_name pg_status role pg_role ...
        if len(f) < 7:
            raise ValueError(f"unexpected pcp_node_info line: {line!r}")
        nodes[node_id] = {"host": f[0], "status": "up" if f[2] in ("1", "2") else "down", "role": f[6]}
    return nodes


def streaming_names(cfg, primary):
    """application_name of every standby streaming from this primary."""
    try:
        with connect(cfg, primary["host"], int(primary["port"]), timeout=2) as conn:
            rows = conn.execute(
                sql.SQL("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
            ).fetchall()
            return {r[0] for r in rows}
    except psycopg.Error:
        return set()


def keeper_decide(nodes, states, streaming, timelines):
    """Pure decision: which detached nodes to attach. nodes from parse_node_info; states {id: (in_recovery,
    lsn) or None}; streaming: application names streaming from the attached primary; timelines {id: tl}."""
    attached_primary = [i for i, n in nodes.items() if n["status"] == "up" and n["role"] == "primary"]
    live_primaries = [i for i, st in states.items() if st is not None and not st[0]]
    attach = []
    for node_id, n in sorted(nodes.items()):
        if n["status"] != "down" or states.get(node_id) is None:
            continue
        in_recovery = states[node_id][0]
        healthy_standby = in_recovery and attached_primary and n.get("application_name") in streaming
        newest = max((t for t in timelines.values() if t is not None), default=None)
        only_primary = (not in_recovery and not attached_primary and live_primaries == [node_id]
                        and timelines.get(node_id) is not None and timelines[node_id] >= newest)
        if healthy_standby or only_primary:
            attach.append(node_id)
    return attach


def keeper(cfg):
    interval = float(cfg.get("keeper_interval", 3))
    lock = cfg.get("switchover_lock", "/var/lib/postgresql/hc_switchover.lock")
    seen = set()
    log(f"keeper started (every {interval} s)")
    while True:
        time.sleep(interval)
        if os.path.exists(lock):
            seen = set()
            continue
        try:
            res = pcp(cfg, "pcp_node_info", "-a")
            if res.returncode != 0:
                seen = set()
                continue
            nodes = parse_node_info(res.stdout)
        except (ValueError, OSError, subprocess.SubprocessError) as exc:
            log(f"keeper: pcp_node_info failed: {exc}")
            seen = set()
            continue
        bk = backends(cfg)
        for node_id, n in nodes.items():
            n["application_name"] = bk.get(node_id, {}).get("application_name", n["host"])
        states = {i: node_state(cfg, b["host"], int(b["port"]), timeout=2) for i, b in bk.items()}
        timelines = {i: node_timeline(cfg, b["host"], int(b["port"]), timeout=2)
                     for i, b in bk.items() if states.get(i) is not None and not states[i][0]}
        primary = [bk[i] for i, n in nodes.items() if n["status"] == "up" and n["role"] == "primary" and i in bk]
        streaming = streaming_names(cfg, primary[0]) if primary else set()
        wanted = set(keeper_decide(nodes, states, streaming, timelines))
        stable = wanted & seen
        for node_id in sorted(stable):
            res = pcp(cfg, "pcp_attach_node", "-n", str(node_id), timeout=30)
            log(f"keeper: node {node_id} ({bk[node_id]['host']}) is healthy but detached: pcp_attach_node "
                + ("ok" if res.returncode == 0 else f"failed: {res.stderr.strip()}"))
        seen = wanted - stable


def main(argv):
    if len(argv) < 2 or argv[1] not in ("failover", "follow", "keeper"):
        log("usage: hc_pgpool_ha.py failover|follow <pgpool % arguments> | keeper")
        return 2
    cfg = load_config()
    if argv[1] == "keeper":
        return keeper(cfg)
    try:
        return failover(cfg, argv[2:]) if argv[1] == "failover" else follow(cfg, argv[2:])
    except (psycopg.Error, OSError, subprocess.SubprocessError) as exc:
        log(f"{argv[1]} failed: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
