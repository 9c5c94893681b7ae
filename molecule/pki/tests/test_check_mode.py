"""Check mode of roles/pki on the converged host: nothing to renew, nothing to rewrite."""

import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "helpers"))

from molecule_check import assert_converged_check_is_clean

HOST = "hc-mol-pki-host1"

pytestmark = pytest.mark.skipif(
    subprocess.run(["docker", "inspect", HOST], capture_output=True, check=False).returncode != 0,
    reason=f"container {HOST} is not running (run through `molecule test -s pki`)",
)


def test_check_mode_on_converged_host_reports_nothing():
    assert_converged_check_is_clean("pki", {HOST})
