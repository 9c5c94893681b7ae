"""Redis in the lab (draft for the lead to wire in; needs the `redis` group in inventories/lab and
playbooks/redis.yml imported by site.yml). Checks the layer as a whole: a Sentinel majority per master, TLS only,
the default user off, a write through the master-following endpoint read back from every replica.

Secrets: .lab/secrets/redis_{admin,app} (the lab's group vars are expected to take them from there, as for
PostgreSQL). Every client runs inside a lab container (docker exec redis-cli); every wait has a deadline.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import lab
import pytest
from testlib import container_ip, wait_until

REDIS = lab.GROUPS.get("redis", {})  # inventory name -> container
CA = "/etc/hingecraft/pki/redis/ca.crt"
PORTS = {"cache": 6379, "sessions": 6380}
ENDPOINT = {"cache": 16379, "sessions": 16380}

pytestmark = pytest.mark.skipif(not REDIS, reason="no redis group in inventories/lab yet (issue 13 wiring)")


def cli(container, port, *args, user="admin", tls=True, host="127.0.0.1", timeout=30):
    cmd = ["docker", "exec", "-e", "REDISCLI_AUTH", container, "redis-cli", "-h", host, "-p", str(port), "-t", "5"]
    if tls:
        cmd += ["--tls", "--cacert", CA]
    cmd += ["--user", user, *args]
    env = dict(os.environ, REDISCLI_AUTH=lab.secret(f"redis_{user}"))
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def master_of(name):
    ips = {container_ip(c): c for c in REDIS.values()}
    votes = []
    for c in REDIS.values():
        res = cli(c, 26379, "SENTINEL", "get-master-addr-by-name", name)
        lines = res.stdout.split()
        if res.returncode == 0 and len(lines) == 2:
            votes.append(ips.get(lines[0]))
    top = max(set(votes), key=votes.count) if votes else None
    return top if top and votes.count(top) > len(REDIS) // 2 else None


def test_redis_sentinel_majority_and_quorum(results):
    for name in PORTS:
        master = wait_until(lambda n=name: master_of(n), 60, f"a Sentinel majority for {name}")
        for c in REDIS.values():
            assert cli(c, 26379, "SENTINEL", "CKQUORUM", name).stdout.startswith("OK")
        results.setdefault("redis", {})[f"{name}_master"] = master


def test_redis_tls_only_and_default_user_off():
    c = next(iter(REDIS.values()))
    for port in [*PORTS.values(), 26379]:
        res = subprocess.run(["docker", "exec", c, "redis-cli", "-p", str(port), "-t", "5", "PING"],
                             capture_output=True, text=True, timeout=30, check=False)
        assert "PONG" not in res.stdout, f"plaintext answered on {port}"
        res = subprocess.run(["docker", "exec", c, "redis-cli", "--tls", "--cacert", CA, "-p", str(port), "-t", "5",
                              "PING"], capture_output=True, text=True, timeout=30, check=False)
        assert "NOAUTH" in res.stdout + res.stderr, f"port {port} without a user: {res.stdout}{res.stderr}"


def test_redis_endpoint_write_reaches_every_replica():
    key = f"platform:{uuid.uuid4().hex}"
    c = next(iter(REDIS.values()))
    assert cli(c, ENDPOINT["cache"], "SET", key, "1", user="app", tls=False).stdout.strip() == "OK"
    for other in REDIS.values():
        wait_until(lambda o=other: cli(o, PORTS["cache"], "GET", key, user="app").stdout.strip() == "1", 15,
                   f"{key} on {other}", interval=0.2)
