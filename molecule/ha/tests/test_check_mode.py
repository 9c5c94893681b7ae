"""Check mode of the HA layer (pki, postgresql, replication, pgpool, pgbouncer) on the converged cluster.

Runs before test_ha.py (file order), on the cluster exactly as converge left it. One check-mode run (about ten
minutes of a loaded make test) proves both properties: with pgbouncer.ini drifted on the proxy, that file is the
only change check mode reports on any of the four hosts (so on the converged rest it reports nothing), nothing
fails, and the drift is left in place.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "helpers"))

from molecule_check import assert_check_reports_only_the_drift, require_container

PROXY = "hc-mol-ha-proxy1"

pytestmark = require_container(PROXY, "ha")


def test_check_mode_reports_only_the_drift_and_leaves_it():
    assert_check_reports_only_the_drift("ha", {"hc-mol-ha-pg1", "hc-mol-ha-pg2", "hc-mol-ha-pg3", PROXY}, PROXY,
                                        "/etc/pgbouncer/pgbouncer.ini", "; drift made by the check-mode test",
                                        "PgBouncer configuration (pgbouncer.ini)")
