# Copyright: HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gateway role's one declarative input: checks (gateway_problems) and the Kong DB-less rendering
(kong_declarative). Pure functions, unit-tested (tests/unit/plugins/filter/test_gateway_kong.py, with decK when present)."""

import re

DOCUMENTATION = r"""
name: gateway_problems
short_description: Problems in the gateway role's declarative input (empty list = valid)
description:
  - Checks names, references between consumers, routes, services and upstreams, limits and keys.
  - Used by roles/gateway's preflight; kong_declarative (same file) renders the input as Kong's kong.yml.
options:
  _input:
    description: The gateway spec (roles/gateway vars/main.yml __gateway_spec).
    type: dict
    required: true
"""

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
PREFIX_RE = re.compile(r"^/[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
KEY_RE = re.compile(r"^[A-Za-z0-9_.~+/=-]{24,256}$")
HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
HEADER_VALUE_RE = re.compile(r'^[A-Za-z0-9 @:,/+._-]{1,64}$')


def _limit_problems(where, rl):
    if rl is None:
        return []
    if not isinstance(rl, dict) or not isinstance(rl.get("requests"), int) or not isinstance(rl.get("period_s"), int) \
            or rl["requests"] < 1 or rl["period_s"] < 1:
        return [f"{where}: rate_limit needs positive integers requests and period_s"]
    if rl["period_s"] not in (1, 60, 3600, 86400):
        return [f"{where}: rate_limit.period_s must be 1, 60, 3600 or 86400 (Kong's second/minute/hour/day)"]
    return []


def gateway_problems(spec):
    problems = []
    if spec.get("engine") not in ("haproxy", "kong"):
        problems.append("gateway_engine must be haproxy or kong")
    if not HEADER_RE.match(str(spec.get("api_key_header", ""))):
        problems.append("gateway_api_key_header must be a header name")
    if int(spec.get("max_body_bytes", 0)) < 1:
        problems.append("gateway_max_body_bytes must be positive")
    kong = spec.get("kong", {})
    if spec.get("engine") == "kong" and kong.get("rate_limit_policy") == "redis" \
            and not (kong.get("redis") or {}).get("password"):
        problems.append("gateway_kong_redis_password is empty: the redis rate-limiting policy logs in to Redis "
                        "(supply it from the vault, or set gateway_kong_rate_limit_policy: local)")
    ups = {}
    for u in spec.get("upstreams", []):
        if not NAME_RE.match(str(u.get("name", ""))):
            problems.append(f"gateway_upstreams: invalid name {u.get('name')!r} (a-z, 0-9, _)")
        if not u.get("targets"):
            problems.append(f"gateway_upstreams {u.get('name')}: no targets")
        ups[u.get("name")] = u
    svcs = {}
    for s in spec.get("services", []):
        if not NAME_RE.match(str(s.get("name", ""))):
            problems.append(f"gateway_services: invalid name {s.get('name')!r}")
        if s.get("upstream") not in ups:
            problems.append(f"gateway_services {s.get('name')}: upstream {s.get('upstream')!r} is not defined")
        svcs[s.get("name")] = s
    routes = spec.get("routes", [])
    if not routes:
        problems.append("gateway_routes: at least one route")
    for r in routes:
        name = r.get("name")
        if not NAME_RE.match(str(name or "")):
            problems.append(f"gateway_routes: invalid name {name!r}")
        if not PREFIX_RE.match(str(r.get("path_prefix", ""))):
            problems.append(f"gateway_routes {name}: path_prefix must look like /v1")
        if r.get("service") not in svcs:
            problems.append(f"gateway_routes {name}: service {r.get('service')!r} is not defined")
        for hdr in ("deprecation", "sunset"):
            if r.get(hdr) and not HEADER_VALUE_RE.match(str(r[hdr])):
                problems.append(f"gateway_routes {name}: {hdr} has characters a header value cannot carry")
        problems += _limit_problems(f"gateway_routes {name}", r.get("rate_limit"))
    for key in ("upstreams", "services", "routes", "consumers"):
        names = [x.get("name") for x in spec.get(key, [])]
        if len(names) != len(set(names)):
            problems.append(f"gateway_{key}: names must be unique")
    prefixes = [r.get("path_prefix") for r in routes]
    if len(prefixes) != len(set(prefixes)):
        problems.append("gateway_routes: path prefixes must be unique")
    consumers = spec.get("consumers", [])
    if not consumers:
        problems.append("gateway_consumers: at least one consumer (there is no anonymous access)")
    keys = []
    for c in consumers:
        if not NAME_RE.match(str(c.get("name", ""))):
            problems.append(f"gateway_consumers: invalid name {c.get('name')!r}")
        if not KEY_RE.match(str(c.get("api_key") or "")):
            problems.append(f"gateway_consumers {c.get('name')}: api_key missing or not 24-256 characters of "
                            "letters, digits, _ . ~ + / = - (supply it from the vault)")
        keys.append(c.get("api_key"))
        problems += _limit_problems(f"gateway_consumers {c.get('name')}", c.get("rate_limit"))
    if len(keys) != len(set(keys)):
        problems.append("gateway_consumers: API keys must be unique")
    return problems


PERIODS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


def _rate_limiting(rl, kong):
    config = {PERIODS[rl["period_s"]]: rl["requests"], "limit_by": "consumer", "policy": kong["rate_limit_policy"],
              "fault_tolerant": bool(kong["fault_tolerant"]), "error_code": 429,
              "error_message": "rate limit exceeded", "hide_client_headers": False}
    if kong["rate_limit_policy"] == "redis":
        redis = kong["redis"]
        config["sync_rate"] = -1
        config["redis"] = {"host": redis["host"], "port": int(redis["port"]), "ssl": bool(redis["ssl"]),
                           "ssl_verify": bool(redis["ssl"]), "timeout": int(redis["timeout"]), "database": 0}
        for opt in ("username", "password", "server_name"):
            if redis.get(opt):
                config["redis"][opt] = redis[opt]
    return {"name": "rate-limiting", "config": config}


def kong_declarative(spec):
    """The spec as Kong 3.x DB-less declarative configuration (a dict; the role writes it with to_nice_yaml)."""
    problems = gateway_problems(spec)
    if problems:
        raise ValueError("; ".join(problems))
    kong = spec["kong"]
    ups = {u["name"]: u for u in spec["upstreams"]}
    out = {"_format_version": "3.0", "upstreams": [], "services": [], "consumers": [],
           "plugins": []}
    for u in spec["upstreams"]:
        out["upstreams"].append({
            "name": u["name"],
            "healthchecks": {"active": {"type": "https" if u.get("tls") else "http",
                                        "http_path": u.get("health_path", "/health"),
                                        "healthy": {"interval": 2, "successes": 1},
                                        "unhealthy": {"interval": 2, "http_failures": 2, "tcp_failures": 2,
                                                      "timeouts": 2}}},
            "targets": [{"target": f"{t['address']}:{int(t['port'])}"} for t in u["targets"]]})
    for s in spec["services"]:
        up = ups[s["upstream"]]
        svc = {"name": s["name"], "host": up["name"], "protocol": "https" if up.get("tls") else "http",
               "connect_timeout": int(s.get("connect_timeout_ms", 2000)),
               "read_timeout": int(s.get("read_timeout_ms", 15000)),
               "write_timeout": int(s.get("read_timeout_ms", 15000)), "retries": 1, "routes": []}
        if up.get("tls"):
            svc["tls_verify"] = True
        for r in spec["routes"]:
            if r["service"] != s["name"]:
                continue
            route = {"name": r["name"], "paths": [r["path_prefix"]], "protocols": ["https"], "strip_path": False,
                     "https_redirect_status_code": 426, "plugins": []}
            if r.get("rate_limit"):
                plugin = _rate_limiting(r["rate_limit"], kong)
                plugin["config"]["limit_by"] = "service"
                route["plugins"].append(plugin)
            if r.get("deprecated"):
                headers = ["Deprecation:" + str(r.get("deprecation") or "true")]
                if r.get("sunset"):
                    headers.append("Sunset:" + str(r["sunset"]))
                route["plugins"].append({"name": "response-transformer", "config": {"add": {"headers": headers}}})
            svc["routes"].append(route)
        out["services"].append(svc)
    for c in sorted(spec["consumers"], key=lambda c: c["name"]):
        consumer = {"username": c["name"], "keyauth_credentials": [{"key": c["api_key"]}], "plugins": []}
        if c.get("rate_limit"):
            consumer["plugins"].append(_rate_limiting(c["rate_limit"], kong))
        out["consumers"].append(consumer)
    out["plugins"] = [
        {"name": "key-auth", "config": {"key_names": [spec["api_key_header"]], "hide_credentials": True,
                                        "key_in_header": True, "key_in_query": False, "key_in_body": False}},
        {"name": "request-size-limiting", "config": {"allowed_payload_size": int(spec["max_body_bytes"]),
                                                     "size_unit": "bytes", "require_content_length": False}},
        {"name": "correlation-id", "config": {"header_name": "X-Request-Id", "generator": "uuid",
                                              "echo_downstream": True}},
    ]
    return out


class FilterModule:
    def filters(self):
        return {"gateway_problems": gateway_problems, "kong_declarative": kong_declarative}
