"""One small test library for the suites that drive containers (molecule/*/tests, tests/security, tests/bench, e2e).

- `docker()` / `dexec()`: the docker CLI with a timeout on every call; a password reaches the container through
  the environment (PGPASSWORD), never the command line, so no secret shows in a failure report.
- `psql()`: one statement over a container's local socket as postgres (peer), rows as text.
- `wait_until()`: poll a predicate until a deadline; fails the test (or raises TimeoutError outside pytest) saying
  what it waited for. Every wait loop is bounded in time and in count.
- `run_playbook()`: ansible-playbook from the project's venv with the project's ansible.cfg and collections.
- `strict()` / `require()` / `require_container()`: the container guard. Under CI (CI=true) or under Molecule
  (MOLECULE_EPHEMERAL_DIRECTORY set) a missing prerequisite FAILS the test; elsewhere it skips and says why.
  Every skip reason that can be reached is listed in docs/development.md ("Skips").
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
FQCN_PLAYBOOK = re.compile(r"[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+")


def strict() -> bool:
    """True when a missing prerequisite must fail instead of skip: CI=true, or running under Molecule."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or bool(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY"))


def require(condition: bool, why: str) -> None:
    """Inside a test or fixture: skip (printing why) when `condition` is false, or fail under CI / Molecule."""
    import pytest

    if condition:
        return
    if strict():
        pytest.fail(f"missing prerequisite (CI or Molecule: a failure, not a skip): {why}", pytrace=False)
    print(f"SKIP: {why}")
    pytest.skip(reason=why)


def container_running(name: str) -> bool:
    res = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True,
                         check=False, timeout=30)
    return res.returncode == 0 and res.stdout.strip() == "true"


def require_container(name: str, scenario: str):
    """Module-level guard (`pytestmark = require_container(...)`): a skipif mark saying why when the container is
    not running; under CI or Molecule a container that is not running fails the whole module at collection."""
    import pytest

    running = container_running(name)
    why = f"container {name} is not running (run through `molecule test -s {scenario}`)"
    if not running and strict():
        pytest.fail(f"missing prerequisite (CI or Molecule: a failure, not a skip): {why}", pytrace=False)
    return pytest.mark.skipif(not running, reason=why)


def docker(*args: str, check: bool = True, timeout: float = 120, password: str | None = None,
           stdin: str | None = None) -> subprocess.CompletedProcess:
    """The docker CLI. With `password`, args must start with `exec`: PGPASSWORD is passed by name (-e PGPASSWORD)."""
    env = None
    if password is not None:
        assert args and args[0] == "exec", "password= only applies to docker exec"
        env = dict(os.environ, PGPASSWORD=password)
        args = (args[0], "-e", "PGPASSWORD", *args[1:])
    res = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=timeout, env=env,
                         input=stdin)
    if check:
        assert res.returncode == 0, f"docker {' '.join(args[:5])} ... exited {res.returncode}: {res.stderr[-1500:]}"
    return res


def dexec(container: str, *args: str, user: str | None = None, **kw) -> subprocess.CompletedProcess:
    """docker exec [-i] [-u user] container args... (same keywords as docker())."""
    opts = ["-i"] if kw.get("stdin") is not None else []
    if user:
        opts += ["-u", user]
    return docker("exec", *opts, container, *args, **kw)


def psql(container: str, sql: str, db: str = "postgres", check: bool = True, timeout: float = 120) -> str:
    """One statement over the container's local socket as postgres (peer); stripped unaligned output."""
    res = dexec(container, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql, user="postgres",
                check=check, timeout=timeout)
    return res.stdout.strip()


def container_ip(container: str) -> str:
    out = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container).stdout
    return out.split()[0]


def wait_until(predicate, timeout: float, what: str, interval: float = 1.0):
    """Call `predicate` until it returns a truthy value (returned) or `timeout` seconds pass (test failure)."""
    deadline = time.monotonic() + timeout
    attempts, last = 0, None
    while True:
        attempts += 1
        last = predicate()
        if last:
            return last
        if time.monotonic() + interval > deadline:
            break
        time.sleep(interval)
    message = f"timed out after {timeout}s ({attempts} attempts) waiting for {what}; last value {last!r}"
    try:
        import pytest
    except ImportError:  # benchmarks run without pytest
        raise TimeoutError(message) from None
    pytest.fail(message, pytrace=False)


def ansible_env() -> dict:
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    return env


def run_playbook(inventory: str, playbook, *extra: str, timeout: float = 900, check: bool = True,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook -i inventory playbook extra... (playbook: a path, a name under playbooks/, or a collection
    playbook's FQCN such as hingecraft.enterprise_db.site); `env` adds variables (e.g.
    ANSIBLE_CALLBACK_RESULT_FORMAT=json to parse a failure's msg)."""
    path = pathlib.Path(playbook)
    if not path.is_absolute() and not FQCN_PLAYBOOK.fullmatch(str(playbook)):
        path = ROOT / "playbooks" / path
    res = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", inventory, str(path), *extra],
                         capture_output=True, text=True, env={**ansible_env(), **(env or {})}, timeout=timeout, cwd=str(ROOT),
                         check=False)
    if check:
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    return res


def judge_samples(samples: list, nodes: list, min_samples: int = 5) -> tuple[list[str], dict]:
    """Verdict on the split-brain samples: (problems, summary). Problems (each a string) when there are fewer than
    `min_samples` samples, when any sample saw two nodes out of recovery, when fewer than half the samples saw
    exactly one primary, or when more than half the samples could not reach a majority of the nodes."""
    total = len(samples)
    one = sum(1 for s in samples if len(s[1]) == 1)
    split = [s for s in samples if len(s[1]) > 1]
    blind = [s for s in samples if len(s[2] if len(s) > 2 else {}) > len(nodes) // 2]
    summary = {"samples": total, "exactly_one_primary": one, "split_brain": len(split), "majority_unreached": len(blind)}
    problems = []
    if total < min_samples:
        problems.append(f"only {total} split-brain samples (need at least {min_samples})")
    if split:
        problems.append(f"two nodes out of recovery at sampled moments: {split[:3]}")
    if total and one * 2 < total:
        problems.append(f"only {one} of {total} samples saw exactly one primary")
    if total and len(blind) * 2 > total:
        problems.append(f"sampler errors dominate: {len(blind)} of {total} samples reached no majority of "
                        f"{len(nodes)} nodes, e.g. {blind[:2]}")
    return problems, summary
