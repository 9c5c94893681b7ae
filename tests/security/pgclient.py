"""Runs inside a container: one PostgreSQL session, steps from JSON on stdin, JSON result on stdout.

Input: {"conn": {libpq keywords}, "steps": [{"sql": "...", "params": [...], "copy": false}], "autocommit": false}
Output: {"ok": true, "results": [rows per step], "seconds": t} or {"ok": false, "sqlstate": ..., "error": ..., ...}.
Values are bound server-side (psycopg 3 default cursor), so statement logs never carry them.
"""
import json
import sys
import time

import psycopg


def main():
    req = json.load(sys.stdin)
    started = time.monotonic()
    out = {"ok": True, "results": []}
    try:
        with psycopg.connect(**req["conn"], autocommit=req.get("autocommit", False)) as conn:
            for step in req.get("steps", []):
                with conn.cursor() as cur:
                    if step.get("copy"):
                        with cur.copy(step["sql"]) as copy:
                            data = b"".join(bytes(chunk) for chunk in copy)
                        out["results"].append(data.decode())
                        continue
                    cur.execute(step["sql"], step.get("params") or None)
                    rows = cur.fetchall() if cur.description else []
                    out["results"].append([[v.hex() if isinstance(v, (bytes, memoryview)) else v
                                            for v in (bytes(x) if isinstance(x, memoryview) else x for x in row)]
                                           for row in rows])
    except psycopg.Error as exc:
        out = {"ok": False, "sqlstate": getattr(exc, "sqlstate", None), "error": str(exc),
               "results": out["results"]}
    out["seconds"] = time.monotonic() - started
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
