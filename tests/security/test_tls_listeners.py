"""TLS audit of every listener named in the scenario inventory (security_tls_listeners): plaintext refused,
the server's certificate verifies against the platform CA and not against a foreign one, and a client
certificate from a foreign CA is rejected, while the platform's own client certificate gets in (positive control).
Under CI or Molecule an empty listener list is a failure (test_listeners_are_listed), not a silent skip."""
import pytest
from testlib import require
from tls_audit import assert_listener_secure, inventory_listeners


def _listeners():
    import os
    eph = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if not eph:
        return []
    return inventory_listeners(os.path.join(eph, "inventory"))


LISTENERS = _listeners()


def test_listeners_are_listed():
    require(bool(LISTENERS), "no security_tls_listeners in the Molecule inventory "
                             "(run through `molecule verify -s security`)")


@pytest.mark.skipif(not LISTENERS, reason="no security_tls_listeners in the Molecule inventory "
                                          "(run through `molecule verify -s security`)")
@pytest.mark.parametrize("host, container, listener", LISTENERS,
                         ids=[f"{h}:{item['name']}:{item['port']}" for h, _unused, item in LISTENERS])
def test_listener_refuses_plaintext_and_foreign_certificates(host, container, listener):
    assert_listener_secure(container, listener)
