"""Run ansible-playbook against localhost from a unit test, with this checkout's collection and configuration.

Shared by the unit tests that need Ansible itself (argument validation, preflight, module_defaults). Without an
ansible-playbook the calling test skips, saying why, and fails under CI (tests/helpers/testlib.require).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from testlib import require

ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook", path=str(ROOT / ".venv" / "bin")) or shutil.which(
    "ansible-playbook"
)


def run_playbook(playbook, *args, extra_vars=None, timeout=120, env_extra=None):
    """ansible-playbook -i localhost, PLAYBOOK ARGS... [-e EXTRA_VARS]; returns (return code, stdout + stderr)."""
    require(ANSIBLE_PLAYBOOK is not None, "ansible-playbook not found (run make venv)")
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_NOCOLOR="1",
        **(env_extra or {}),
    )
    cmd = [ANSIBLE_PLAYBOOK, "-i", "localhost,", str(playbook), *args]
    if extra_vars is not None:
        cmd += ["-e", json.dumps(extra_vars)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return res.returncode, res.stdout + res.stderr
