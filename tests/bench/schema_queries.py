# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Query benchmark for the HingeCraft reference schema; runs ON the database host (Unix socket, psycopg 3).

Called by tests/bench/schema_bench.py through `docker exec -u postgres`. Measures, as the application role
with a tenant selected (so row-level security is in the path, as in production):
  member lookup by id, ranked member search by name, a month's donation summary from the materialized view,
  a member's recent activity, members per country (dashboard view; the live count is measured too);
plus materialized-view refresh times and EXPLAIN checks (partition pruning, index use). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import psycopg
from psycopg import sql

FIRST = [
    "Ada", "Alan", "Amara", "Ana", "Arjun", "Ben", "Bianca", "Carlos", "Chen", "Chloe", "Dario", "Diego",
    "Elena", "Emma", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jack", "James", "Jin",
    "Jonas", "Julia", "Kai", "Kenji", "Lara", "Leo", "Lina", "Lucas", "Maya", "Mei", "Mila", "Noah", "Nora",
    "Omar", "Oscar", "Paula", "Priya", "Quinn", "Rafael", "Rosa", "Sam", "Sara", "Sofia", "Tariq", "Theo",
    "Uma", "Victor", "Wen", "Yara", "Yusuf", "Zoe",
]
LAST = [
    "Abe", "Andersen", "Bauer", "Becker", "Brown", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Gupta",
    "Hansen", "Ito", "Jansen", "Kaur", "Kim", "Kowalski", "Lee", "Lopez", "Martin", "Meyer", "Moreau",
    "Muller", "Nakamura", "Nguyen", "Novak", "Olsen", "Patel", "Petrov", "Quinn", "Rossi", "Santos",
    "Schmidt", "Silva", "Singh", "Smith", "Suzuki", "Tanaka", "Taylor", "Thomas", "Walker", "Wang", "Weber",
    "Wilson", "Yamamoto", "Zhang",
]


def pct(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100.0 * len(s) + 0.5) - 1))
    return s[k]


def summarize(samples):
    ms = [x * 1000 for x in samples]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 3), "p95_ms": round(pct(ms, 95), 3),
            "p99_ms": round(pct(ms, 99), 3), "mean_ms": round(statistics.fmean(ms), 3),
            "max_ms": round(max(ms), 3)}


def timed(cur, stmt, params_fn, n, warmup=10):
    for _warm in range(warmup):
        cur.execute(stmt, params_fn())
        cur.fetchall()
    out = []
    for _run in range(n):
        params = params_fn()
        t0 = time.perf_counter()
        cur.execute(stmt, params)
        cur.fetchall()
        out.append(time.perf_counter() - t0)
    return out


def plan_nodes(cur, stmt, params=None):
    cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + stmt, params)
    plan = cur.fetchone()[0][0]["Plan"]
    nodes = []

    def walk(n):
        nodes.append({"type": n.get("Node Type"), "relation": n.get("Relation Name"), "index": n.get("Index Name")})
        for c in n.get("Plans", []):
            walk(c)
    walk(plan)
    return nodes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", default="dbname=hingecraft")
    ap.add_argument("--schema", default="app")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--role", default="app_ro")
    ap.add_argument("--tenant", default="acme")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    s = sql.Identifier(a.schema)
    out = {"role": a.role, "tenant": a.tenant, "iterations": a.iterations}

    with psycopg.connect(a.dsn, autocommit=True) as conn, conn.cursor() as cur:
        # materialized-view refresh times (first a plain refresh, then a concurrent one)
        refresh = {}
        cur.execute("SELECT matviewname FROM pg_matviews WHERE schemaname = %s ORDER BY 1", (a.schema,))
        for (mv,) in cur.fetchall():
            ident = sql.Identifier(a.schema, mv)
            t0 = time.perf_counter()
            cur.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(ident))
            t1 = time.perf_counter()
            cur.execute(sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(ident))
            t2 = time.perf_counter()
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(ident))
            refresh[mv] = {"refresh_s": round(t1 - t0, 3), "refresh_concurrently_s": round(t2 - t1, 3),
                           "rows": cur.fetchone()[0]}
        out["matview_refresh"] = refresh
        cur.execute(sql.SQL("SELECT count(*), max(member_id) FROM {}.members").format(s))
        out["members_total"], max_id = cur.fetchone()
        cur.execute(sql.SQL("SELECT min(month)::text, max(month)::text FROM {}.mv_donation_summary").format(s))
        months_range = cur.fetchone()

        # application session: the trusted role picks a tenant; RLS applies from here on. set_tenant() checks the
        # tenant and holds for its transaction only (pooler-safe); this direct, unpooled autocommit connection then
        # keeps the checked tenant for the whole session with the setting itself (trusted roles may).
        cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(a.role)))
        cur.execute("SELECT tenancy.set_tenant(%s), set_config('app.tenant_id', %s, false)", (a.tenant, a.tenant))
        cur.execute(sql.SQL("SELECT min(member_id), count(*) FROM {}.members").format(s))
        min_id, tenant_members = cur.fetchone()
        out["tenant_members"] = tenant_members
        step = 2  # the generator spreads members over two tenants by member_id % 2

        def member_id():
            return (rng.randrange(min_id, max_id + 1) // step) * step + (min_id % step)

        months = [f"{y}-{m:02d}-01" for y in (2025, 2026) for m in range(1, 13) if f"{y}-{m:02d}-01" <= "2026-11-01"]
        queries = {
            "member_lookup_by_id": (sql.SQL("SELECT * FROM {}.members WHERE member_id = %s").format(s),
                                    lambda: (member_id(),)),
            "member_search_ranked": (sql.SQL("SELECT m.member_id, m.display_name, r.rank FROM {}.search_members(%s, 20) r "
                                             "JOIN {}.members m ON m.member_id = r.member_id ORDER BY r.rank DESC"
                                             ).format(s, s),
                                     lambda: (f"{rng.choice(FIRST)} {rng.choice(LAST)}",)),
            "donation_month_summary_mv": (sql.SQL("SELECT campaign, sum(donations) AS n, sum(total) AS total FROM "
                                                  "{}.mv_donation_summary WHERE month = %s GROUP BY campaign "
                                                  "ORDER BY total DESC").format(s),
                                          lambda: (rng.choice(months),)),
            "member_recent_activity": (sql.SQL("SELECT kind, occurred_at, detail FROM {}.member_activity WHERE member_id = %s "
                                               "ORDER BY occurred_at DESC LIMIT 20").format(s),
                                       lambda: (member_id(),)),
            "members_per_country_mv": (sql.SQL("SELECT country, sum(new_members) AS members FROM {}.mv_member_stats_monthly "
                                               "GROUP BY country ORDER BY members DESC").format(s),
                                       lambda: ()),
        }
        results = {}
        for name, (stmt, params) in queries.items():
            results[name] = summarize(timed(cur, stmt, params, a.iterations))
        # for comparison: the same ranked search as one plain SECURITY INVOKER query (what search_members() was
        # before the SECURITY DEFINER match): RLS is applied first and the GIN index cannot serve `@@` - few runs
        plain = sql.SQL("SELECT t.member_id, ts_rank_cd(t.search, q) AS rank FROM {}.members t, "
                        "websearch_to_tsquery('app.hc_search', %s) q WHERE t.search @@ q "
                        "ORDER BY rank DESC, t.member_id LIMIT 20").format(s)
        results["member_search_ranked_plain_rls"] = summarize(timed(
            cur, plain, queries["member_search_ranked"][1], min(a.iterations, 20), warmup=2))
        # the live count over the tenant's members (RLS filter on every row): a few runs only
        live = sql.SQL("SELECT country, count(*) FROM {}.members GROUP BY country ORDER BY 2 DESC").format(s)
        results["members_per_country_live"] = summarize(timed(cur, live, lambda: (), 10, warmup=1))
        out["queries"] = results

        # EXPLAIN: partition pruning and index use
        month_q = sql.SQL("SELECT sum(amount) FROM {}.donations WHERE donated_at >= '2026-03-01' "
                          "AND donated_at < '2026-04-01'").format(s)
        nodes = plan_nodes(cur, month_q)
        donation_parts = sorted({n["relation"] for n in nodes if n["relation"]})
        country_nodes = plan_nodes(cur, sql.SQL("SELECT count(*) FROM {}.members WHERE country = 'DE'").format(s))
        lookup_nodes = plan_nodes(cur, queries["member_lookup_by_id"][0], (member_id(),))
        activity_nodes = plan_nodes(cur, queries["member_recent_activity"][0], (member_id(),))
        plain_nodes = plan_nodes(cur, plain, ("Kenji Ito",))
        cur.execute("RESET ROLE")
        # the match function's query as its owner (BYPASSRLS): the GIN indexes serve `@@`, the tenant is a filter
        cur.execute("SET ROLE search_owner")
        match_nodes = plan_nodes(cur, sql.SQL(
            "SELECT t.member_id, t.country FROM {}.members t, websearch_to_tsquery('app.hc_search', 'Kenji Ito') q "
            "WHERE t.search @@ q AND t.tenant_id = %s").format(s), (a.tenant,))
        cur.execute("RESET ROLE")
        # the same ranked search without RLS in the path (superuser): the GIN index is used
        results["member_search_ranked_no_rls"] = summarize(timed(
            cur, queries["member_search_ranked"][0], queries["member_search_ranked"][1], a.iterations))
        search_nodes = plan_nodes(cur, sql.SQL(
            "SELECT member_id FROM {}.members t WHERE t.search @@ websearch_to_tsquery('app.hc_search', 'Kenji Ito')"
        ).format(s))
        out["explain"] = {
            "donations_month_partitions_scanned": donation_parts,
            "donations_month_pruned": donation_parts == ["donations_p2026_03"],
            "members_country_partitions_scanned": sorted({n["relation"] for n in country_nodes if n["relation"]}),
            "member_lookup_indexes": sorted({n["index"] for n in lookup_nodes if n["index"]}),
            "member_activity_indexes": sorted({n["index"] for n in activity_nodes if n["index"]}),
            "member_search_indexes": sorted({n["index"] for n in search_nodes if n["index"]}),
            "member_search_match_indexes": sorted({n["index"] for n in match_nodes if n["index"]}),
            "member_search_plain_rls_indexes": sorted({n["index"] for n in plain_nodes if n["index"]}),
            "donation_months_in_view": months_range,
        }
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
