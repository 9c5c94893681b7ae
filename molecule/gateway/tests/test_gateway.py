"""Gateway (HAProxy engine) and adapter contract, from the controller over the scenario's network: requests go to
hc-mol-gateway-gw1:8443 with TLS verified against the scenario's CA, as a client on the network would send them.

Gateway: unknown/missing key -> 401, over the consumer's limit -> 429 with Retry-After (admitted count measured at
concurrency 1 and 16), /v1 and /v2 reach their versions (Deprecation on /v1 only), plaintext refused, oversized
body refused, stats/metrics and the adapter's port not reachable from outside (but answering on loopback).
Adapter: JWT checks, Insert/Get/Find/Count/Update/Remove round trip, hostile filters, tenant isolation.
"""

import concurrent.futures
import os
import pathlib
import socket
import ssl
import sys
import time
import uuid

import jwt
import requests

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from testlib import container_ip, docker, psql, require_container

EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SECRETS = EPHEMERAL / "secrets"
CA = str(EPHEMERAL / "pki" / "ca.crt")
GW = "hc-mol-gateway-gw1"
PG = "hc-mol-gateway-pg1"
PORT = 8443
AUD = "hingecraft-adapter"

pytestmark = require_container(GW, "gateway")


def secret(name):
    return (SECRETS / name).read_text(encoding="utf-8").split()[0]


IP = container_ip(GW)
BASE = f"https://{IP}:{PORT}"
SITE_KEY = (SECRETS / "site-jwt.key").read_text(encoding="utf-8")


class GwSession(requests.Session):
    """TLS verified against the scenario CA, the certificate checked for the name gw1's certificate carries."""

    def __init__(self):
        super().__init__()
        self.verify = CA
        self.mount(BASE, _NameAdapter())


class _NameAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *a, **kw):
        kw["assert_hostname"] = GW
        kw["server_hostname"] = GW
        return super().init_poolmanager(*a, **kw)


HTTP = GwSession()


def token(tenant="acme", key=SITE_KEY, lifetime=300, **extra):
    now = int(time.time())
    claims = {"iat": now, "exp": now + lifetime, "aud": AUD, "tenant": tenant, **extra}
    return jwt.encode(claims, key, algorithm="ES256")


def call(path, body=None, api_key="wix_site", tok=None, method="POST", timeout=15):
    headers = {}
    if api_key:
        headers["X-API-Key"] = secret(f"key_{api_key}") if api_key in ("wix_site", "limited", "burst") else api_key
    if tok:
        headers["Authorization"] = f"Bearer {tok}"
    # verify= per request: REQUESTS_CA_BUNDLE in the environment would override the session default
    return HTTP.request(method, BASE + path, json=body, headers=headers, timeout=timeout, verify=CA)


# -- gateway contract ---------------------------------------------------------------------------------------------

def test_unknown_and_missing_key_get_401():
    r = call("/v2/health", api_key="not-a-key-" + uuid.uuid4().hex, method="GET")
    assert r.status_code == 401, r.text
    assert r.json() == {"error": "unknown or missing API key"}
    assert call("/v2/health", api_key=None, method="GET").status_code == 401


def test_v1_and_v2_reach_their_versions():
    r1 = call("/v1/health", method="GET")
    r2 = call("/v2/health", method="GET")
    assert r1.status_code == 200 and r1.json()["api_version"] == "v1" and r1.json()["database"] == "ok"
    assert r2.status_code == 200 and r2.json()["api_version"] == "v2"
    assert r1.headers["Deprecation"] == "@1767225600" and "Sunset" in r1.headers
    assert "Deprecation" not in r2.headers
    assert call("/v3/health", method="GET").status_code == 404


def test_over_the_limit_429_with_retry_after():
    codes = [call("/v2/health", api_key="limited", method="GET").status_code for _attempt in range(9)]
    admitted = codes.count(200)
    print(f"\nMEASURED rate limit 5/60s, concurrency 1, 9 requests: admitted {admitted}, codes {codes}")
    assert codes[:5] == [200] * 5 and set(codes[5:]) == {429}
    r = call("/v2/health", api_key="limited", method="GET")
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"


def test_limit_holds_under_concurrency():
    def one(_index):
        return call("/v2/health", api_key="burst", method="GET").status_code
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(one, range(100)))
    admitted = codes.count(200)
    print(f"\nMEASURED rate limit 50/60s, concurrency 16, 100 requests: admitted {admitted}, 429: {codes.count(429)}")
    assert admitted == 50 and codes.count(429) == 50


def test_plaintext_is_refused():
    with socket.create_connection((IP, PORT), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b"GET /v2/health HTTP/1.1\r\nHost: gw\r\n\r\n")
        try:
            data = s.recv(1024)
        except (ConnectionResetError, TimeoutError):
            data = b""
    assert not data.startswith(b"HTTP/"), data[:100]
    for port in (80, 8080):
        with socket.socket() as s:
            s.settimeout(3)
            assert s.connect_ex((IP, port)) != 0, f"port {port} is open"


def test_tls_below_1_2_is_refused():
    ctx = ssl.create_default_context(cafile=CA)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    try:
        with socket.create_connection((IP, PORT), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=GW):
            refused = False
    except (ssl.SSLError, OSError):
        refused = True
    assert refused


def test_oversized_body_is_refused():
    big = {"collectionName": "members", "item": {"bio": "x" * 70000}}
    r = call("/v2/data/insert", big, tok=token())
    assert r.status_code == 413, r.status_code


def test_stats_and_adapter_only_on_loopback():
    for port in (8404, 8000):
        with socket.socket() as s:
            s.settimeout(3)
            assert s.connect_ex((IP, port)) != 0, f"port {port} reachable from outside"
    out = docker("exec", GW, "python3", "-c",
                 "import urllib.request as u;print(u.urlopen('http://127.0.0.1:8404/metrics',timeout=5).read()"
                 ".decode()[:20000])").stdout
    assert "haproxy_frontend_http_requests_total" in out


# -- adapter contract ---------------------------------------------------------------------------------------------

def test_jwt_is_required_and_verified():
    body = {"collectionName": "members", "itemId": "1"}
    assert call("/v2/data/get", body).status_code == 401
    other = jwt.encode({"iat": int(time.time()), "exp": int(time.time()) + 60, "aud": AUD, "tenant": "acme"},
                       _other_key(), algorithm="ES256")
    assert call("/v2/data/get", body, tok=other).status_code == 401
    assert call("/v2/data/get", body, tok=token(lifetime=-120)).status_code == 401
    unsigned = jwt.encode({"iat": int(time.time()), "exp": int(time.time()) + 60, "aud": AUD, "tenant": "acme"},
                          None, algorithm="none")
    assert call("/v2/data/get", body, tok=unsigned).status_code == 401
    assert call("/v2/data/get", body, tok=token(aud_override=1) + "x").status_code == 401
    assert call("/v2/data/get", body, tok=token(tenant="initech")).status_code == 403


def _other_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


MEMBER_ID = 900000000 + int(time.time()) % 1000000


def test_insert_get_find_round_trip():
    item = {"_id": str(MEMBER_ID), "country": "US", "email": "o'brien@example.org",
            "display_name": "Róisín O'Brien \"the\" carver", "bio": "joins; DROP TABLE members; --"}
    started = time.monotonic()
    r = call("/v2/data/insert", {"collectionName": "members", "item": item}, tok=token())
    assert r.status_code == 200, r.text
    assert r.json()["item"]["display_name"] == item["display_name"]
    assert call("/v2/data/insert", {"collectionName": "members", "item": item}, tok=token()).status_code == 409
    r = call("/v2/data/get", {"collectionName": "members", "itemId": str(MEMBER_ID)}, tok=token())
    assert r.status_code == 200 and r.json()["item"]["bio"] == item["bio"]
    flt = {"operator": "$eq", "fieldName": "email", "value": "o'brien@example.org"}
    r = call("/v2/data/find", {"collectionName": "members", "filter": flt, "limit": 10}, tok=token())
    assert r.status_code == 200 and [i["_id"] for i in r.json()["items"]] == [str(MEMBER_ID)]
    assert r.json()["pagingMetadata"]["total"] == 1
    r = call("/v1/data/find", {"collectionName": "members", "filter": flt}, tok=token())
    assert r.status_code == 200 and r.json()["totalCount"] == 1
    r = call("/v2/data/update", {"collectionName": "members", "item": {"_id": str(MEMBER_ID), "status": "paused"}},
             tok=token())
    assert r.status_code == 200 and r.json()["item"]["status"] == "paused"
    print(f"\nMEASURED insert+get+find+find+update round trip through the gateway: "
          f"{(time.monotonic() - started) * 1000:.0f} ms")
    r = call("/v2/data/count", {"collectionName": "members", "filter": flt}, tok=token())
    assert r.json() == {"totalCount": 1}
    assert call("/v2/data/find", {"collectionName": "members", "limit": 5000}, tok=token()).status_code == 400
    schemas = call("/v2/schemas/list", {}, tok=token()).json()["schemas"]
    assert {s["id"] for s in schemas} == {"members", "clubs", "donations", "messages"}


def test_hostile_filters_are_refused_or_data():
    hostile_field = {"operator": "$eq", "fieldName": 'email" = email OR 1=1; DROP TABLE app.members; --', "value": 1}
    r = call("/v2/data/find", {"collectionName": "members", "filter": hostile_field}, tok=token())
    assert r.status_code == 400 and r.json() == {"error": "unknown field"}
    hostile_op = {"operator": "; DELETE FROM app.members", "fieldName": "email", "value": 1}
    assert call("/v2/data/count", {"collectionName": "members", "filter": hostile_op}, tok=token()).status_code == 400
    hostile_value = {"operator": "$eq", "fieldName": "email", "value": "x' OR '1'='1'; DROP TABLE app.members; --"}
    r = call("/v2/data/find", {"collectionName": "members", "filter": hostile_value}, tok=token())
    assert r.status_code == 200 and r.json()["items"] == []
    hostile_coll = call("/v2/data/count", {"collectionName": "members; DROP TABLE app.members"}, tok=token())
    assert hostile_coll.status_code == 400
    sort = [{"fieldName": "email", "direction": "asc, (SELECT pg_sleep(10))"}]
    assert call("/v2/data/find", {"collectionName": "members", "sort": sort}, tok=token()).status_code == 400
    assert call("/v2/data/get", {"collectionName": "members", "itemId": "1 OR 1=1"}, tok=token()).status_code == 400
    # the table survives and still holds the row
    assert psql(PG, f"SELECT count(*) FROM app.members WHERE member_id = {MEMBER_ID}", db="hingecraft") == "1"


def test_tenant_isolation():
    gid = MEMBER_ID + 1
    item = {"_id": str(gid), "country": "GB", "email": "g@globex.example", "display_name": "Globex member"}
    assert call("/v2/data/insert", {"collectionName": "members", "item": item}, tok=token("globex")).status_code == 200
    assert psql(PG, f"SELECT tenant_id FROM app.members WHERE member_id = {gid}", db="hingecraft") == "globex"
    # acme cannot read, find, count, update or remove globex's row
    assert call("/v2/data/get", {"collectionName": "members", "itemId": str(gid)}, tok=token()).status_code == 404
    flt = {"operator": "$eq", "fieldName": "_id", "value": str(gid)}
    assert call("/v2/data/count", {"collectionName": "members", "filter": flt}, tok=token()).json()["totalCount"] == 0
    upd = {"collectionName": "members", "item": {"_id": str(gid), "display_name": "stolen"}}
    assert call("/v2/data/update", upd, tok=token()).status_code == 404
    assert call("/v2/data/remove", {"collectionName": "members", "itemId": str(gid)}, tok=token()).status_code == 404
    # globex reads its own row, and acme's insert of a row claiming globex is impossible (no tenant field)
    r = call("/v2/data/get", {"collectionName": "members", "itemId": str(gid)}, tok=token("globex"))
    assert r.status_code == 200 and r.json()["item"]["display_name"] == "Globex member"
    bad = {"collectionName": "members", "item": {**item, "_id": str(gid + 1), "tenant_id": "globex"}}
    assert call("/v2/data/insert", bad, tok=token()).status_code == 400
    r = call("/v2/data/remove", {"collectionName": "members", "itemId": str(gid)}, tok=token("globex"))
    assert r.status_code == 200


def test_logs_carry_no_secrets():
    out = docker("exec", GW, "journalctl", "-u", "hc-adapter", "--no-pager", "-o", "cat", "-n", "300").stdout
    assert '"event":"request"' in out and '"tenant":"acme"' in out
    for needle in (secret("hc_adapter"), "o'brien", "Bearer", "eyJ"):
        assert needle not in out
