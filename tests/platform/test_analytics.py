"""Analytics in the lab (roles/schema phase analytics, inventories/lab/group_vars/all/schema.yml): the daily
member_activity rollup exists on the primary and replicates, its pg_cron refresh job runs in hingecraft and the
rollup reconciles with the source after a refresh; pg_index_advisor run on the primary finds a missing index for a
real workload and nothing on an indexed one.

Each test first writes rows of its own (ids from the clock, so a second run on the same lab adds new ones): on a new
lab the source tables are empty, and a reconciliation of nothing with nothing could not fail."""

from __future__ import annotations

import json
import time

import lab
import yaml

DB = "hingecraft"
ROLLUP = "app.member_activity_daily"
JOB = "hc_rollup_hingecraft.app.member_activity_daily"


def db_sql(node: str, query: str, timeout: float = 60) -> str:
    """One value from the hingecraft database of a node, as postgres over its Unix socket."""
    res = lab.docker("exec", "-i", "-u", "postgres", lab.NODES[node], "psql", "-XAtqw", "-d", DB, "-v", "ON_ERROR_STOP=1",
                     "-c", f"SET statement_timeout = '{int(timeout)}s'; {query}", timeout=timeout + 10)
    return res.stdout.strip()


def primary() -> str:
    prim = lab.writable_primaries()
    assert len(prim) == 1, f"expected exactly one primary, found {prim}"
    return prim[0]


def fresh_id() -> int:
    """A base id no earlier run used: milliseconds since the epoch, times 1,000."""
    return int(time.time() * 1000) * 1000


def test_rollup_job_and_reconciliation(results):
    node = primary()
    before = int(db_sql(node, "SELECT count(*) FROM app.member_activity"))
    # a member and 50 of its events inside the refresh's lookback (the last hour), so the incremental refresh must
    # count them (the warehouse test below loads them too: the ETL holds events of members it does not know yet)
    base = fresh_id()
    db_sql(node, f"""INSERT INTO app.members (member_id, tenant_id, country, email, display_name, joined_at)
        VALUES ({base}, 'globex', 'FR', 'ts-{base}@example.org', 'Rollup probe {base}', now() - interval '30 days');
        INSERT INTO app.member_activity (activity_id, tenant_id, member_id, kind, occurred_at)
        SELECT {base} + g, 'globex', {base}, (ARRAY['login', 'post'])[1 + g % 2],
               now() - (g % 60) * interval '1 minute' FROM generate_series(1, 50) g""")
    job = lab.node_sql(node, f"SELECT schedule || '|' || database || '|' || command FROM cron.job WHERE jobname = '{JOB}'")
    schedule, database, command = job.split("|", 2)
    assert schedule == "*/5 * * * *" and database == DB, job
    # the scheduled command, run now, leaves a rollup equal to a fresh count of the source
    db_sql(node, command)
    total = int(db_sql(node, f"SELECT coalesce(sum(events), 0) FROM {ROLLUP}"))
    source = int(db_sql(node, "SELECT count(*) FROM app.member_activity"))
    assert source == before + 50, f"member_activity has {source} rows, expected {before} + the 50 written"
    assert total == source, f"rollup counts {total} events, member_activity has {source}"
    diff = db_sql(node, f"""SELECT count(*) FROM (
        (SELECT time_bucket('1 day', occurred_at) AS bucket, tenant_id, kind, count(*) AS events
         FROM app.member_activity GROUP BY 1, 2, 3 EXCEPT SELECT bucket, tenant_id, kind, events FROM {ROLLUP})
        UNION ALL
        (SELECT bucket, tenant_id, kind, events FROM {ROLLUP} EXCEPT SELECT time_bucket('1 day', occurred_at),
         tenant_id, kind, count(*) FROM app.member_activity GROUP BY 1, 2, 3)) d""")
    assert diff == "0", f"{diff} rollup rows differ from the source"
    # pg_cron has run the job at least once since site.yml created it (every five minutes) - or it is new
    runs = lab.node_sql(node, "SELECT count(*) || '|' || count(*) FILTER (WHERE status = 'failed') FROM "
                        f"cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = '{JOB}'")
    ran, failed = (int(x) for x in runs.split("|"))
    assert failed == 0, f"{failed} of {ran} runs of {JOB} failed (cron.job_run_details)"
    standby = next(n for n in lab.NODES if n != node)
    lab.wait_for(lambda: db_sql(standby, f"SELECT to_regclass('{ROLLUP}') IS NOT NULL") == "t", 30,
                 f"{ROLLUP} on standby {standby}")
    results["analytics_rollup"] = {"events": total, "job_runs": ran}


def advisor_play(tmp_path, node: str, tables: list[str]) -> dict:
    play = [{"name": "index advice", "hosts": node, "gather_facts": False, "become": True, "become_user": "postgres",
             "tasks": [{"name": "advice", "hingecraft.enterprise_db.pg_index_advisor": {
                 "db": DB, "tables": tables, "min_calls": 5}, "register": "advice"},
                 {"name": "show", "ansible.builtin.copy": {"content": "{{ advice | to_json }}",
                                                           "dest": "/tmp/hc_advice.json", "mode": "0600"}}]}]
    path = tmp_path / "advice.yml"
    path.write_text(yaml.safe_dump(play))
    lab.run_playbook(str(lab.INVENTORY), str(path), timeout=300)
    out = lab.docker("exec", lab.NODES[node], "cat", "/tmp/hc_advice.json").stdout
    return json.loads(out)


def test_index_advisor_on_the_primary(tmp_path, results):
    node = primary()
    db_sql(node, """DROP TABLE IF EXISTS public.hc_advisor_probe; CREATE TABLE public.hc_advisor_probe
        (id bigint PRIMARY KEY, email text NOT NULL); INSERT INTO public.hc_advisor_probe
        SELECT g, 'u' || g || '@example.org' FROM generate_series(1, 100000) g; ANALYZE public.hc_advisor_probe""")
    db_sql(node, "SELECT pg_stat_reset_single_table_counters('public.hc_advisor_probe'::regclass)")
    lines = ("SELECT * FROM public.hc_advisor_probe WHERE email = $1 \\bind 'u7@example.org' \\g /dev/null\n"
             "SELECT * FROM public.hc_advisor_probe WHERE id = $1 \\bind 7 \\g /dev/null\n") * 10
    lab.docker("exec", "-i", "-u", "postgres", lab.NODES[node], "psql", "-XAtq", "-d", DB, "-f", "-", stdin=lines)
    try:
        advice = advisor_play(tmp_path, node, ["public.hc_advisor_probe"])
        found = [a for a in advice["advice"] if a["table"] == "public.hc_advisor_probe"]
        assert [a["columns"] for a in found] == [["email"]], advice["advice"]
        assert found[0]["saving_pct"] >= 90, found[0]
        assert advice["changed"] is False, "report mode must not change anything"
        results["analytics_advisor"] = {"saving_pct": found[0]["saving_pct"], "advice": len(advice["advice"])}
    finally:
        db_sql(node, "DROP TABLE IF EXISTS public.hc_advisor_probe")


def test_warehouse_etl_reconciles(results):
    node = primary()
    job = lab.node_sql(node, "SELECT schedule || '|' || database FROM cron.job WHERE jobname = 'hc_etl_hingecraft.dw'")
    assert job == f"*/15 * * * *|{DB}", job
    loaded = int(db_sql(node, "SELECT count(*) FROM dw.fact_donation"))
    # a new member with 20 donations over the last 20 days, written as the application would (superuser here)
    base = fresh_id()
    db_sql(node, f"""INSERT INTO app.members (member_id, tenant_id, country, email, display_name, joined_at)
        VALUES ({base}, 'acme', 'DE', 'dw-{base}@example.org', 'Warehouse probe {base}', now() - interval '400 days');
        INSERT INTO app.donations (donation_id, tenant_id, member_id, campaign, country, amount, donated_at)
        SELECT {base} + g, 'acme', {base}, 'probe', 'DE', g + 0.25, now() - g * interval '1 day'
        FROM generate_series(1, 20) g""")
    db_sql(node, "SELECT * FROM dw.etl_run()", timeout=300)
    new = int(db_sql(node, f"SELECT count(*) FROM dw.fact_donation f JOIN dw.dim_member m USING (member_key) "
                           f"WHERE m.member_id = {base}"))
    assert new == 20, f"the ETL loaded {new} of the probe member's 20 donations"
    assert int(db_sql(node, "SELECT count(*) FROM dw.fact_donation")) == loaded + 20
    for fact, source in (("dw.fact_donation", "app.donations"), ("dw.fact_activity", "app.member_activity")):
        got, want = db_sql(node, f"SELECT count(*) FROM {fact}"), db_sql(node, f"SELECT count(*) FROM {source}")
        assert got == want, f"{fact} has {got} rows, {source} {want}"
    assert db_sql(node, "SELECT sum(amount) FROM dw.fact_donation") == db_sql(node, "SELECT sum(amount) FROM app.donations")
    rerun = db_sql(node, "SELECT sum(rows_changed) FROM dw.etl_run() WHERE step LIKE 'fact_%'")
    assert rerun == "0", f"a rerun loaded {rerun} fact rows again"
    results["analytics_warehouse"] = {"donations": int(db_sql(node, "SELECT count(*) FROM dw.fact_donation"))}
