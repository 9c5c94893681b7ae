"""Check mode of roles/postgresql (with the pki certificates it needs) on the converged server: with pg_hba.conf
drifted, that file is the only change check mode reports, nothing fails, and the drift is left in place (one
check-mode run proves both that the converged rest reports nothing and that check mode changes nothing)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "helpers"))

from molecule_check import assert_check_reports_only_the_drift, require_container

PG1 = "hc-mol-postgresql-pg1"

pytestmark = require_container(PG1, "postgresql")


def test_check_mode_reports_only_the_hba_drift_and_leaves_it():
    assert_check_reports_only_the_drift("postgresql", {PG1}, PG1, "/etc/postgresql/17/main/pg_hba.conf",
                                        "# drift made by the check-mode test", "Write pg_hba.conf")
