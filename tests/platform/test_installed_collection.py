"""The collection as users get it, against the lab: the tarball built and installed by scripts/collection.py (with
its declared dependencies, into an empty collections path), then `ansible-playbook hingecraft.enterprise_db.site
--check --diff` from that installed copy - not the source tree - on inventories/lab. Ansible is pointed at the
installed copy only, and the test proves it found no other.

Check mode on the converged lab must fail nowhere and reach every host; the hosts' changed counts are recorded
(docs/bench/platform.json, `installed_site_check`), since the second site.yml of test_platform is where changed=0 is
asserted.
"""

from __future__ import annotations

import time

import installed
import lab


def test_only_the_installed_copy_is_visible():
    installed.install()
    assert installed.INSTALLED.is_dir()
    assert installed.locations() == [str(installed.COLL / "installed" / "ansible_collections")]
    assert not (installed.INSTALLED / "tests" / "platform").exists(), "test bulk shipped in the tarball"
    assert not (installed.INSTALLED / ".lab").exists(), "lab secrets shipped in the tarball"


def test_site_in_check_mode_from_the_installed_copy(results):
    installed.install()
    started = time.monotonic()
    res = lab.run_playbook(str(lab.INVENTORY), "hingecraft.enterprise_db.site", "--check", "--diff", timeout=1800,
                           check=False, env=installed.env())
    out = res.stdout + res.stderr
    recap = lab.parse_recap(res.stdout)
    results["installed_site_check"] = {"seconds": round(time.monotonic() - started, 1),
                                       "changed": {h: r["changed"] for h, r in sorted(recap.items())}}
    assert res.returncode == 0, out[-4000:]
    hosts = {h for group in lab.GROUPS.values() for h in group}
    assert set(recap) >= hosts, (sorted(recap), sorted(hosts))
    bad = {h: r for h, r in recap.items() if r["failed"] or r["unreachable"]}
    assert not bad, (bad, out[-4000:])
