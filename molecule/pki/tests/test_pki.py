"""roles/pki: material on the host, chain and names verified by openssl, renewal re-issues."""

import os
import subprocess

import pytest

BASE = "/etc/hingecraft/pki"
SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "name,kind",
    [("websvc", "server"), ("hc_client", "client")],
)
def test_files_owners_modes(host, name, kind):
    d = host.file(f"{BASE}/{name}")
    assert d.is_directory
    assert d.mode == 0o750
    assert d.user == "hcsvc"
    key = host.file(f"{BASE}/{name}/{kind}.key")
    assert key.user == "hcsvc"
    assert key.mode == 0o600
    for f in ("ca.crt", f"{kind}.crt"):
        assert host.file(f"{BASE}/{name}/{f}").mode == 0o644


def test_group_is_applied(host):
    assert host.file(f"{BASE}/websvc/server.key").group == "hcsvc"


@pytest.mark.parametrize("name,kind", [("websvc", "server"), ("hc_client", "client")])
def test_chain_verifies(host, name, kind):
    purpose = "sslserver" if kind == "server" else "sslclient"
    out = host.check_output(
        f"openssl verify -purpose {purpose} -CAfile {BASE}/{name}/ca.crt {BASE}/{name}/{kind}.crt"
    )
    assert out.endswith(": OK")


def test_key_matches_certificate(host):
    key_pub = host.check_output(f"openssl pkey -in {BASE}/websvc/server.key -pubout")
    crt_pub = host.check_output(f"openssl x509 -in {BASE}/websvc/server.crt -noout -pubkey")
    assert key_pub == crt_pub


def test_server_sans(host):
    text = host.check_output(f"openssl x509 -in {BASE}/websvc/server.crt -noout -ext subjectAltName")
    ips = host.check_output("hostname -I").split()
    assert "DNS:host1" in text
    assert "DNS:hc-mol-pki-host1" in text
    assert "DNS:localhost" in text
    assert "IP Address:127.0.0.1" in text
    for ip in ips:
        if ":" not in ip:
            assert f"IP Address:{ip}" in text


def test_client_subject_is_identity(host):
    subject = host.check_output(f"openssl x509 -in {BASE}/hc_client/client.crt -noout -subject -nameopt RFC2253")
    assert "CN=hc_client" in subject


# Every regular file on the host (tmpfs included, /proc /sys /dev pruned) holding a PEM private key, with the
# SHA-256 of its public key; the CA certificate's public key hash on the first line.
KEY_SCAN = r"""set -eu
ca=$(openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
echo "CA $ca"
find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f -size -256k -print0 2>/dev/null \
  | xargs -0 -r grep -lIZ -e '-----BEGIN .*PRIVATE KEY-----' 2>/dev/null \
  | while IFS= read -r -d '' f; do
      h=$(openssl pkey -in "$f" -pubout -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1) || continue
      echo "KEY $h $f"
    done
"""


def test_ca_key_stays_on_controller(host):
    """No private key anywhere on the host (any name, any filesystem, tmpfs too) matches the CA's public key.
    Positive control: the scan finds websvc's server key and matches it to websvc's certificate."""
    assert os.path.exists(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "pki", "ca.key"))
    mode = os.stat(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "pki", "ca.key")).st_mode & 0o777
    assert mode == 0o600
    out = host.check_output("timeout 300 bash -c %s scan %s", KEY_SCAN, f"{BASE}/websvc/ca.crt")
    lines = out.splitlines()
    ca = lines[0].split()[1]
    keys = {line.split(" ", 2)[2]: line.split(" ", 2)[1] for line in lines[1:] if line.startswith("KEY ")}
    server = host.check_output(f"openssl x509 -in {BASE}/websvc/server.crt -noout -pubkey | "
                               "openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1")
    assert keys.get(f"{BASE}/websvc/server.key") == server, keys
    matching = [path for path, h in keys.items() if h == ca]
    assert not matching, f"the CA private key is on the host: {matching}"
    assert len(ca) == 64 and ca not in (server,)


def _serial(host):
    return host.check_output(f"openssl x509 -in {BASE}/websvc/server.crt -noout -serial")


def _converge(*extra):
    cmd = [
        "ansible-playbook",
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        os.path.join(SCENARIO_DIR, "converge.yml"),
        *extra,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_renewal(host):
    """Close to expiry re-issues; force re-issues; the key stays, the chain still verifies."""
    key_before = host.check_output(f"sha256sum {BASE}/websvc/server.key")
    serial_0 = _serial(host)
    # Every certificate is valid 365 days: asking for 400 days of margin makes them due for renewal.
    _converge("-e", "pki_renew_before_days=400")
    serial_1 = _serial(host)
    assert serial_1 != serial_0
    _converge("-e", "pki_force_renew=true")
    serial_2 = _serial(host)
    assert serial_2 not in (serial_0, serial_1)
    # A normal run leaves it alone.
    out = _converge()
    assert _serial(host) == serial_2
    assert "changed=0" in out
    assert host.check_output(f"sha256sum {BASE}/websvc/server.key") == key_before
    out = host.check_output(f"openssl verify -CAfile {BASE}/websvc/ca.crt {BASE}/websvc/server.crt")
    assert out.endswith(": OK")
