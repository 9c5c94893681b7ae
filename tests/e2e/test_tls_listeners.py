"""Lab TLS audit: every listener in inventories/lab (security_tls_listeners, extended by each role's
group_vars) refuses plaintext from a remote address and rejects certificates from a foreign CA. Needs `make lab`."""
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "security"))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from testlib import require
from tls_audit import assert_listener_secure, inventory_listeners

LISTENERS = inventory_listeners(str(ROOT / "inventories" / "lab" / "hosts.yml"))


def _running(container):
    res = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True, text=True, check=False)
    return res.stdout.strip() == "true"


@pytest.mark.parametrize("host, container, listener", LISTENERS,
                         ids=[f"{h}:{item['name']}:{item['port']}" for h, _unused, item in LISTENERS])
def test_lab_listener_is_tls_only(host, container, listener):
    require(_running(container), f"lab container {container} is not running (make lab)")
    assert_listener_secure(container, listener)
