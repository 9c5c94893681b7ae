"""The cache-aside pattern and the session store of docs/cache.md (examples/hingecraft_cache.py) on the lab, the
way an application uses them: Redis found through the Sentinels over verified TLS as the `app` user, PostgreSQL
through PgBouncer as the trusted application login (app_rw_login), tenant chosen per transaction.

Each test writes rows of its own (ids from the clock) as postgres on the primary, so that what the cache returns
can be compared with what the database holds, and a value changed behind the cache's back shows whether a read
came from Redis or from the database.
"""

from __future__ import annotations

import statistics
import sys
import time

import lab
import psycopg
import pytest
from redis.sentinel import Sentinel
from redis_cluster import RedisCluster
from testlib import wait_until

sys.path.insert(0, str(lab.ROOT / "examples"))
import hingecraft_cache as hc

TENANT, OTHER = "acme", "globex"
CLUSTER = RedisCluster(sorted(lab.GROUPS["redis"].values()), lambda user: lab.secret(f"redis_{user}"),
                       sentinel_port=26379)


def primary_sql(query: str) -> str:
    prim = lab.writable_primaries()
    assert len(prim) == 1, f"expected exactly one primary, found {prim}"
    return lab.node_sql(prim[0], query, timeout=30, db="hingecraft")


@pytest.fixture(scope="module")
def redis_clients():
    pw = lab.secret("redis_app")
    tls = {"ssl": True, "ssl_ca_certs": str(lab.CA), "ssl_check_hostname": True, "ssl_cert_reqs": "required",
           "username": "app", "password": pw, "socket_timeout": 3, "socket_connect_timeout": 3}
    sentinel = Sentinel([(ip, 26379) for ip in CLUSTER.ips.values()], sentinel_kwargs=tls, **tls)
    return {name: sentinel.master_for(name) for name in ("cache", "sessions")}


@pytest.fixture(scope="module")
def cache(redis_clients):
    dsn = lab.bouncer_dsn(user="app_rw_login")
    with psycopg.connect(dsn, password=lab.secret("pg_app_rw_login"), autocommit=True) as db:
        yield hc.Cache(redis_clients["cache"], db)


@pytest.fixture(scope="module")
def member():
    mid = int(time.time() * 1000) * 1000 + 7
    primary_sql(f"INSERT INTO app.members (member_id, tenant_id, country, email, display_name) "
                f"VALUES ({mid}, '{TENANT}', 'DE', 'cache-{mid}@example.org', 'Cache probe {mid}')")
    return mid


def wait_replicated(mid: int, name: str):
    """Reads through PgBouncer may go to a standby (pgpool balances them): wait until every node has the row."""
    for node in lab.NODES:
        wait_until(lambda n=node: lab.node_sql(n, f"SELECT display_name FROM app.members WHERE member_id = {mid}",
                                               db="hingecraft") == name,
                   30, f"member {mid} as {name!r} on {node}", interval=0.5)


def test_member_profile_read_through_invalidate_on_write(cache, member, results):
    k = hc.key("member", TENANT, member)
    cache.redis.delete(k)
    wait_replicated(member, f"Cache probe {member}")
    reads = cache.stats["db_reads"]
    first = cache.member_profile(TENANT, member)
    assert first and first["display_name"] == f"Cache probe {member}" and first["tenant_id"] == TENANT, first
    assert cache.stats["db_reads"] == reads + 1
    ttl = cache.redis.ttl(k)
    assert 0 < ttl <= round(hc.TTL["member"] * (1 + hc.JITTER)), ttl
    # changed behind the cache's back: the next read is served from Redis, without a database read
    primary_sql(f"UPDATE app.members SET display_name = 'Changed behind the cache' WHERE member_id = {member}")
    wait_replicated(member, "Changed behind the cache")
    assert cache.member_profile(TENANT, member)["display_name"] == f"Cache probe {member}"
    assert cache.stats["db_reads"] == reads + 1
    # a write through the application path deletes the entry: the next read loads the new value
    assert cache.update_member(TENANT, member, display_name="Renamed through the app")
    assert cache.redis.exists(k) == 0
    wait_replicated(member, "Renamed through the app")
    assert cache.member_profile(TENANT, member)["display_name"] == "Renamed through the app"
    assert cache.stats["db_reads"] == reads + 2
    # what the cache saves, recorded (not asserted): a hit against the database read it replaces
    hits, loads = [], []
    for _hit in range(200):
        t0 = time.perf_counter()
        cache.member_profile(TENANT, member)
        hits.append(time.perf_counter() - t0)
    for _miss in range(50):
        cache.redis.delete(k)
        t0 = time.perf_counter()
        cache.member_profile(TENANT, member)
        loads.append(time.perf_counter() - t0)
    q = statistics.quantiles
    results["cache_member_profile_ms"] = {
        "hit_p50": round(q(hits, n=100)[49] * 1000, 3), "hit_p95": round(q(hits, n=100)[94] * 1000, 3),
        "miss_p50": round(q(loads, n=100)[49] * 1000, 3), "miss_p95": round(q(loads, n=100)[94] * 1000, 3),
        "note": "from the host: Redis over TLS via Sentinel discovery vs PgBouncer + pgpool + PostgreSQL, lab"}


def test_other_tenant_and_unknown_ids_are_negative_entries(cache, member):
    # RLS: the other tenant cannot see the member; that answer is cached briefly, under the other tenant's key
    k = hc.key("member", OTHER, member)
    cache.redis.delete(k)
    reads = cache.stats["db_reads"]
    assert cache.member_profile(OTHER, member) is None
    assert cache.member_profile(OTHER, member) is None
    assert cache.stats["db_reads"] == reads + 1, "the negative entry was not used"
    assert 0 < cache.redis.ttl(k) <= round(hc.TTL["missing"] * (1 + hc.JITTER))
    assert cache.member_profile(TENANT, member) is not None, "the owner's entry must not be the other's"


@pytest.mark.parametrize("tenant, ident", [("acme'; DROP TABLE app.members; --", 1), ("ACME", 1), ("acme", -1),
                                           ("acme", "1 OR 1=1"), ("acme:*", 1)])
def test_hostile_key_parts_are_refused_before_any_call(cache, tenant, ident):
    reads, misses = cache.stats["db_reads"], cache.stats["misses"]
    with pytest.raises(ValueError, match="invalid"):
        cache.member_profile(tenant, ident)
    assert (cache.stats["db_reads"], cache.stats["misses"]) == (reads, misses)


def test_reads_fall_back_to_the_database_when_redis_is_unreachable(cache, member):
    # a client whose Redis is gone (a closed loopback port, 1 s timeouts): reads still answer, from the database
    import redis

    dead = redis.Redis(host="127.0.0.1", port=1, socket_timeout=1, socket_connect_timeout=1)
    degraded = hc.Cache(dead, cache.db)
    assert degraded.member_profile(TENANT, member)["member_id"] == member
    # one error (the GET); after it the entry is not stored, so no second call to the dead Redis
    assert degraded.stats["redis_errors"] == 1 and degraded.stats["db_reads"] == 1, degraded.stats


def test_update_refuses_columns_outside_its_list(cache, member):
    with pytest.raises(ValueError, match="fields must be among"):
        cache.update_member(TENANT, member, tenant_id=OTHER)
    assert primary_sql(f"SELECT tenant_id FROM app.members WHERE member_id = {member}") == TENANT


def test_club_page_and_dashboard(cache, member):
    cid = member + 1
    primary_sql(f"INSERT INTO app.clubs (club_id, tenant_id, name, description, country) "
                f"VALUES ({cid}, '{TENANT}', 'Cache club {cid}', 'lathes', 'DE');"
                f"INSERT INTO app.club_memberships (club_id, member_id, tenant_id) VALUES ({cid}, {member}, '{TENANT}')")
    cache.redis.delete(hc.key("dashboard", TENANT, "members_per_country"))

    def page_loaded():
        # a read balanced to a standby that has not replayed the insert yet caches a negative entry: drop it
        cache.redis.delete(hc.key("club", TENANT, cid))
        return cache.club_page(TENANT, cid)

    page = wait_until(page_loaded, 30, f"club {cid} readable through the pooler", interval=0.5)
    assert page["name"] == f"Cache club {cid}" and page["members"] == 1, page
    board = cache.dashboard(TENANT)
    live = int(primary_sql(f"SELECT count(*) FROM app.members WHERE tenant_id = '{TENANT}' AND country = 'DE'"))
    assert {r["country"]: r["members"] for r in board}.get("DE") == live, (board, live)
    assert 0 < cache.redis.ttl(hc.key("dashboard", TENANT, "members_per_country")) <= round(
        hc.TTL["dashboard"] * (1 + hc.JITTER))


def test_sessions_slide_expire_and_end(redis_clients, member):
    sessions = hc.Sessions(redis_clients["sessions"], ttl=4)
    token = sessions.create(TENANT, member, {"locale": "de"})
    assert sessions.get(token) == {"tenant": TENANT, "member_id": member, "data": {"locale": "de"}}
    # used every 2 s, the session outlives its 4 s TTL (GETEX pushes the expiry back on every use)
    for _use in range(3):
        time.sleep(2)
        assert sessions.get(token) is not None, "an active session expired"
    # unused, it expires; and a logout ends another one at once
    wait_until(lambda: redis_clients["sessions"].exists(hc.Sessions._key(token)) == 0, 10, "the session to expire",
               interval=0.5)
    assert sessions.get(token) is None
    other = sessions.create(TENANT, member)
    sessions.destroy(other)
    assert sessions.get(other) is None
    with pytest.raises(ValueError, match="invalid session token"):
        sessions.get("*")


def test_sessions_never_evicted_cache_evicts():
    policies = {}
    for name, port in (("cache", 6379), ("sessions", 6380)):
        out = CLUSTER.cli(CLUSTER.nodes[0], port, "CONFIG", "GET", "maxmemory-policy").stdout.split()
        policies[name] = out[1] if len(out) == 2 else out
    assert policies == {"cache": "allkeys-lru", "sessions": "noeviction"}, policies
