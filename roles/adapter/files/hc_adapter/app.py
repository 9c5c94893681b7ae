"""HingeCraft data adapter: Wix External Database Collections endpoints over PostgreSQL (ASGI, Starlette).

Configuration: a JSON file named by HC_ADAPTER_CONFIG (written by roles/adapter), secrets in a second JSON file
named by HC_ADAPTER_SECRETS (mode 0600). Every request: JWT verified with the site's public key -> one
transaction on a pooled connection -> SET LOCAL statement_timeout and the tenant setting (row-level security
through pg_tenant applies) -> parameterised SQL from hc_adapter.query -> JSON. One JSON log line per request,
without tokens, bodies or values.
"""

import json
import logging
import os
import re
import sys
import time
import uuid
from contextlib import asynccontextmanager

import jwt
import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hc_adapter import query
from hc_adapter.query import BadRequest

TENANT_RE = re.compile(r"^[a-z0-9_]{1,40}$")
MAX_BODY = 1024 * 1024
LOG = logging.getLogger("hc_adapter")


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(), "event": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, separators=(",", ":"))


def setup_logging(level):
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    LOG.handlers[:] = [handler]
    LOG.setLevel(level.upper())
    LOG.propagate = False


def load_config():
    with open(os.environ["HC_ADAPTER_CONFIG"], encoding="utf-8") as f:
        cfg = json.load(f)
    with open(os.environ["HC_ADAPTER_SECRETS"], encoding="utf-8") as f:
        secrets = json.load(f)
    with open(cfg["jwt_public_key_file"], encoding="utf-8") as f:
        cfg["jwt_public_key"] = f.read()
    return cfg, secrets


class HttpError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def conninfo(cfg, secrets):
    db = cfg["database"]
    return make_conninfo(
        host=db["host"], port=db["port"], dbname=db["name"], user=db["user"], password=secrets["db_password"],
        sslmode="verify-full", sslrootcert=db["ca_file"], connect_timeout=db["connect_timeout_s"],
        application_name="hc_adapter", keepalives=1, keepalives_idle=30, keepalives_interval=10,
        keepalives_count=3, target_session_attrs="read-write")


class Adapter:
    def __init__(self, cfg, secrets):
        self.cfg = cfg
        self.pool = AsyncConnectionPool(
            conninfo(cfg, secrets), min_size=cfg["pool"]["min_size"], max_size=cfg["pool"]["max_size"],
            timeout=cfg["pool"]["timeout_s"], max_idle=cfg["pool"]["max_idle_s"],
            reconnect_timeout=cfg["pool"]["reconnect_timeout_s"], open=False,
            kwargs={"autocommit": False, "prepare_threshold": None})
        self.tenants = set(cfg["tenants"])
        self.collections = query.with_schema(cfg["database"]["schema"])

    # -- authentication ---------------------------------------------------------------------------------------
    def authenticate(self, request):
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise HttpError(401, "missing bearer token")
        token = header[7:].strip()
        j = self.cfg["jwt"]
        try:
            claims = jwt.decode(
                token, self.cfg["jwt_public_key"], algorithms=j["algorithms"], audience=j["audience"] or None,
                issuer=j["issuer"] or None, leeway=j["leeway_s"],
                options={"require": ["exp", "iat", j["tenant_claim"]], "verify_aud": bool(j["audience"])})
        except jwt.PyJWTError as exc:
            raise HttpError(401, "invalid token: " + type(exc).__name__) from None
        if claims["exp"] - claims["iat"] > j["max_lifetime_s"]:
            raise HttpError(401, "invalid token: lifetime too long")
        tenant = claims[j["tenant_claim"]]
        if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
            raise HttpError(403, "invalid tenant claim")
        if self.tenants and tenant not in self.tenants:
            raise HttpError(403, "tenant not served here")
        return tenant

    # -- database ---------------------------------------------------------------------------------------------
    async def run(self, tenant, statements):
        """Run [(query, params, fetch)] in one transaction under the tenant; returns the results in order."""
        results = []
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "SELECT set_config('statement_timeout', %s, true), set_config(%s, %s, true)",
                (f"{self.cfg['statement_timeout_ms']}ms", self.cfg["tenant_setting"], tenant))
            for q, params, fetch in statements:
                await cur.execute(q, params)
                results.append(await cur.fetchall() if fetch == "all" else await cur.fetchone())
        return results

    async def body(self, request):
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise HttpError(413, "request body too large")
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise HttpError(400, "body is not JSON") from None
        if not isinstance(data, dict):
            raise HttpError(400, "body must be a JSON object")
        return data

    # -- endpoints --------------------------------------------------------------------------------------------
    async def op(self, request, version, name, tenant, data):
        p = self.cfg["paging"]
        if name == "provision":
            return {}
        if name == "schemas_list":
            return {"schemas": [query.schema(c, p["max_limit"]) for c in self.collections.values()]}
        if name == "schemas_find":
            ids = data.get("schemaIds")
            if not isinstance(ids, list) or not ids:
                raise BadRequest("schemaIds must be a non-empty list")
            return {"schemas": [query.schema(query.collection(i, self.collections), p["max_limit"]) for i in ids]}
        coll = query.collection(data.get("collectionName"), self.collections)
        request.state.collection = coll.name
        if name == "get":
            (row,) = await self.run(tenant, [(*query.get(coll, data.get("itemId")), "one")])
            if row is None:
                raise HttpError(404, "item not found")
            return {"item": query.row_to_item(coll, row)}
        if name == "find":
            skip, limit = query.paging(data.get("skip"), data.get("limit"), p["default_limit"], p["max_limit"])
            q, params = query.find(coll, data.get("filter"), data.get("sort"), skip, limit)
            rows, total = await self.run(tenant, [(q, params, "all"), (*query.count(coll, data.get("filter")), "one")])
            total = total[0]
            items = [query.row_to_item(coll, r) for r in rows]
            if version == "v1":
                return {"items": items, "totalCount": total}
            return {"items": items, "pagingMetadata": {"count": len(items), "offset": skip, "total": total}}
        if name == "count":
            (row,) = await self.run(tenant, [(*query.count(coll, data.get("filter")), "one")])
            return {"totalCount": row[0]}
        if name == "insert":
            q, params = query.insert(coll, data.get("item"), self.cfg["tenant_setting"])
            try:
                (row,) = await self.run(tenant, [(q, params, "one")])
            except psycopg.errors.UniqueViolation:
                raise HttpError(409, "an item with this _id exists") from None
            return {"item": query.row_to_item(coll, row)}
        if name == "update":
            (row,) = await self.run(tenant, [(*query.update(coll, data.get("item")), "one")])
            if row is None:
                raise HttpError(404, "item not found")
            return {"item": query.row_to_item(coll, row)}
        if name == "remove":
            (row,) = await self.run(tenant, [(*query.remove(coll, data.get("itemId")), "one")])
            if row is None:
                raise HttpError(404, "item not found")
            return {"item": query.row_to_item(coll, row)}
        raise HttpError(404, "unknown operation")

    def endpoint(self, version, name):
        async def handler(request: Request):
            started = time.monotonic()
            request.state.collection = None
            tenant = None
            status = 500
            try:
                tenant = self.authenticate(request)
                data = await self.body(request)
                payload = await self.op(request, version, name, tenant, data)
                status = 200
                resp = JSONResponse(payload)
            except HttpError as exc:
                status = exc.status
                resp = JSONResponse({"error": exc.message}, status_code=status)
            except BadRequest as exc:
                status = 400
                resp = JSONResponse({"error": str(exc)}, status_code=400)
            except psycopg.errors.QueryCanceled:
                status = 504
                resp = JSONResponse({"error": "statement timeout"}, status_code=504)
            except psycopg.errors.InsufficientPrivilege:
                status = 403
                resp = JSONResponse({"error": "not allowed for this tenant"}, status_code=403)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                status = 400
                resp = JSONResponse({"error": "rejected by the database: " + type(exc).__name__}, status_code=400)
            except (psycopg.OperationalError, TimeoutError) as exc:
                status = 503
                resp = JSONResponse({"error": "database unavailable"}, status_code=503)
                LOG.warning("database unavailable", extra={"fields": {"error": type(exc).__name__}})
            except Exception as exc:  # noqa: BLE001 - the caller gets a 500, the log gets the class, never data
                resp = JSONResponse({"error": "internal error"}, status_code=500)
                LOG.error("unhandled error", extra={"fields": {"error": type(exc).__name__}})
            resp.headers["X-HC-API-Version"] = version
            LOG.info("request", extra={"fields": {
                "request_id": request.headers.get("x-request-id") or uuid.uuid4().hex, "version": version,
                "op": name, "collection": request.state.collection, "tenant": tenant, "status": status,
                "ms": round((time.monotonic() - started) * 1000, 2)}})
            return resp
        return handler

    async def health(self, request):
        first = request.url.path.strip("/").split("/")[0]
        version = first if first in self.cfg["api_versions"] else ""
        try:
            async with self.pool.connection(timeout=self.cfg["health_timeout_s"]) as conn:
                await conn.execute("SELECT 1")
            payload, code = {"status": "ok", "database": "ok"}, 200
        except Exception as exc:  # noqa: BLE001 - any failure is "not healthy"; the class is logged
            LOG.warning("health check failed", extra={"fields": {"error": type(exc).__name__}})
            payload, code = {"status": "degraded", "database": "unavailable"}, 503
        if version:
            payload["api_version"] = version
        return JSONResponse(payload, status_code=code)


OPERATIONS = {
    "provision": "provision", "schemas/list": "schemas_list", "schemas/find": "schemas_find",
    "data/get": "get", "data/find": "find", "data/count": "count", "data/insert": "insert",
    "data/update": "update", "data/remove": "remove",
}


def build(cfg, secrets):
    adapter = Adapter(cfg, secrets)

    @asynccontextmanager
    async def lifespan(_app):
        await adapter.pool.open(wait=False)
        yield
        await adapter.pool.close(timeout=5)

    routes = [Route("/health", adapter.health, methods=["GET"])]
    for version in cfg["api_versions"]:
        routes.append(Route(f"/{version}/health", adapter.health, methods=["GET"]))
        for path, name in OPERATIONS.items():
            routes.append(Route(f"/{version}/{path}", adapter.endpoint(version, name), methods=["POST"]))
    return Starlette(routes=routes, lifespan=lifespan)


def create_app():
    cfg, secrets = load_config()
    setup_logging(cfg.get("log_level", "info"))
    return build(cfg, secrets)
