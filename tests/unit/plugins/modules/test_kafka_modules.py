"""Unit tests of kafka_topic, kafka_acl and kafka_scram_user against a fake of the Kafka CLI: a small in-memory
cluster that answers TopicCommand, AclCommand and ConfigCommand argv with the text Kafka 4.1.2 prints (captured
from a real broker). Each test runs the module's main() twice: the second run must report no change."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible.module_utils.testing import patch_module_args
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils import kafka as ku
from ansible_collections.hingecraft.enterprise_db.plugins.modules import kafka_acl, kafka_scram_user, kafka_topic

COMMON = {"bootstrap_server": "10.0.0.1:9092", "command_config": "/etc/kafka/admin.properties"}

DESCRIBE = ("Topic: t1\tTopicId: VFuGdRgDSECdgg7bbIZipA\tPartitionCount: 2\tReplicationFactor: 1\t"
            "Configs: min.insync.replicas=1,retention.ms=1000000\n"
            "\tTopic: t1\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\tElr: \tLastKnownElr: \n"
            "\tTopic: t1\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1\tElr: \tLastKnownElr: \n")
ACL_LIST = ("ACLs for principal `User:app`\n"
            "Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name=t1, patternType=LITERAL)`:\n"
            " \t(principal=User:app, host=*, operation=WRITE, permissionType=ALLOW)\n"
            " \t(principal=User:app, host=*, operation=DESCRIBE, permissionType=ALLOW)\n\n"
            "Current ACLs for resource `ResourcePattern(resourceType=GROUP, name=g, patternType=PREFIXED)`:\n"
            " \t(principal=User:app, host=*, operation=READ, permissionType=ALLOW)\n\n")
SCRAM = ("SCRAM credential configs for user-principal 'app' are SCRAM-SHA-512=iterations=8192\n"
         "SCRAM credential configs for user-principal 'admin' are SCRAM-SHA-512=iterations=4096\n")


def test_parse_topic_describe():
    t = ku.parse_topic_describe(DESCRIBE)
    assert t["partitions"] == 2 and t["replication_factor"] == 1
    assert t["config"] == {"min.insync.replicas": "1", "retention.ms": "1000000"}
    assert t["replicas"] == {0: [1], 1: [1]}
    assert ku.parse_topic_describe("") is None


def test_parse_acl_list_and_argv():
    acls = ku.parse_acl_list(ACL_LIST)
    assert ("TOPIC", "t1", "LITERAL", "User:app", "*", "WRITE", "ALLOW") in acls
    assert ("GROUP", "g", "PREFIXED", "User:app", "*", "READ", "ALLOW") in acls and len(acls) == 3
    argv = ku.acl_argv("add", ("TOPIC", "t1", "LITERAL", "User:app", "*", "DESCRIBE_CONFIGS", "ALLOW"))
    assert argv == ["--add", "--allow-principal", "User:app", "--allow-host", "*", "--operation", "DescribeConfigs",
                    "--topic", "t1", "--resource-pattern-type", "literal"]
    argv = ku.acl_argv("remove", ("CLUSTER", "kafka-cluster", "LITERAL", "User:p", "*", "IDEMPOTENT_WRITE", "DENY"))
    assert argv[:5] == ["--remove", "--deny-principal", "User:p", "--deny-host", "*"]
    assert "--cluster" in argv and argv[-1] == "--force"


def test_parse_scram_describe():
    assert ku.parse_scram_describe(SCRAM) == {"app": {"SCRAM-SHA-512": 8192}, "admin": {"SCRAM-SHA-512": 4096}}


class FakeCluster:
    """Answers the tool wrapper's argv like the Kafka CLI, keeping topics, ACLs and SCRAM users in memory."""

    def __init__(self):
        self.topics = {}
        self.acls = set()
        self.users = {}
        self.calls = []

    def __call__(self, module_self, argv, *a, **kw):
        assert argv[:3] == ["timeout", "120", "/usr/local/sbin/hc-kafka-tool"]
        assert "--bootstrap-server" in argv and "--command-config" in argv
        assert not any("password=" in x for x in argv), "a password on the command line"
        cls, args = argv[3], argv[8:]
        self.calls.append((cls.rsplit(".", 1)[-1], args))
        return getattr(self, cls.rsplit(".", 1)[-1])(args)

    @staticmethod
    def _opt(args, name):
        return args[args.index(name) + 1] if name in args else None

    def TopicCommand(self, args):
        name = self._opt(args, "--topic")
        if "--describe" in args:
            t = self.topics.get(name)
            if not t:
                return 0, "", ""
            cfg = ",".join(f"{k}={v}" for k, v in sorted(t["config"].items()))
            out = (f"Topic: {name}\tTopicId: x\tPartitionCount: {t['p']}\tReplicationFactor: {t['rf']}\t"
                   f"Configs: {cfg}\n")
            out += "".join(f"\tTopic: {name}\tPartition: {i}\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3\n"
                           for i in range(t["p"]))
            return 0, out, ""
        if "--create" in args:
            cfg = dict(args[i + 1].split("=", 1) for i, x in enumerate(args) if x == "--config")
            self.topics[name] = {"p": int(self._opt(args, "--partitions")),
                                 "rf": int(self._opt(args, "--replication-factor")), "config": cfg}
            return 0, f"Created topic {name}.\n", ""
        if "--alter" in args:
            self.topics[name]["p"] = int(self._opt(args, "--partitions"))
            return 0, "", ""
        if "--delete" in args:
            del self.topics[name]
            return 0, "", ""
        raise AssertionError(args)

    def ConfigCommand(self, args):
        etype, ename = self._opt(args, "--entity-type"), self._opt(args, "--entity-name")
        if etype == "topics":
            for kv in self._opt(args, "--add-config").split(","):
                k, v = kv.split("=", 1)
                self.topics[ename]["config"][k] = v
            return 0, "", ""
        if "--describe" in args:
            u = self.users.get(ename)
            return 0, (f"SCRAM credential configs for user-principal '{ename}' are SCRAM-SHA-512=iterations={u[0]}\n"
                       if u else ""), ""
        if "--add-config-file" in args:
            line = Path(self._opt(args, "--add-config-file")).read_text().strip()
            mech, rest = line.split("=", 1)
            assert mech == "SCRAM-SHA-512"
            params = dict(x.split("=", 1) for x in rest.split(","))
            self.users[ename] = (int(params["iterations"]), params["password"])
            return 0, f"Completed updating config for user {ename}.\n", ""
        if "--delete-config" in args:
            del self.users[ename]
            return 0, "", ""
        raise AssertionError(args)

    def AclCommand(self, args):
        if "--list" in args:
            p = self._opt(args, "--principal")
            out = f"ACLs for principal `{p}`\n"
            for a in sorted(x for x in self.acls if x[3] == p):
                out += (f"Current ACLs for resource `ResourcePattern(resourceType={a[0]}, name={a[1]}, "
                        f"patternType={a[2]})`:\n \t(principal={a[3]}, host={a[4]}, operation={a[5]}, "
                        f"permissionType={a[6]})\n\n")
            return 0, out, ""
        kind = "ALLOW" if "--allow-principal" in args else "DENY"
        low = kind.lower()
        rtype = ("CLUSTER" if "--cluster" in args else "TOPIC" if "--topic" in args else
                 "GROUP" if "--group" in args else "TRANSACTIONAL_ID")
        name = "kafka-cluster" if rtype == "CLUSTER" else self._opt(args, {"TOPIC": "--topic", "GROUP": "--group",
                                                                           "TRANSACTIONAL_ID": "--transactional-id"}[rtype])
        ops = [{v: k.upper() for k, v in ku.OPERATIONS.items()}[args[i + 1]]
               for i, x in enumerate(args) if x == "--operation"]
        for op in ops:
            acl = (rtype, name, self._opt(args, "--resource-pattern-type").upper(),
                   self._opt(args, f"--{low}-principal"), self._opt(args, f"--{low}-host"), op, kind)
            (self.acls.add if "--add" in args else self.acls.discard)(acl)
        return 0, "", ""


@pytest.fixture(name="cluster")
def fixture_cluster(monkeypatch):
    fake = FakeCluster()
    for mod in (kafka_topic, kafka_acl, kafka_scram_user):
        monkeypatch.setattr(mod.AnsibleModule, "run_command", lambda self, argv, *a, **kw: fake(self, argv))
    return fake


def run(mod, args, capsys, check=False):
    with patch_module_args({**COMMON, **args, "_ansible_check_mode": check}), pytest.raises(SystemExit) as exc:
        mod.main()
    result = json.loads(capsys.readouterr().out)
    return exc.value.code, result


def test_topic_create_then_unchanged(cluster, capsys):
    args = {"name": "donations", "partitions": 3, "replication_factor": 3,
            "config": {"min.insync.replicas": 2, "retention.ms": 604800000}}
    code, r = run(kafka_topic, args, capsys, check=True)
    assert code == 0 and r["changed"] and "donations" not in cluster.topics, "check mode created the topic"
    code, r = run(kafka_topic, args, capsys)
    assert r["changed"] and cluster.topics["donations"] == {
        "p": 3, "rf": 3, "config": {"min.insync.replicas": "2", "retention.ms": "604800000"}}
    assert r["topic"]["partitions"] == 3
    code, r = run(kafka_topic, args, capsys)
    assert code == 0 and not r["changed"] and r["commands"] == []


def test_topic_grows_and_reconfigures_but_never_shrinks_or_changes_rf(cluster, capsys):
    cluster.topics["t"] = {"p": 3, "rf": 3, "config": {"retention.ms": "1000"}}
    code, r = run(kafka_topic, {"name": "t", "partitions": 6, "replication_factor": 3,
                                "config": {"retention.ms": 2000}}, capsys)
    assert r["changed"] and cluster.topics["t"] == {"p": 6, "rf": 3, "config": {"retention.ms": "2000"}}
    code, r = run(kafka_topic, {"name": "t", "partitions": 3}, capsys)
    assert code == 1 and "cannot shrink" in r["msg"]
    code, r = run(kafka_topic, {"name": "t", "replication_factor": 2}, capsys)
    assert code == 1 and "reassignment" in r["msg"]
    code, r = run(kafka_topic, {"name": "new"}, capsys)
    assert code == 1 and "partitions and replication_factor" in r["msg"]
    code, r = run(kafka_topic, {"name": "t", "state": "absent"}, capsys)
    assert r["changed"] and "t" not in cluster.topics


def test_acl_exact_set(cluster, capsys):
    stale = ("TOPIC", "old", "LITERAL", "User:app", "*", "READ", "ALLOW")
    other = ("TOPIC", "old", "LITERAL", "User:other", "*", "READ", "ALLOW")
    cluster.acls |= {stale, other}
    args = {"principal": "User:app", "acls": [
        {"resource_type": "topic", "name": "donations", "operations": ["write", "describe"]},
        {"resource_type": "cluster", "operations": ["idempotent_write"]},
        {"resource_type": "group", "name": "verify-", "pattern_type": "prefixed", "operations": ["read"]}]}
    code, r = run(kafka_acl, args, capsys, check=True)
    assert r["changed"] and stale in cluster.acls and len(cluster.acls) == 2, "check mode changed ACLs"
    code, r = run(kafka_acl, args, capsys)
    assert code == 0 and r["changed"]
    adds = [c for c in r["commands"] if "--add" in c]
    assert len(adds) == 3, f"one AclCommand call per binding, got {adds}"
    assert stale not in cluster.acls and other in cluster.acls, "only the managed principal's ACLs may be removed"
    assert {a for a in cluster.acls if a[3] == "User:app"} == {
        ("TOPIC", "donations", "LITERAL", "User:app", "*", "WRITE", "ALLOW"),
        ("TOPIC", "donations", "LITERAL", "User:app", "*", "DESCRIBE", "ALLOW"),
        ("CLUSTER", "kafka-cluster", "LITERAL", "User:app", "*", "IDEMPOTENT_WRITE", "ALLOW"),
        ("GROUP", "verify-", "PREFIXED", "User:app", "*", "READ", "ALLOW")}
    code, r = run(kafka_acl, args, capsys)
    assert not r["changed"] and r["commands"] == []
    code, r = run(kafka_acl, {"principal": "User:app", "acls": [{"resource_type": "topic", "operations": ["read"]}]},
                  capsys)
    assert code == 1 and "needs a name" in r["msg"]


def test_scram_user_fingerprint_and_rotation(cluster, capsys, tmp_path):
    fp = str(tmp_path / "fp")
    args = {"name": "app", "password": "first-Secret-123", "fingerprint_dir": fp}
    code, r = run(kafka_scram_user, args, capsys, check=True)
    assert r["changed"] and "app" not in cluster.users
    code, r = run(kafka_scram_user, args, capsys)
    assert r["changed"] and r["reason"] == "created" and cluster.users["app"] == (8192, "first-Secret-123")
    fingerprint = (tmp_path / "fp" / "app.SCRAM-SHA-512").read_text()
    assert "first-Secret-123" not in fingerprint
    assert oct((tmp_path / "fp" / "app.SCRAM-SHA-512").stat().st_mode & 0o777) == "0o600"
    assert "first-Secret-123" not in json.dumps(r)
    code, r = run(kafka_scram_user, args, capsys)
    assert not r["changed"] and r["commands"] == []
    code, r = run(kafka_scram_user, {**args, "password": "second-Secret-456"}, capsys)
    assert r["changed"] and r["reason"] == "password" and cluster.users["app"][1] == "second-Secret-456"
    code, r = run(kafka_scram_user, {**args, "password": "second-Secret-456", "iterations": 10000}, capsys)
    assert r["changed"] and r["reason"] == "iterations"
    code, r = run(kafka_scram_user, {**args, "password": "bad,pass=word1"}, capsys)
    assert code == 1 and "characters outside" in r["msg"]
    code, r = run(kafka_scram_user, {"name": "app", "state": "absent", "fingerprint_dir": fp}, capsys)
    assert r["changed"] and "app" not in cluster.users
    code, r = run(kafka_scram_user, {"name": "app", "state": "absent", "fingerprint_dir": fp}, capsys)
    assert not r["changed"]


def test_failing_cli_fails_the_module(monkeypatch, capsys):
    monkeypatch.setattr(kafka_topic.AnsibleModule, "run_command",
                        lambda self, argv, *a, **kw: (1, "", "SaslAuthenticationException: Authentication failed"))
    code, r = run(kafka_topic, {"name": "x", "partitions": 1, "replication_factor": 1}, capsys)
    assert code == 1 and "Authentication failed" in r["msg"]
