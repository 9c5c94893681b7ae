"""Kafka layer behaviour: a three-node KRaft quorum, declared topics, TLS only (plaintext and certificate-less
quorum connections refused), SCRAM authentication, default-deny ACLs, acks=all produce/consume, SIGKILL of a broker
under an acks=all load (every acknowledged message consumed), and a converge after the kill that changes nothing.

Clients: confluent-kafka (librdkafka) from the project's venv, talking TLS to the containers' addresses on the
scenario's own Docker network, verifying the brokers' certificates against the scenario's CA; admin checks run the
Kafka CLI inside a container. Tests run in file order; the chaos test and the converge after it come last.
"""

import collections
import os
import pathlib
import socket
import ssl
import sys
import threading
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from molecule_check import parse_recap
from testlib import container_ip, dexec, require_container, run_playbook, wait_until

confluent_kafka = pytest.importorskip("confluent_kafka", reason="confluent-kafka is in requirements-test.txt")
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SECRETS = EPHEMERAL / "secrets"
CA = str(EPHEMERAL / "pki" / "ca.crt")
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory" / "ansible_inventory.yml"))
NODES = ["hc-mol-kafka-k1", "hc-mol-kafka-k2", "hc-mol-kafka-k3"]
TOPIC = "donations"

pytestmark = require_container(NODES[0], "kafka")

IPS = {n: container_ip(n) for n in NODES}
BOOTSTRAP = ",".join(f"{ip}:9092" for ip in IPS.values())


def secret(name):
    return (SECRETS / name).read_text(encoding="utf-8").split()[0]


def client_conf(user, password=None, **extra):
    conf = {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user, "sasl.password": password if password is not None else secret(user),
            "ssl.ca.location": CA, "ssl.endpoint.identification.algorithm": "https", "socket.timeout.ms": 10000}
    conf.update(extra)
    return conf


def tool(node, main_class, *args, timeout=120, check=True):
    return dexec(node, "timeout", "100", "/usr/local/sbin/hc-kafka-tool", main_class, "--bootstrap-server",
                 f"{IPS[node]}:9092", "--command-config", "/etc/kafka/admin.properties", *args, timeout=timeout,
                 check=check)


def under_replicated():
    res = tool(NODES[0], "org.apache.kafka.tools.TopicCommand", "--describe", "--under-replicated-partitions",
               check=False)
    return None if res.returncode != 0 else len([x for x in res.stdout.splitlines() if x.strip()])


def metadata_fails(conf):
    """True when the client cannot fetch metadata (authentication or TLS refused)."""
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(conf).list_topics(timeout=8)
    except KafkaException:
        return True
    return False


def produce(user, values, topic=TOPIC, **extra):
    """Produce with acks=all; returns (acked values, errors)."""
    acked, errors = [], []

    def cb(err, msg):
        (errors.append(err) if err else acked.append(msg.value().decode()))

    p = Producer(client_conf(user, acks="all", **extra))
    for v in values:
        p.produce(topic, v.encode(), callback=cb)
        p.poll(0)
    p.flush(60)
    return acked, errors


def consume_all(group, want, timeout=120):
    """Read the topic from the beginning until every value of `want` is seen or `timeout` s pass."""
    c = Consumer(client_conf("consumer", **{"group.id": group, "auto.offset.reset": "earliest",
                                            "enable.auto.commit": False}))
    c.subscribe([TOPIC])
    seen, dupes = set(), 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not want <= seen:
            msg = c.poll(1.0)
            if msg is None or msg.error():
                continue
            v = msg.value().decode()
            if v in seen:
                dupes += 1
            seen.add(v)
    finally:
        c.close()
    return seen, dupes


def test_quorum_of_three_voters_and_three_unfenced_brokers():
    status = tool(NODES[0], "org.apache.kafka.tools.MetadataQuorumCommand", "describe", "--status").stdout
    voters = [line for line in status.splitlines() if line.startswith("CurrentVoters:")]
    assert voters and voters[0].count('"id"') == 3, status
    endpoints = dexec(NODES[0], "timeout", "100", "/usr/local/sbin/hc-kafka-tool", "org.apache.kafka.tools.ClusterTool",
                      "list-endpoints", "--bootstrap-server", f"{IPS[NODES[0]]}:9092", "--config",
                      "/etc/kafka/admin.properties", timeout=120).stdout
    assert sum(1 for line in endpoints.splitlines() if " unfenced " in f" {line} ") == 3, endpoints


def test_declared_topics_have_their_settings():
    out = tool(NODES[0], "org.apache.kafka.tools.TopicCommand", "--describe", "--topic", TOPIC).stdout
    head = out.splitlines()[0]
    assert "PartitionCount: 3" in head and "ReplicationFactor: 3" in head, head
    assert "min.insync.replicas=2" in head and "retention.ms=604800000" in head, head
    other = tool(NODES[0], "org.apache.kafka.tools.TopicCommand", "--describe", "--topic", "member-activity").stdout
    assert "min.insync.replicas=2" in other and "retention.ms=86400000" in other, other


def test_plaintext_and_unauthenticated_tls_are_refused():
    plain = {"bootstrap.servers": BOOTSTRAP, "security.protocol": "PLAINTEXT", "socket.timeout.ms": 5000}
    assert metadata_fails(plain), "a PLAINTEXT client got metadata"
    tls_only = {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SSL", "ssl.ca.location": CA}
    assert metadata_fails(tls_only), "a TLS client without SASL got metadata"


def test_quorum_listener_refuses_a_client_without_certificate():
    ctx = ssl.create_default_context(cafile=CA)
    ctx.check_hostname = False
    ip = IPS[NODES[1]]
    with socket.create_connection((ip, 9093), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                # ApiVersions v0 request; a server that required a certificate answers with an alert or closes.
                tls.sendall(bytes.fromhex("0000000f00120000000000010005") + b"probe")
                data = tls.recv(64)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            data = b""
    assert data == b"", f"the quorum listener answered a certificate-less client: {data!r}"


def test_unknown_user_and_wrong_password_are_refused():
    assert metadata_fails(client_conf("ghost", password="no-such-user-password")), "an unknown user logged in"
    assert metadata_fails(client_conf("producer", password="wrong-password-123")), "a wrong password logged in"
    assert not metadata_fails(client_conf("producer")), "the producer cannot log in"


def test_user_without_acl_is_denied():
    acked, errors = produce("noacl", [f"noacl-{i}" for i in range(3)], **{"message.timeout.ms": 15000})
    assert not acked, "a user without ACLs wrote to the topic"
    codes = {e.code() for e in errors}
    assert codes & {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._MSG_TIMED_OUT,
                    KafkaError.CLUSTER_AUTHORIZATION_FAILED}, codes
    acked, errors = produce("consumer", ["consumer-write"], **{"message.timeout.ms": 15000})
    assert not acked, "the consumer (read-only) wrote to the topic"


def test_produce_and_consume_with_acks_all():
    run = uuid.uuid4().hex[:8]
    values = [f"basic-{run}-{i}" for i in range(1000)]
    acked, errors = produce("producer", values, **{"enable.idempotence": True})
    assert not errors and len(acked) == 1000, errors[:3]
    seen, _dupes = consume_all(f"verify-basic-{run}", set(values), timeout=90)
    missing = set(values) - seen
    assert not missing, f"{len(missing)} acknowledged messages not consumed"
    print(f"acks=all: produced and consumed 1000 messages (run {run})")


def leader_of_partition_0():
    out = tool(NODES[0], "org.apache.kafka.tools.TopicCommand", "--describe", "--topic", TOPIC).stdout
    for line in out.splitlines():
        if "Partition: 0" in line:
            leader = int(line.split("Leader:")[1].split()[0])
            return NODES[leader - 1]
    raise AssertionError(out)


def test_sigkill_of_a_broker_under_acks_all_load_loses_no_acknowledged_message():
    run = uuid.uuid4().hex[:8]
    victim = leader_of_partition_0()
    acked, errors, sent = [], [], [0]
    stop = threading.Event()

    def cb(err, msg):
        (errors.append(err) if err else acked.append(msg.value().decode()))

    def load():
        conf = {"enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 90000}
        p = Producer(client_conf("producer", acks="all", **conf))
        deadline = time.monotonic() + 40
        i = 0
        while i < 20000 and time.monotonic() < deadline and not stop.is_set():
            try:
                p.produce(TOPIC, f"chaos-{run}-{i}".encode(), callback=cb)
                i += 1
            except BufferError:
                p.poll(0.1)
                continue
            p.poll(0)
            time.sleep(0.001)
        sent[0] = i
        p.flush(120)

    t = threading.Thread(target=load)
    t0 = time.monotonic()
    t.start()
    wait_until(lambda: len(acked) >= 1000, 60, "the first 1000 acknowledgements")
    acked_before_kill = len(acked)
    dexec(victim, "systemctl", "kill", "--signal=SIGKILL", "kafka.service")
    killed_at = time.monotonic() - t0
    t.join(timeout=240)
    assert not t.is_alive(), "the producer did not finish"
    stop.set()
    assert acked, "nothing acknowledged"
    seen, dupes = consume_all(f"verify-chaos-{run}", set(acked), timeout=180)
    lost = set(acked) - seen
    print(f"SIGKILL {victim} (leader of partition 0) at {killed_at:.1f} s, after {acked_before_kill} acks: "
          f"sent {sent[0]}, acked {len(acked)}, delivery errors {len(errors)}, consumed {len(seen)}, "
          f"duplicates read {dupes}, lost {len(lost)}; error kinds {collections.Counter(e.name() for e in errors)}")
    assert not lost, f"{len(lost)} acknowledged messages were lost, e.g. {sorted(lost)[:5]}"
    assert len(acked) + len(errors) == sent[0], "some messages got neither an ack nor an error"
    # The killed broker comes back (Restart=on-failure) and catches up.
    wait_until(lambda: under_replicated() == 0, 240, "0 under-replicated partitions after the kill", interval=5)


def test_converge_after_the_kill_changes_nothing():
    res = run_playbook(INVENTORY, str(pathlib.Path(__file__).parents[1] / "converge.yml"), timeout=1500)
    recap = parse_recap(res.stdout)
    assert recap and all(v.get("changed", 1) == 0 for v in recap.values()), f"converge changed something: {recap}"
    print(f"converge after the kill: {recap}")
