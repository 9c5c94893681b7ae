"""Cache-aside reads and a session store for HingeCraft applications on this platform: the reference code of
docs/cache.md, exercised against the lab by tests/platform/test_cache.py.

- Redis: the `cache` instance (allkeys-lru) for read-through entries, the `sessions` instance (noeviction) for
  sessions, both found through Sentinel (redis.sentinel.Sentinel.master_for), TLS verified against the platform
  CA, as the `app` ACL user. Clients that cannot speak Sentinel use the loopback endpoint on their host instead.
- PostgreSQL: through PgBouncer (transaction mode) as a trusted application login; every database call is one
  transaction that starts with tenancy.set_tenant(), whose choice ends with that transaction.

Keys are `hc:v1:<kind>:<tenant>:<id>`: versioned (a format change bumps v1 and never reads old entries) and
tenant-scoped (two tenants never share an entry; RLS decides what the loader can see). Every part of a key is
checked before use, so a hostile tenant or id is refused, never spliced into a key or into SQL.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

KEY_PREFIX = "hc:v1"
TENANT_RE = re.compile(r"^[a-z0-9_]{1,40}$")  # pg_tenant's tenant id rule
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
# Seconds an entry lives. Invalidation deletes member entries on write; everything else (and any write that was
# missed) is bounded by its TTL until the change stream feeds invalidation (docs/cache.md).
TTL = {"member": 300, "club": 600, "dashboard": 60, "missing": 30}
JITTER = 0.1  # +-10 %: entries filled together do not all expire in the same second
MISSING = "__missing__"  # negative entry: an id that does not exist is not looked up again for TTL["missing"]

MEMBER_SQL = ("SELECT member_id, tenant_id, country, display_name, status, joined_at FROM app.members "
              "WHERE member_id = %s")
CLUB_SQL = ("SELECT c.club_id, c.tenant_id, c.name, c.description, c.country, "
            "(SELECT count(*) FROM app.club_memberships m WHERE m.club_id = c.club_id) AS members "
            "FROM app.clubs c WHERE c.club_id = %s")
DASHBOARD_SQL = "SELECT country, count(*) AS members FROM app.members GROUP BY country ORDER BY 2 DESC, 1"
# Columns update_member() may change: the statement is built from this fixed list, never from caller text.
MEMBER_FIELDS = ("display_name", "bio", "status")


def key(kind: str, tenant: str, ident: int | str) -> str:
    if kind not in TTL or kind == "missing":
        raise ValueError(f"unknown cache entry kind {kind!r}")
    if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
        raise ValueError(f"invalid tenant id {tenant!r}")
    if kind != "dashboard" and (isinstance(ident, bool) or not isinstance(ident, int) or ident < 0):
        raise ValueError(f"invalid {kind} id {ident!r}: a non-negative integer")
    return f"{KEY_PREFIX}:{kind}:{tenant}:{ident}"


class Cache:
    """Cache-aside over one Redis client (the cache instance's master) and one psycopg connection (autocommit)."""

    def __init__(self, redis, db, ttl: dict[str, int] | None = None, rng: random.Random | None = None):
        self.redis = redis
        self.db = db
        self.ttl = {**TTL, **(ttl or {})}
        self.rng = rng or random.Random()
        self.stats = {"hits": 0, "misses": 0, "db_reads": 0, "redis_errors": 0}

    def _ttl(self, kind: str) -> int:
        base = self.ttl[kind]
        return max(1, round(base * self.rng.uniform(1 - JITTER, 1 + JITTER)))

    def _query(self, tenant: str, sql: str, params: tuple, one: bool):
        """One transaction through the pooler: the tenant first, then the query (RLS applies)."""
        self.stats["db_reads"] += 1
        with self.db.transaction():
            self.db.execute("SELECT tenancy.set_tenant(%s)", (tenant,))
            cur = self.db.execute(sql, params)
            names = [c.name for c in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
        return (rows[0] if rows else None) if one else rows

    def _get_or_load(self, kind: str, cache_key: str, loader: Callable[[], Any]):
        """The cached value, or the loader's, stored with its TTL. Redis unreachable or failing (each call bounded
        by the client's socket timeouts): the database answers and nothing is stored - the cache is an
        optimisation, never a dependency of a read."""
        try:
            raw = self.redis.get(cache_key)
        except RedisError:
            self.stats["redis_errors"] += 1
            raw, cache_key = None, None
        if raw is not None:
            self.stats["hits"] += 1
            value = json.loads(raw)
            return None if value == MISSING else value
        self.stats["misses"] += 1
        value = loader()
        # JSON round trip so that a hit and a miss return the same types (timestamps as ISO strings)
        value = json.loads(json.dumps(value, default=str))
        if cache_key is not None:
            entry_kind = "missing" if value is None else kind
            try:
                self.redis.set(cache_key, json.dumps(MISSING if value is None else value), ex=self._ttl(entry_kind))
            except RedisError:
                self.stats["redis_errors"] += 1
        return value

    def member_profile(self, tenant: str, member_id: int) -> dict | None:
        k = key("member", tenant, member_id)
        return self._get_or_load("member", k, lambda: self._query(tenant, MEMBER_SQL, (member_id,), one=True))

    def club_page(self, tenant: str, club_id: int) -> dict | None:
        k = key("club", tenant, club_id)
        return self._get_or_load("club", k, lambda: self._query(tenant, CLUB_SQL, (club_id,), one=True))

    def dashboard(self, tenant: str) -> list[dict]:
        k = key("dashboard", tenant, "members_per_country")
        return self._get_or_load("dashboard", k, lambda: self._query(tenant, DASHBOARD_SQL, (), one=False))

    def update_member(self, tenant: str, member_id: int, **fields) -> bool:
        """Write to the database first; once it has committed, delete the entry (never write the new value into
        the cache: a delete cannot put an older value back). Returns whether a row was updated. A delete that
        fails (Redis unreachable) is raised after the commit: the old entry then lives until its TTL."""
        k = key("member", tenant, member_id)
        unknown = sorted(set(fields) - set(MEMBER_FIELDS))
        if unknown or not fields:
            raise ValueError(f"update_member: fields must be among {MEMBER_FIELDS}, got {sorted(fields)}")
        cols = [c for c in MEMBER_FIELDS if c in fields]
        sets = ", ".join(f"{c} = %s" for c in cols)
        with self.db.transaction():
            self.db.execute("SELECT tenancy.set_tenant(%s)", (tenant,))
            updated = self.db.execute(f"UPDATE app.members SET {sets} WHERE member_id = %s",
                                      (*[fields[c] for c in cols], member_id)).rowcount
        self.redis.delete(k)
        return updated > 0


class Sessions:
    """Sessions in the noeviction instance: an unguessable token, a sliding expiry, explicit logout."""

    def __init__(self, redis, ttl: int = 1800):
        self.redis = redis
        self.ttl = ttl

    @staticmethod
    def _key(token: str) -> str:
        if not isinstance(token, str) or not TOKEN_RE.match(token):
            raise ValueError("invalid session token")
        # `sess:` first: the lab's ACL lets the app user touch only sess:* in the sessions instance
        return f"sess:v1:{token}"

    def create(self, tenant: str, member_id: int, data: dict | None = None) -> str:
        key("member", tenant, member_id)  # the same checks as a cache key
        token = secrets.token_urlsafe(32)
        body = json.dumps({"tenant": tenant, "member_id": member_id, "data": data or {}})
        if not self.redis.set(self._key(token), body, ex=self.ttl, nx=True):
            raise RuntimeError("session token collision")  # 256 random bits: never in practice
        return token

    def get(self, token: str) -> dict | None:
        """The session, its expiry pushed back to the full TTL (GETEX), or None once expired or destroyed."""
        raw = self.redis.getex(self._key(token), ex=self.ttl)
        return json.loads(raw) if raw is not None else None

    def destroy(self, token: str) -> None:
        self.redis.delete(self._key(token))
