"""A Redis + Sentinel group of containers as the tests see it (Molecule's redis scenario, the lab), and the master
fault trials they run: a bounded WAIT-acknowledged writer through the loopback endpoint of a replica host, a fault of
the master (SIGKILL of redis-server; in the lab also a network partition of the master's container), then every
acknowledged write looked up on the new master and the old master seen back as its replica.

Clients run inside the containers (docker exec redis-cli); passwords travel in REDISCLI_AUTH, never on a command
line. Every call and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
from collections.abc import Callable

from testlib import container_ip, docker, wait_until

WRITER_SRC = pathlib.Path(__file__).resolve().parents[2] / "molecule" / "redis" / "files" / "redis_writer.py"
WRITER = "/var/tmp/redis_writer.py"
PROGRESS = "/var/tmp/redis_writer.progress"


class RedisCluster:
    def __init__(self, containers: list[str], secret: Callable[[str], str], ca: str = "/etc/hingecraft/pki/redis/ca.crt",
                 sentinel_port: int = 26379):
        self.nodes = list(containers)
        self.secret = secret
        self.ca = ca
        self.sentinel_port = sentinel_port
        self._ips: dict[str, str] = {}

    @property
    def ips(self) -> dict[str, str]:
        """{container: its address}, read on first use (importing a test module needs no running container)."""
        if not self._ips:
            self._ips = {n: container_ip(n) for n in self.nodes}
        return self._ips

    def cli(self, node, port, *args, user="admin", tls=True, host="127.0.0.1", password=None, stdin=None, timeout=60):
        """redis-cli inside `node` as `user` (its password from `secret`, or `password`); user None: no login."""
        cmd = ["docker", "exec", "-i", "-e", "REDISCLI_AUTH", node, "redis-cli", "-h", host, "-p", str(port), "-t", "5"]
        if tls:
            cmd += ["--tls", "--cacert", self.ca]
        if user:
            cmd += ["--user", user]
        env = dict(os.environ, REDISCLI_AUTH=password if password is not None else (self.secret(user) if user else ""))
        if not user:
            env.pop("REDISCLI_AUTH")
        return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout, input=stdin,
                              check=False)

    def sentinel_masters(self, name):
        """{node: the master's node or None} as each Sentinel answers for master `name`."""
        answers = {}
        for node in self.nodes:
            res = self.cli(node, self.sentinel_port, "SENTINEL", "get-master-addr-by-name", name)
            lines = res.stdout.split()
            answers[node] = {ip: n for n, ip in self.ips.items()}.get(lines[0]) if res.returncode == 0 and len(lines) == 2 else None
        return answers

    def agreed_master(self, name):
        """The master a majority of Sentinels name, or None."""
        votes = [m for m in self.sentinel_masters(name).values() if m]
        top = max(set(votes), key=votes.count) if votes else None
        return top if top and votes.count(top) > len(self.nodes) // 2 else None

    def role(self, node, port):
        res = self.cli(node, port, "INFO", "replication")
        return dict(line.split(":", 1) for line in res.stdout.splitlines() if ":" in line)

    def count_present(self, node, port, keys):
        present = 0
        for i in range(0, len(keys), 200):
            present += int(self.cli(node, port, "EXISTS", *keys[i:i + 200]).stdout.strip())
        return present

    def sigkill_master_trial(self, instance, port, endpoint_port, prefix, **kw):
        """SIGKILL the master's redis-server under the writer (systemd restarts it); returns the trial's summary."""
        def kill(old):
            unit = f"redis-server@{instance}"
            pid = docker("exec", old, "systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()
            assert pid.isdigit() and pid != "0", f"{unit} on {old} has no main PID: {pid!r}"
            docker("exec", old, "kill", "-KILL", pid)
        return self.master_fault_trial(instance, port, endpoint_port, prefix, kill, **kw)

    def partition_master_trial(self, instance, port, endpoint_port, prefix, network, cut_after_failover_s=5,
                               failover_s=45, **kw):
        """Cut the master's container off `network` under the writer until a Sentinel majority has named another
        master and `cut_after_failover_s` more (the old master still believes it is the master), then connect it
        again with its address and alias (Sentinels and replicas know it by address); returns the trial's summary."""
        def cut(old):
            ip = self.ips[old]
            alias = docker("inspect", "-f", "{{.Config.Hostname}}", old).stdout.strip()
            docker("network", "disconnect", "-f", network, old)
            try:
                wait_until(lambda: (m := self.agreed_master(instance)) and m != old, failover_s,
                           f"a new {instance} master while {old} is cut off", interval=0.5)
                time.sleep(cut_after_failover_s)
            finally:
                docker("network", "connect", "--ip", ip, "--alias", alias, network, old)
        return self.master_fault_trial(instance, port, endpoint_port, prefix, cut, **kw)

    def master_fault_trial(self, instance, port, endpoint_port, prefix, fault, count=4000, seconds=35, rejoin_s=120,
                           warmup_s=30):
        """`fault(old_master)` under the writer, once it has 20 acknowledged writes; the summary callers assert on."""
        old = self.agreed_master(instance)
        assert old, f"no Sentinel majority names a master for {instance}"
        writer_node = next(n for n in self.nodes if n != old)
        docker("cp", str(WRITER_SRC), f"{writer_node}:{WRITER}")
        docker("exec", writer_node, "rm", "-f", PROGRESS)
        proc = subprocess.Popen(
            ["docker", "exec", "-e", "REDISCLI_AUTH", writer_node, "python3", WRITER, "--port", str(endpoint_port),
             "--prefix", prefix, "--count", str(count), "--seconds", str(seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, REDISCLI_AUTH=self.secret("app")))

        def acked_so_far():
            res = docker("exec", writer_node, "cat", PROGRESS, check=False)
            return int(res.stdout.strip() or 0) if res.returncode == 0 else 0

        try:
            wait_until(lambda: proc.poll() is None and acked_so_far() >= 20, warmup_s,
                       "the writer to get 20 acknowledged writes", interval=0.5)
            t_fault = time.time()
            fault(old)
            stdout, stderr = proc.communicate(timeout=seconds + 60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, stderr[-2000:]
        result = json.loads(stdout)
        attempts = result["attempts"]  # [n, t_start, t_end, set_ok, acked]
        before = [a for a in attempts if a[2] < t_fault]
        after = [a for a in attempts if a[1] >= t_fault]
        assert before and after, f"the writer did not span the fault ({len(before)} before, {len(after)} after)"
        first_fail = next((a for a in after if not a[4]), None)
        resumed = next((a for a in after if a[4] and first_fail and a[1] > first_fail[1]), None)
        assert resumed or not first_fail, f"writes never resumed: last errors {result['errors'][-5:]}"
        outage = (resumed[2] - t_fault) if first_fail else 0.0

        new = wait_until(lambda: (m := self.agreed_master(instance)) and m != old and m, 60, f"a new {instance} master")
        acked = [f"{prefix}{a[0]}" for a in attempts if a[4]]
        unacked = [f"{prefix}{a[0]}" for a in attempts if not a[4]]
        lost = len(acked) - self.count_present(new, port, acked)
        unacked_present = self.count_present(new, port, unacked)
        # The old master comes back (systemd RestartSec, or its network) and Sentinel makes it a replica of the new one.
        t_back = wait_until(lambda: (r := self.role(old, port)).get("role") == "slave"
                            and r.get("master_host") == self.ips[new] and r.get("master_link_status") == "up"
                            and time.time(), rejoin_s, f"{old} to rejoin as a replica of {new}", interval=1)
        return {
            "instance": instance, "old_master": old, "new_master": new, "writes": len(attempts),
            "acknowledged": len(acked), "acknowledged_lost": lost, "unacknowledged": len(unacked),
            "unacknowledged_present": unacked_present, "seconds_until_writes_resume": round(outage, 2),
            # an upper bound: it is checked after the writer ends
            "old_master_is_replica_within_s": round(t_back - t_fault, 1),
            "first_errors_after_fault": [e for e in result["errors"] if e[0] >= (first_fail[0] if first_fail else 0)][:3],
        }
