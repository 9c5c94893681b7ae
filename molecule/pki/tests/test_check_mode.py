"""Check mode of roles/pki on the converged host: nothing to renew, nothing to rewrite."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "helpers"))

from molecule_check import assert_converged_check_is_clean, require_container

HOST = "hc-mol-pki-host1"

pytestmark = require_container(HOST, "pki")


def test_check_mode_on_converged_host_reports_nothing():
    assert_converged_check_is_clean("pki", {HOST})
