"""The collection as users get it, against the lab: the tarball built and installed by scripts/collection.py (with
its declared dependencies, into an empty collections path), and what Ansible finds when it is pointed at that
installed copy only: no other copy, and none of the repository's test bulk or lab secrets inside it.

The installed copy then runs on the lab as AWX runs it: test_platform's last test runs the `HingeCraft | site
(apply)` job template, whose roles and modules come from this copy only (awx_job asserts the task paths), on every
host, and nothing may change; `make platform-full` also runs the `site (check)` template. `make collection`
syntax-checks every playbook of the installed copy. (A check-mode site.yml of the same copy here took 10 minutes of
make test's budget and proved nothing the apply run does not.)
"""

from __future__ import annotations

import installed


def test_only_the_installed_copy_is_visible():
    installed.install()
    assert installed.INSTALLED.is_dir()
    assert installed.locations() == [str(installed.COLL / "installed" / "ansible_collections")]
    assert not (installed.INSTALLED / "tests" / "platform").exists(), "test bulk shipped in the tarball"
    assert not (installed.INSTALLED / ".lab").exists(), "lab secrets shipped in the tarball"
