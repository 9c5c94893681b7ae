"""TLS audit shared by the Molecule attack suite and the lab e2e test: enumerate listeners from an inventory's
`security_tls_listeners` variable ([{name, group, port, protocol: postgres|tls, ca}]) and probe each one from
inside its own container, through the container's bridge address (a remote address for pg_hba)."""
import json
import os
import pathlib
import subprocess
import time

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
FOREIGN_CA = r"""set -eu
d=$(mktemp -d /tmp/hc-foreign-ca.XXXXXX); cd "$d"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "/CN=Foreign CA" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=app_rw" -keyout client.key \
  -out client.csr 2>/dev/null
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -out client.crt 2>/dev/null
echo "$d"
"""


# A client certificate of the listener's CA on the host (the platform's own client identity), for the positive
# control: <pki>/<name>/client.crt with its client.key, verified for client use against the listener's CA.
PLATFORM_CLIENT = r"""for c in /etc/hingecraft/pki/*/client.crt; do
  [ -r "$c" ] && [ -r "${c%client.crt}client.key" ] || continue
  openssl verify -purpose sslclient -CAfile "$1" "$c" >/dev/null 2>&1 && { echo "$c"; exit 0; }
done; exit 0
"""


def inventory_listeners(inventory):
    """[(hostname, container, listener)] for every host of each listener's group."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"))
    data = json.loads(subprocess.run([str(PROJECT / ".venv/bin/ansible-inventory"), "-i", inventory, "--list"],
                                     capture_output=True, text=True, check=True, env=env, cwd=str(PROJECT)).stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})

    def hosts_of(group):
        out = list(data.get(group, {}).get("hosts", []))
        for child in data.get(group, {}).get("children", []):
            out += hosts_of(child)
        return out

    found = []
    for host, hv in sorted(hostvars.items()):
        for listener in hv.get("security_tls_listeners", []):
            if host in hosts_of(listener["group"]):
                found.append((host, hv.get("ansible_host", host), listener))
    return found


def container_ip(container):
    return subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                           container], capture_output=True, text=True, check=True).stdout.strip().split()[0]


def probe(container, listener):
    """Verdicts of tls_probe.py for one listener, run inside `container` with a throw-away foreign CA."""
    def dexec(*args, stdin=None):
        return subprocess.run(["docker", "exec", "-i", container, *args], input=stdin, capture_output=True,
                              text=True, timeout=120, check=True).stdout

    foreign = dexec("sh", "-c", FOREIGN_CA).strip()
    try:
        dexec("sh", "-c", "cat > /tmp/hc-tls-probe.py", stdin=(HERE / "tls_probe.py").read_text())
        cert = dexec("sh", "-c", PLATFORM_CLIENT, "find-client", listener["ca"]).strip()
        req = {"host": container_ip(container), "port": int(listener["port"]), "protocol": listener["protocol"],
               "ca": listener["ca"], "foreign_dir": foreign, "client_cert": cert or None,
               "client_key": cert[:-len("client.crt")] + "client.key" if cert else None}
        return json.loads(dexec("python3", "/tmp/hc-tls-probe.py", stdin=json.dumps(req)))
    finally:
        dexec("rm", "-rf", foreign, "/tmp/hc-tls-probe.py")


# Servers that refuse a bad client certificate by closing the connection without a TLS alert (PgBouncer's libusual
# TLS: "TLS handshake error: ... certificate verify failed" in its journal, then a reset). For them a "closed"
# verdict counts only with that line in the server's log since the probe started.
CLOSE_EVIDENCE = {"pgbouncer": ("pgbouncer", "certificate verify failed")}


def _journal_since(container, unit, since):
    return subprocess.run(["docker", "exec", container, "journalctl", "-u", unit, "--since", f"@{int(since)}",
                           "--no-pager", "-o", "cat"], capture_output=True, text=True, timeout=60, check=True).stdout


def assert_listener_secure(container, listener):
    started = time.time() - 1
    verdict = probe(container, listener)
    # positive control first: the platform's own client (its client certificate, or none where the host has none)
    # gets a protocol answer, so a listener that refuses every client cannot pass the refusals below
    assert verdict["platform_client"] == "accepted", verdict
    assert verdict["plaintext"] == "refused", verdict
    assert verdict["platform_server_cert"] == "verified", verdict
    assert verdict["foreign_root"] == "rejected", verdict
    evidence = CLOSE_EVIDENCE.get(listener["name"])
    if evidence and verdict["foreign_client_cert"] == "closed":
        unit, line = evidence
        why = f"{listener['name']} closed the connection but its journal has no '{line}'"
        assert line in _journal_since(container, unit, started), (why, verdict)
    else:
        assert verdict["foreign_client_cert"] == "rejected", verdict
    return verdict
