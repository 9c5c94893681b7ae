"""Check mode of the HA layer (pki, postgresql, replication, pgpool, pgbouncer) on the converged cluster.

Runs before test_ha.py (file order), on the cluster exactly as converge left it.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "helpers"))

from molecule_check import (
    assert_converged_check_is_clean,
    assert_drift_reported_not_fixed,
    require_container,
)

PROXY = "hc-mol-ha-proxy1"

pytestmark = require_container(PROXY, "ha")


def test_check_mode_on_converged_cluster_reports_nothing():
    assert_converged_check_is_clean("ha", {"hc-mol-ha-pg1", "hc-mol-ha-pg2", "hc-mol-ha-pg3", PROXY})


def test_check_mode_reports_drift_and_leaves_it():
    assert_drift_reported_not_fixed("ha", PROXY, "/etc/pgbouncer/pgbouncer.ini", "; drift made by the check-mode test",
                                    "PgBouncer configuration (pgbouncer.ini)")
