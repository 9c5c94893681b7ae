"""Decisions of the two keepers, as pure functions: pgpool's (attach a healthy detached node) and the node
agent's (is this primary stale). A wrong decision here detaches nothing but can attach a stale primary or fence
the real one, so each rule has a case that must say no."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


pgpool = _load("roles/pgpool/files/hc_pgpool_ha.py", "hc_pgpool_ha")
node = _load("roles/replication/files/hc_pg_keeper.py", "hc_pg_keeper")

PCP = """pg1 5432 3 0.333333 down up standby standby 0 none none 2026-12-01 17:00:00
pg2 5432 2 0.333333 up up primary primary 0 none none 2026-12-01 17:00:00
pg3 5432 1 0.333333 waiting up standby standby 0 streaming async 2026-12-01 17:00:00
"""


def _nodes(text=PCP):
    nodes = pgpool.parse_node_info(text)
    for n in nodes.values():
        n["application_name"] = n["host"]
    return nodes


def test_parse_node_info_reads_status_and_role():
    nodes = _nodes()
    assert [(n["host"], n["status"], n["role"]) for n in nodes.values()] == [
        ("pg1", "down", "standby"), ("pg2", "up", "primary"), ("pg3", "up", "standby")]


def test_parse_node_info_refuses_a_line_it_does_not_understand():
    with pytest.raises(ValueError, match="unexpected pcp_node_info line"):
        pgpool.parse_node_info("pg1 5432 2\n")


def test_detached_standby_streaming_from_the_primary_is_attached():
    states = {0: (True, 100), 1: (False, 200), 2: (True, 150)}
    assert pgpool.keeper_decide(_nodes(), states, {"pg1", "pg3"}, {1: 5}) == [0]


def test_detached_standby_not_streaming_stays_detached():
    states = {0: (True, 100), 1: (False, 200), 2: (True, 150)}
    assert pgpool.keeper_decide(_nodes(), states, {"pg3"}, {1: 5}) == []


def test_unreachable_detached_node_stays_detached():
    states = {0: None, 1: (False, 200), 2: (True, 150)}
    assert pgpool.keeper_decide(_nodes(), states, {"pg1", "pg3"}, {1: 5}) == []


def test_detached_primary_is_never_attached_next_to_an_attached_primary():
    states = {0: (False, 100), 1: (False, 200), 2: (True, 150)}
    assert pgpool.keeper_decide(_nodes(), states, {"pg3"}, {0: 4, 1: 5}) == []


ALL_DOWN_PRIMARY = PCP.replace("pg2 5432 2 0.333333 up up primary", "pg2 5432 3 0.333333 down up primary")


def test_the_only_primary_is_attached_when_pgpool_has_none():
    states = {0: (True, 100), 1: (False, 200), 2: (True, 150)}
    assert pgpool.keeper_decide(_nodes(ALL_DOWN_PRIMARY), states, set(), {1: 5}) == [1]


def test_two_live_primaries_and_none_attached_attaches_neither():
    states = {0: (False, 100), 1: (False, 200), 2: (True, 150)}
    assert pgpool.keeper_decide(_nodes(ALL_DOWN_PRIMARY), states, set(), {0: 4, 1: 5}) == []


def test_node_agent_sees_a_newer_primary():
    assert node.newer_primary((False, 4), {"pg2": (False, 5), "pg3": (True, None)}) == "pg2"


@pytest.mark.parametrize("me, peers", [
    ((False, 5), {"pg2": (False, 5)}),            # same timeline: cannot tell, do nothing
    ((False, 5), {"pg2": (False, 4)}),            # the peer is the stale one
    ((True, None), {"pg2": (False, 9)}),          # a standby is never fenced
    (None, {"pg2": (False, 9)}),                  # a server that does not answer is left alone
    ((False, 4), {"pg2": None, "pg3": (True, None)}),  # nobody newer answers (a partition): stay
])
def test_node_agent_leaves_a_primary_alone_unless_a_peer_is_newer(me, peers):
    assert node.newer_primary(me, peers) is None


def test_auto_conf_rewrite_replaces_upstream_keys_and_keeps_the_rest(tmp_path, monkeypatch):
    conf = tmp_path / "postgresql.auto.conf"
    conf.write_text("# Do not edit\nprimary_conninfo = 'host=pg1'\nwork_mem = '8MB'\nprimary_slot_name = 'x'\n")
    monkeypatch.setattr(node, "owner_ids", lambda: (-1, -1))
    monkeypatch.setattr(node.os, "chown", lambda *a: None)
    node.set_auto_conf(str(conf), {"primary_conninfo": "host=pg2 user='o''k'", "primary_slot_name": "pg1"})
    lines = conf.read_text().splitlines()
    assert lines == ["# Do not edit", "work_mem = '8MB'", "primary_conninfo = 'host=pg2 user=''o''''k'''",
                     "primary_slot_name = 'pg1'"]
