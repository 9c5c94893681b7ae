"""Tenancy through the pooler: PgBouncer runs in transaction mode, so one server connection serves many clients,
one transaction at a time. The tenant a trusted application role chooses with tenancy.set_tenant() must end with
its transaction; if it stayed on the server connection, the next client handed that connection would read and
write as the previous client's tenant.

The lab's trusted application login (app_rw_login, member of app_rw) connects through PgBouncer on 127.0.0.1:6432
with its generated password (.lab/secrets/pg_app_rw_login). Behind PgBouncer, pgpool-II balances reads over the
nodes; the probes carry pgpool's /*NO LOAD BALANCE*/ comment so that all of them run on the primary, and a server
connection is told apart by (node address, backend pid).
"""

from __future__ import annotations

import lab
import psycopg

TRIES = 50  # bounded: transactions until two of them ran on the same server connection
PRIMARY = "/*NO LOAD BALANCE*/"  # pgpool-II: not balanced to a standby
WHO = "inet_server_addr()::text || '/' || pg_backend_pid()"


def test_tenant_choice_does_not_stay_on_the_pooled_server_connection():
    dsn = lab.bouncer_dsn(user="app_rw_login")
    with psycopg.connect(dsn, password=lab.secret("pg_app_rw_login"), autocommit=True) as conn:
        # positive control: inside its transaction the choice is in effect
        with conn.transaction():
            pid, tenant = conn.execute(f"{PRIMARY} SELECT {WHO}, tenancy.set_tenant('acme')").fetchone()
            assert tenant == "acme"
            assert conn.execute(f"{PRIMARY} SELECT tenancy.current_tenant()").fetchone()[0] == "acme"
        seen = []
        for _try in range(TRIES):
            # a later transaction, as any client of app_rw_login could be handed the same server connection
            next_pid, after = conn.execute(f"{PRIMARY} SELECT {WHO}, tenancy.current_tenant()").fetchone()
            seen.append(next_pid)
            if next_pid == pid:
                break
        assert pid in seen, f"no later transaction ran on server connection {pid} within {TRIES} tries: {seen}"
        assert after is None, f"the next transaction on server connection {pid} still had tenant {after!r}"
