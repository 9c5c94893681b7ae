"""Check-mode proof shared by the Molecule scenarios' verify steps.

`converge_in_check_mode()` runs the scenario's own converge.yml with `--check --diff` against the converged
platform and returns the PLAY RECAP as {host: {ok, changed, failed, ...}}. A scenario asserts with it:

- `assert_converged_check_is_clean()`: on the converged platform, check mode reports nothing to change and fails
  nowhere (the roles' check-mode paths work: no task depends on a change check mode skipped);
- `assert_check_reports_only_the_drift()`: both that and "check mode changes nothing" in one run (each run of a
  multi-host converge costs minutes): with one managed file drifted on one host, the drifted task (and the handlers
  it notifies) is the only change reported on any host, nothing fails, and the drift is left in place; the scenario
  puts the file back itself.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


def converge_in_check_mode(scenario: str, timeout: int = 900) -> tuple[dict[str, dict[str, int]], str]:
    """Run molecule/<scenario>/converge.yml with --check --diff; return (recap per host, whole output)."""
    ephemeral = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE", str(ephemeral / "inventory" / "ansible_inventory.yml"))
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    res = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", inventory, "--check", "--diff",
         str(ROOT / "molecule" / scenario / "converge.yml")],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )
    out = res.stdout + res.stderr
    recap = parse_recap(res.stdout)
    assert recap, f"no PLAY RECAP in the check-mode run (rc {res.returncode}):\n{out[-4000:]}"
    return recap, out


def parse_recap(stdout: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of an ansible-playbook output as {host: {ok, changed, failed, ...}}."""
    recap: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in stdout.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        m = RECAP.match(line.strip()) if in_recap else None
        if m:
            recap[m["host"]] = {k: int(v) for k, v in (kv.split("=") for kv in m["counts"].split())}
    return recap


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks that reported `changed` in an ansible-playbook output; a handler's name is prefixed
    with `handler: `."""
    names, current = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            current = line[6:line.rfind("]")]
        elif line.startswith("RUNNING HANDLER ["):
            current = "handler: " + line[17:line.rfind("]")]
        elif line.startswith("changed:") and current:
            names.append(current)
    return names


def require_container(name: str, scenario: str):
    """pytest mark for a check-mode test module: skip, saying why, when the scenario's container is not running;
    under CI or Molecule the module fails instead (testlib.require_container)."""
    from testlib import require_container as guard

    return guard(name, scenario)


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def assert_converged_check_is_clean(scenario: str, hosts: set[str]) -> None:
    """Check mode on the converged platform: every host reached, nothing failed, nothing to change."""
    recap, out = converge_in_check_mode(scenario)
    assert set(recap) >= hosts, recap
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), out[-4000:]
    assert all(r["changed"] == 0 for r in recap.values()), (recap, changed_tasks(out))


def assert_check_reports_only_the_drift(scenario: str, hosts: set[str], container: str, path: str, marker: str,
                                        task: str) -> None:
    """Append `marker` to a managed file on `container`, then one check-mode run: every host in `hosts` reached,
    nothing failed; every other host reports nothing to change; on `container` the tasks reported changed are
    `task` (a task name, without its role prefix) and the handlers it notifies, nothing else; the file is left as
    drifted. The original content is written back afterwards whatever happens (same inode: owner and mode kept)."""
    assert container in hosts, (container, hosts)
    original = _docker("exec", container, "cat", path)
    drifted = original + marker + "\n"
    write = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
    _docker("exec", container, "python3", "-c", write, path, drifted)
    try:
        recap, out = converge_in_check_mode(scenario)
        assert set(recap) >= hosts, recap
        assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), out[-4000:]
        clean = {h: r["changed"] for h, r in recap.items() if h != container}
        assert not any(clean.values()), (clean, changed_tasks(out))
        changed = changed_tasks(out)
        assert any(name.endswith(task) for name in changed), f"check mode did not report the drift in {path}: {changed}"
        spurious = [n for n in changed if not n.endswith(task) and not n.startswith("handler: ")]
        assert not spurious, f"check mode reported changes beyond the drift in {path}: {spurious}"
        assert _docker("exec", container, "cat", path) == drifted, f"check mode rewrote {path}"
    finally:
        _docker("exec", container, "python3", "-c", write, path, original)
