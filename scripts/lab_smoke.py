"""The last step of `make lab`: an application write and read through PgBouncer on 127.0.0.1:6432.

A lab whose playbooks all report failed=0 but that cannot take a write is not up. TLS verify-full against the
lab CA, as the application role; bounded by connect and statement timeouts. Exits non-zero with the reason.
"""

import pathlib
import sys
import time

import psycopg

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    password = (ROOT / ".lab" / "secrets" / "hingecraft_app").read_text().strip()
    dsn = (f"host=127.0.0.1 port=6432 dbname=hingecraft user=hingecraft_app sslmode=verify-full "
           f"sslrootcert={ROOT / '.lab' / 'pki' / 'ca.crt'} connect_timeout=5 application_name=hc_lab_smoke")
    marker = f"lab-smoke-{time.time_ns()}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(dsn, password=password, autocommit=True) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS lab_smoke (id bigserial PRIMARY KEY, note text NOT NULL, "
                             "at timestamptz NOT NULL DEFAULT now())")
                conn.execute("INSERT INTO lab_smoke (note) VALUES (%s)", [marker])
                got = conn.execute("SELECT count(*) FROM lab_smoke WHERE note = %s", [marker]).fetchone()[0]
            break
        except psycopg.Error as exc:
            if time.monotonic() > deadline:
                print(f"[lab] no write through PgBouncer on 127.0.0.1:6432 within 60 s: {exc}", file=sys.stderr)
                return 1
            time.sleep(2)
    if got != 1:
        print(f"[lab] wrote {marker} through PgBouncer but read back {got} rows", file=sys.stderr)
        return 1
    print(f"[lab] write and read through PgBouncer on 127.0.0.1:6432: ok ({marker})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
