"""Redis layer behaviour: replication, TLS only, ACL users, Sentinel quorum, sessions through the endpoint, and a
SIGKILL of the cache master under WAIT-acknowledged writes followed by a converge that must change nothing.

Clients run inside the scenario's containers (docker exec, redis-cli; redis-py is not in the project's venv), so
nothing leaves the scenario's Docker network. Tests run in file order; the chaos test comes last but one and the
converge after the failover last.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from testlib import container_ip, docker, require_container, run_playbook, wait_until

EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SECRETS = EPHEMERAL / "secrets"
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory" / "ansible_inventory.yml"))
NODES = ["redis-node1", "redis-node2", "redis-node3"]
CA = "/etc/hingecraft/pki/redis/ca.crt"
PORTS = {"cache": 6379, "sessions": 6380}
ENDPOINT = {"cache": 16379, "sessions": 16380}
SENTINEL = 26379
WRITER = "/var/tmp/redis_writer.py"

pytestmark = require_container(NODES[0], "redis")


def secret(name):
    return (SECRETS / name).read_text(encoding="utf-8").split()[0]


def cli(node, port, *args, user="admin", tls=True, host="127.0.0.1", password=None, stdin=None, timeout=60):
    """redis-cli inside `node`; the password travels in REDISCLI_AUTH (environment), never on the command line."""
    cmd = ["docker", "exec", "-i", "-e", "REDISCLI_AUTH", node, "redis-cli", "-h", host, "-p", str(port), "-t", "5"]
    if tls:
        cmd += ["--tls", "--cacert", CA]
    if user:
        cmd += ["--user", user]
    env = dict(os.environ, REDISCLI_AUTH=password if password is not None else (secret(user) if user else ""))
    if not user:
        env.pop("REDISCLI_AUTH")
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout, input=stdin,
                          check=False)


def out(res):
    return (res.stdout + res.stderr).strip()


IPS = {n: container_ip(n) for n in NODES}
BY_IP = {ip: n for n, ip in IPS.items()}


def sentinel_masters(name):
    """{node: the master's node name or None} as each Sentinel answers for master `name`."""
    answers = {}
    for node in NODES:
        res = cli(node, SENTINEL, "SENTINEL", "get-master-addr-by-name", name, timeout=60)
        lines = res.stdout.split()
        answers[node] = BY_IP.get(lines[0]) if res.returncode == 0 and len(lines) == 2 else None
    return answers


def agreed_master(name):
    votes = [m for m in sentinel_masters(name).values() if m]
    top = max(set(votes), key=votes.count) if votes else None
    return top if top and votes.count(top) >= 2 else None


def role(node, port):
    res = cli(node, port, "INFO", "replication", timeout=60)
    return dict(line.split(":", 1) for line in res.stdout.splitlines() if ":" in line)


def test_sentinels_agree_and_report_quorum():
    for name in PORTS:
        master = wait_until(lambda n=name: agreed_master(n), 60, f"a Sentinel majority for {name}")
        answers = sentinel_masters(name)
        assert set(answers.values()) == {master}, f"{name}: Sentinels disagree: {answers}"
        for node in NODES:
            res = wait_until(lambda nd=node, n=name: (r := cli(nd, SENTINEL, "SENTINEL", "CKQUORUM", n)).stdout
                             .startswith("OK") and r, 60, f"CKQUORUM OK from the Sentinel on {node} for {name}")
            print(f"{node} CKQUORUM {name}: {res.stdout.strip()}")
        print(f"{name}: master {master} ({IPS[master]})")


def test_each_instance_has_one_master_and_two_streaming_replicas():
    for name, port in PORTS.items():
        roles = {n: role(n, port) for n in NODES}
        masters = [n for n, r in roles.items() if r.get("role") == "master"]
        assert masters == [agreed_master(name)], f"{name}: {roles}"
        assert roles[masters[0]].get("connected_slaves") == "2", roles[masters[0]]
        for n in NODES:
            if n != masters[0]:
                assert roles[n].get("master_host") == IPS[masters[0]], roles[n]


def test_write_on_master_is_read_on_every_replica():
    for name, port in PORTS.items():
        master = agreed_master(name)
        key = f"{'sess:' if name == 'sessions' else ''}repl:{uuid.uuid4().hex}"
        assert cli(master, port, "SET", key, "v1", user="app").stdout.strip() == "OK"
        for node in NODES:
            if node != master:
                wait_until(lambda nd=node, p=port, k=key: cli(nd, p, "GET", k, user="app").stdout.strip() == "v1", 15,
                           f"{key} on replica {node} ({name})", interval=0.2)
        replica = next(n for n in NODES if n != master)
        res = cli(replica, port, "SET", key, "v2", user="app")
        assert "READONLY" in out(res), f"a replica accepted a write: {out(res)}"


def test_plaintext_connections_are_refused():
    for port in [*PORTS.values(), SENTINEL]:
        for node in NODES[:2]:
            res = cli(NODES[2], port, "PING", tls=False, host=IPS[node])
            assert "PONG" not in res.stdout, f"plaintext PING answered on {node}:{port}"
            print(f"plaintext {node}:{port} -> rc {res.returncode}: {out(res)[:80]}")


def test_default_user_and_wrong_passwords_cannot_log_in():
    for port in [*PORTS.values(), SENTINEL]:
        res = cli(NODES[0], port, "PING", user=None)
        assert "PONG" not in res.stdout and "NOAUTH" in out(res), f"port {port} without a user: {out(res)}"
        res = cli(NODES[0], port, "AUTH", "default", "anything", user=None)
        assert "WRONGPASS" in out(res), f"port {port} AUTH default: {out(res)}"
        res = cli(NODES[0], port, "PING", user="app", password="not-the-password")
        assert "PONG" not in res.stdout and ("WRONGPASS" in out(res) or "AUTH failed" in out(res)), out(res)


def test_app_user_has_no_admin_commands():
    master = agreed_master("cache")
    for cmd in (["CONFIG", "GET", "maxmemory"], ["FLUSHALL"], ["KEYS", "*"], ["ACL", "LIST"], ["CLIENT", "KILL", "TYPE", "pubsub"],
                ["SHUTDOWN"], ["REPLICAOF", "NO", "ONE"]):
        res = cli(master, PORTS["cache"], *cmd, user="app")
        assert "NOPERM" in out(res), f"app ran {' '.join(cmd)}: {out(res)}"
    res = cli(agreed_master("sessions"), PORTS["sessions"], "SET", "notasession", "x", user="app")
    assert "NOPERM" in out(res), f"app wrote outside sess:* in the session store: {out(res)}"
    res = cli(master, PORTS["cache"], "CONFIG", "GET", "maxmemory", user="monitor")
    assert res.returncode == 0 and "maxmemory" in res.stdout, out(res)
    res = cli(master, PORTS["cache"], "GET", "anything", user="monitor")
    assert "NOPERM" in out(res), f"monitor read a key: {out(res)}"


def test_acl_files_hold_only_hashes():
    for node in NODES:
        for name in [*PORTS, "sentinel"]:
            text = docker("exec", node, "cat", f"/etc/redis/hc-{name}.acl").stdout
            users = re.findall(r"^user (\S+) (on|off)", text, re.MULTILINE)
            assert ("default", "off") in users, text
            for s in ("admin", "replication", "sentinel", "monitor", "app"):
                assert secret(s) not in text, f"plaintext {s} password in hc-{name}.acl on {node}"
            for line in text.splitlines():
                if " on " in line:
                    assert re.search(r" #[0-9a-f]{64}( |$)", line), line


def test_memory_policies():
    master = agreed_master("cache")
    got = cli(master, PORTS["cache"], "CONFIG", "GET", "maxmemory-policy").stdout.split()
    assert got == ["maxmemory-policy", "allkeys-lru"], got
    got = cli(agreed_master("sessions"), PORTS["sessions"], "CONFIG", "GET", "maxmemory-policy").stdout.split()
    assert got == ["maxmemory-policy", "noeviction"], got
    info = cli(master, PORTS["cache"], "CONFIG", "GET", "appendonly").stdout.split()
    assert info == ["appendonly", "yes"], info


def test_session_expires_through_the_endpoint():
    """Session store through the loopback endpoint on a replica host: HAProxy leads to the master."""
    node = next(n for n in NODES if n != agreed_master("sessions"))
    key = f"sess:{uuid.uuid4().hex}"
    res = cli(node, ENDPOINT["sessions"], user="app", tls=False,
              stdin=f"SET {key} member-42 EX 2\nGET {key}\nTTL {key}\n")
    lines = res.stdout.split()
    assert lines[:2] == ["OK", "member-42"] and 0 < int(lines[2]) <= 2, out(res)
    started = time.monotonic()
    wait_until(lambda: cli(node, ENDPOINT["sessions"], "EXISTS", key, user="app", tls=False).stdout.strip() == "0",
               10, f"{key} to expire", interval=0.25)
    print(f"session key expired {time.monotonic() - started:.2f} s after the check (TTL 2 s)")


def _start_writer(node, prefix, count, seconds):
    docker("cp", str(pathlib.Path(__file__).parents[1] / "files" / "redis_writer.py"), f"{node}:{WRITER}")
    docker("exec", node, "rm", "-f", "/var/tmp/redis_writer.progress")
    return subprocess.Popen(
        ["docker", "exec", "-e", "REDISCLI_AUTH", node, "python3", WRITER, "--prefix", prefix, "--count", str(count),
         "--seconds", str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, REDISCLI_AUTH=secret("app")))


def _acked_so_far(node):
    res = docker("exec", node, "cat", "/var/tmp/redis_writer.progress", check=False)
    return int(res.stdout.strip() or 0) if res.returncode == 0 else 0


def test_sigkill_of_the_cache_master_loses_no_acknowledged_write():
    old = agreed_master("cache")
    writer_node = next(n for n in NODES if n != old)
    prefix = f"chaos:{uuid.uuid4().hex[:8]}:"
    proc = _start_writer(writer_node, prefix, count=4000, seconds=35)
    try:
        wait_until(lambda: proc.poll() is None and _acked_so_far(writer_node) >= 20, 30,
                   "the writer to get 20 acknowledged writes", interval=0.5)
        pid = docker("exec", old, "systemctl", "show", "-p", "MainPID", "--value", "redis-server@cache").stdout.strip()
        assert pid.isdigit() and pid != "0", pid
        t_kill = time.time()
        docker("exec", old, "kill", "-KILL", pid)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    result = json.loads(stdout)
    attempts = result["attempts"]
    acked = [a[0] for a in attempts if a[4]]
    before = [a for a in attempts if a[2] < t_kill]
    after = [a for a in attempts if a[1] >= t_kill]
    first_fail = next((a for a in after if not a[4]), None)
    resumed = next((a for a in after if a[4] and first_fail and a[1] > first_fail[1]), None)
    assert before and after, f"the writer did not span the kill ({len(before)} before, {len(after)} after)"
    assert resumed or not first_fail, f"writes never resumed: last errors {result['errors'][-5:]}"
    outage = (resumed[2] - t_kill) if first_fail else 0.0

    new = wait_until(lambda: (m := agreed_master("cache")) and m != old and m, 60, "a new cache master")
    # Every acknowledged write must be on the new master.
    present = 0
    for i in range(0, len(acked), 200):
        chunk = [f"{prefix}{n}" for n in acked[i:i + 200]]
        present += int(cli(new, PORTS["cache"], "EXISTS", *chunk).stdout.strip())
    lost = len(acked) - present
    unacked = [a[0] for a in attempts if not a[4]]
    unacked_present = 0
    for i in range(0, len(unacked), 200):
        chunk = [f"{prefix}{n}" for n in unacked[i:i + 200]]
        unacked_present += int(cli(new, PORTS["cache"], "EXISTS", *chunk).stdout.strip())

    # The old master comes back (systemd RestartSec) and Sentinel makes it a replica of the new one.
    t_back = wait_until(lambda: (r := role(old, PORTS["cache"])).get("role") == "slave"
                        and r.get("master_host") == IPS[new] and r.get("master_link_status") == "up" and time.time(),
                        120, f"{old} to rejoin as a replica of {new}", interval=1)
    summary = {
        "old_master": old, "new_master": new, "writes": len(attempts), "acknowledged": len(acked),
        "acknowledged_lost": lost, "unacknowledged": len(unacked), "unacknowledged_present": unacked_present,
        # old_master_is_replica_within_s is an upper bound: it is checked after the writer ends
        "seconds_until_writes_resume": round(outage, 2), "old_master_is_replica_within_s": round(t_back - t_kill, 1),
        "first_errors_after_kill": [e for e in result["errors"] if e[0] >= (first_fail[0] if first_fail else 0)][:3],
    }
    print("REDIS FAILOVER " + json.dumps(summary))
    (EPHEMERAL / "redis_failover.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    assert lost == 0, f"{lost} acknowledged writes lost: {summary}"
    assert outage <= 15, f"writes resumed only after {outage:.1f} s (target 5 s): {summary}"


def test_converge_after_failover_changes_nothing_and_keeps_the_master():
    before = {name: agreed_master(name) for name in PORTS}
    res = run_playbook(INVENTORY, str(pathlib.Path(__file__).parents[1] / "converge.yml"), timeout=1500)
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", res.stdout, re.MULTILINE)
    assert recap and all(c == "0" for _h, c in recap), f"converge after the failover changed something: {recap}\n" + \
        "\n".join(line for line in res.stdout.splitlines() if line.startswith("changed:"))[-3000:]
    after = {name: agreed_master(name) for name in PORTS}
    assert after == before, f"the converge moved a master: {before} -> {after}"
    print(f"converge after failover: {recap}; masters kept: {after}")
