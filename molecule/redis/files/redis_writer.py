"""Bounded write loop for the Redis failover test, run inside a Redis container (python3 from the image).

Each write is one redis-cli connection to the loopback endpoint (HAProxy): `SET key n` then `WAIT 1 <ms>`. A write
counts as acknowledged only when SET answered OK and WAIT reported at least one replica. The loop stops after
--count writes or --seconds seconds, whichever comes first; every call has a timeout. The password comes from
REDISCLI_AUTH in the environment. Prints one JSON document: every attempt as [n, t_start, t_end, set_ok, acked].
"""

import argparse
import json
import subprocess
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=16379)
p.add_argument("--user", default="app")
p.add_argument("--prefix", required=True)
p.add_argument("--count", type=int, default=3000)
p.add_argument("--seconds", type=float, default=30)
p.add_argument("--interval", type=float, default=0.02)
p.add_argument("--wait-ms", type=int, default=1000)
p.add_argument("--progress", default="/var/tmp/redis_writer.progress")
a = p.parse_args()

attempts, errors = [], []
deadline = time.monotonic() + a.seconds
acked_total = 0
for n in range(a.count):
    if time.monotonic() > deadline:
        break
    t0 = time.time()
    cmds = f"SET {a.prefix}{n} {n}\nWAIT 1 {a.wait_ms}\n"
    try:
        res = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(a.port), "-t", "2", "--user", a.user],
                             input=cmds, capture_output=True, text=True, timeout=3, check=False)
        lines = res.stdout.split()
        set_ok = bool(lines) and lines[0] == "OK"
        acked = set_ok and len(lines) > 1 and lines[1].isdigit() and int(lines[1]) >= 1
        if not acked and len(errors) < 50:
            errors.append([n, (res.stdout + res.stderr).strip()[-200:]])
    except subprocess.TimeoutExpired:
        set_ok = acked = False
        if len(errors) < 50:
            errors.append([n, "timeout"])
    attempts.append([n, t0, time.time(), set_ok, acked])
    acked_total += acked
    if n % 10 == 0:
        with open(a.progress, "w", encoding="utf-8") as f:
            f.write(str(acked_total))
    time.sleep(a.interval)

print(json.dumps({"attempts": attempts, "errors": errors}))
