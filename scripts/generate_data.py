# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deterministic synthetic data for the HingeCraft reference schema (roles/schema), loaded through COPY.

Scale 1.0 writes 1,000,000 members, 1,200,000 donations, 1,000,000 messages, 1,000,000 activity events and
1,000,000 club memberships (plus 10,000 clubs); tests use a tiny scale (0.001). The same --seed and --scale
always produce the same rows. Rows are spread over the tenants registered in <tenancy schema>.tenants.

Runs where psycopg 3 can reach the server - on the database host itself in the lab and the benchmark
(``docker exec -u postgres <container> python3 generate_data.py``, Unix socket, peer authentication).

Bulk-load mode: the load runs with ``session_replication_role = replica`` so the audit triggers do not write
one audit row per generated row (a superuser session is needed for that; use --keep-triggers otherwise).
Row-level security does not apply to the superuser that loads. Prints a JSON summary (rows, seconds, rows/s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import random
import sys
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
CRAFT = [
    "woodworking", "joinery", "dovetail", "hinge", "cabinet", "chisel", "lathe", "carving", "walnut", "oak",
    "maple", "cherry", "veneer", "finishing", "lacquer", "shellac", "plane", "saw", "router", "jig",
    "workbench", "mortise", "tenon", "inlay", "marquetry", "turning", "bowl", "spoon", "chair", "table",
    "shelf", "restoration", "antique", "reclaimed", "timber", "grain", "sanding", "glue", "clamp", "bench",
    "hand", "tools", "dust", "collection", "festival", "workshop", "apprentice", "mentor", "guild",
    "community", "charity", "donation",
]
WORDS = [
    "the", "a", "my", "our", "new", "old", "great", "small", "first", "last", "best", "favourite", "weekend",
    "evening", "project", "build", "photos", "progress", "question", "help", "advice", "thanks", "finished",
    "started", "tried", "learned", "love", "looking", "share", "meetup", "today", "tomorrow", "class",
    "course", "tips", "beginner", "expert", "club", "members",
]
COUNTRIES = (("US", 30), ("GB", 10), ("DE", 8), ("FR", 6), ("CA", 6), ("AU", 4), ("IN", 10), ("BR", 6),
             ("NL", 3), ("ES", 3), ("IT", 3), ("SE", 2), ("JP", 3), ("MX", 3), ("NZ", 1), ("ZA", 2))
CAMPAIGNS = ("spring-appeal", "tool-library", "youth-apprentices", "workshop-rebuild", "scholarships",
             "winter-warmth", "reclaimed-timber", "guild-anniversary", "disaster-relief", "accessibility",
             "open-studio", "mentorship")
KINDS = (("login", 40), ("view_club", 25), ("post_message", 15), ("donate", 5), ("join_club", 5),
         ("update_profile", 10))
STATUSES = (("active", 95), ("inactive", 3), ("closed", 2))


def weighted(rng, pairs):
    values = [pair[0] for pair in pairs]
    weights = [pair[1] for pair in pairs]
    return lambda: rng.choices(values, weights)[0]


def sizes(scale):
    def n(base, minimum):
        return max(minimum, round(base * scale))
    return {"clubs": n(10_000, 5), "members": n(1_000_000, 20), "club_memberships": n(1_000_000, 20),
            "donations": n(1_200_000, 20), "messages": n(1_000_000, 20), "member_activity": n(1_000_000, 20)}


def esc(v):
    """One value in COPY text format."""
    if v is None:
        return "\\N"
    s = str(v)
    if "\\" in s or "\t" in s or "\n" in s or "\r" in s:
        s = s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return s


class Loader:
    def __init__(self, conn, schema, chunk_rows=20_000):
        self.conn = conn
        self.schema = schema
        self.chunk_rows = chunk_rows
        self.stats = {}

    def copy(self, table, columns, rows):
        started = time.monotonic()
        stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(self.schema, table), sql.SQL(", ").join(sql.Identifier(c) for c in columns))
        count = 0
        with self.conn.cursor() as cur, cur.copy(stmt) as cp:
            buf = io.StringIO()
            pending = 0
            for row in rows:
                buf.write("\t".join(esc(v) for v in row))
                buf.write("\n")
                pending += 1
                if pending >= self.chunk_rows:
                    cp.write(buf.getvalue())
                    count += pending
                    buf, pending = io.StringIO(), 0
            if pending:
                cp.write(buf.getvalue())
                count += pending
        self.conn.commit()
        secs = time.monotonic() - started
        self.stats[table] = {"rows": count, "seconds": round(secs, 2), "rows_per_s": int(count / secs) if secs else 0}
        print(f"[generate] {table}: {count} rows in {secs:.1f} s", file=sys.stderr)


def generate(conn, schema, scale, seed, tenants, now):
    n = sizes(scale)
    rng = random.Random(seed)
    country = weighted(rng, COUNTRIES)
    status = weighted(rng, STATUSES)
    kind = weighted(rng, KINDS)
    loader = Loader(conn, schema)
    start_donations = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    start_joined = dt.datetime(2019, 1, 1, tzinfo=dt.UTC)
    span_donations = (now - start_donations).total_seconds()
    span_joined = (now - start_joined).total_seconds()
    n_tenants = len(tenants)

    def tenant_of(member_id):
        return tenants[member_id % n_tenants]

    def sentence(k):
        return " ".join(rng.choice(CRAFT if i % 2 else WORDS) for i in range(k))

    club_country = {}

    def clubs():
        for cid in range(1, n["clubs"] + 1):
            c = country()
            club_country[cid] = c
            topic = rng.choice(CRAFT)
            yield (cid, tenants[cid % n_tenants], f"{rng.choice(LAST)} {topic.title()} Club {cid}",
                   f"A club about {topic}: {sentence(12)}", c,
                   start_joined + dt.timedelta(seconds=rng.random() * span_joined))

    member_country = []

    def members():
        for mid in range(1, n["members"] + 1):
            c = country()
            member_country.append(c)
            f, la = rng.choice(FIRST), rng.choice(LAST)
            joined = start_joined + dt.timedelta(seconds=span_joined * math.sqrt(rng.random()))
            yield (mid, tenant_of(mid), c, f"{f.lower()}.{la.lower()}{mid}@example.org", f"{f} {la}",
                   f"{f} loves {sentence(8)}" if rng.random() < 0.8 else None, status(), joined)

    def memberships():
        per_member = max(1, n["club_memberships"] // n["members"])
        written = 0
        mid = 0
        while written < n["club_memberships"]:
            mid = mid % n["members"] + 1
            chosen = rng.sample(range(1, n["clubs"] + 1), min(per_member + 1, n["clubs"]))
            for cid in chosen:
                if written >= n["club_memberships"]:
                    break
                yield (cid, mid, tenant_of(mid), "organiser" if rng.random() < 0.02 else "member",
                       now - dt.timedelta(days=rng.random() * 900))
                written += 1
            if mid == n["members"] and written < n["club_memberships"]:
                raise SystemExit("club memberships would repeat: raise the scale")

    def donations():
        for did in range(1, n["donations"] + 1):
            mid = rng.randint(1, n["members"])
            amount = round(min(5000.0, rng.lognormvariate(3.3, 0.9)) + 1, 2)
            yield (did, tenant_of(mid), mid, rng.choice(CAMPAIGNS), member_country[mid - 1], f"{amount:.2f}",
                   "USD", start_donations + dt.timedelta(seconds=rng.random() * span_donations))

    def messages():
        for msg in range(1, n["messages"] + 1):
            mid = rng.randint(1, n["members"])
            yield (msg, tenant_of(mid), rng.randint(1, n["clubs"]), mid, sentence(rng.randint(6, 24)),
                   now - dt.timedelta(seconds=rng.random() * 365 * 86400))

    def activity():
        for aid in range(1, n["member_activity"] + 1):
            mid = rng.randint(1, n["members"])
            k = kind()
            yield (aid, tenant_of(mid), mid, k, json.dumps({"client": rng.choice(("web", "ios", "android"))}),
                   now - dt.timedelta(seconds=rng.random() * 180 * 86400))

    loader.copy("clubs", ["club_id", "tenant_id", "name", "description", "country", "created_at"], clubs())
    loader.copy("members", ["member_id", "tenant_id", "country", "email", "display_name", "bio", "status",
                            "joined_at"], members())
    if n["club_memberships"] > n["members"] * max(1, n["clubs"] - 1):
        raise SystemExit("scale too small for unique club memberships")
    loader.copy("club_memberships", ["club_id", "member_id", "tenant_id", "role", "joined_at"], memberships())
    loader.copy("donations", ["donation_id", "tenant_id", "member_id", "campaign", "country", "amount",
                              "currency", "donated_at"], donations())
    loader.copy("messages", ["message_id", "tenant_id", "club_id", "member_id", "body", "sent_at"], messages())
    loader.copy("member_activity", ["activity_id", "tenant_id", "member_id", "kind", "detail", "occurred_at"],
                activity())
    return loader.stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--dsn", default="dbname=hingecraft", help="libpq connection string (default: local socket)")
    ap.add_argument("--schema", default="app")
    ap.add_argument("--tenancy-schema", default="tenancy")
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 1M rows per main collection")
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--now", default="2026-11-25T00:00:00+00:00", help="fixed 'now' so data are reproducible")
    ap.add_argument("--truncate", action="store_true", help="empty the tables first")
    ap.add_argument("--keep-triggers", action="store_true", help="do not switch off triggers (audit) for the load")
    args = ap.parse_args(argv)

    now = dt.datetime.fromisoformat(args.now)
    started = time.monotonic()
    with psycopg.connect(args.dsn) as conn:
        tenants = [r[0] for r in conn.execute(
            sql.SQL("SELECT tenant_id FROM {} WHERE status = 'active' ORDER BY tenant_id").format(
                sql.Identifier(args.tenancy_schema, "tenants")))]
        if not tenants:
            raise SystemExit(f"no active tenants in {args.tenancy_schema}.tenants: apply roles/schema first")
        if not args.keep_triggers:
            conn.execute("SET session_replication_role = replica")
        if args.truncate:
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(
                sql.Identifier(args.schema, t) for t in ("club_memberships", "messages", "member_activity",
                                                         "donations", "members", "clubs"))))
        conn.commit()
        stats = generate(conn, args.schema, args.scale, args.seed, tenants, now)
        analyze_started = time.monotonic()
        conn.autocommit = True
        conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(
            sql.Identifier(args.schema, t) for t in stats)))
        analyze_s = time.monotonic() - analyze_started
    total_rows = sum(s["rows"] for s in stats.values())
    total_s = time.monotonic() - started
    print(json.dumps({"scale": args.scale, "seed": args.seed, "tenants": tenants, "tables": stats,
                      "total_rows": total_rows, "load_seconds": round(total_s - analyze_s, 2),
                      "analyze_seconds": round(analyze_s, 2),
                      "rows_per_second": int(total_rows / (total_s - analyze_s))}, indent=2))


if __name__ == "__main__":
    main()
