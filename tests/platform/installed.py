"""The collection as users get it, for the platform suites: scripts/collection.py (make collection) builds the
tarball and installs it with its dependencies into .cache/collection/installed; `env()` points Ansible at that copy
only (its ansible.cfg: no source tree, no site-packages, no roles path), overriding the ANSIBLE_CONFIG and
ANSIBLE_COLLECTIONS_PATH that the Makefile exports for the source tree."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

from lab import ROOT

COLL = ROOT / ".cache" / "collection"
INSTALLED = COLL / "installed" / "ansible_collections" / "hingecraft" / "enterprise_db"


@functools.cache
def install() -> str:
    """Build and install the current tree once per test session; returns scripts/collection.py's report."""
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "collection.py")], capture_output=True, text=True,
                         timeout=900, check=False)
    assert res.returncode == 0, f"scripts/collection.py failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def env() -> dict:
    return {"ANSIBLE_CONFIG": str(COLL / "ansible.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(COLL / "installed"),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False", "ANSIBLE_ROLES_PATH": str(COLL / "no-roles")}


def locations() -> list[str]:
    """Every place Ansible, as env() sets it up, finds hingecraft.enterprise_db."""
    res = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-galaxy"), "collection", "list",
                          "hingecraft.enterprise_db", "--format", "json"], capture_output=True, text=True,
                         timeout=120, check=True, env={**os.environ, **env()})
    return sorted(where for where, found in json.loads(res.stdout).items() if "hingecraft.enterprise_db" in found)
