"""Check mode of roles/postgresql (with the pki certificates it needs) on the converged server."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "helpers"))

from molecule_check import (
    assert_converged_check_is_clean,
    assert_drift_reported_not_fixed,
    require_container,
)

PG1 = "hc-mol-postgresql-pg1"

pytestmark = require_container(PG1, "postgresql")


def test_check_mode_on_converged_server_reports_nothing():
    assert_converged_check_is_clean("postgresql", {PG1})


def test_check_mode_reports_hba_drift_and_leaves_it():
    assert_drift_reported_not_fixed("postgresql", PG1, "/etc/postgresql/17/main/pg_hba.conf",
                                    "# drift made by the check-mode test", "Write pg_hba.conf")
