"""The collection as users get it (`make collection`): build the tarball, install it into an empty collections path
with its declared dependencies, and syntax-check every playbook from the installed copy (not the source tree).

- `ansible-galaxy collection build` with galaxy.yml's build_ignore; the tarball's size is printed, and the build
  fails when a path that must stay out of it (lab secrets, test bulk, caches) got in.
- The dependencies come from the collections that the `ansible` package in requirements.txt carries (the build
  machines have no Galaxy): each declared dependency, and theirs in turn, is given to `ansible-galaxy collection
  install --offline` as a `type: dir` source, so the resolver still checks the versions against galaxy.yml's ranges.
  Nothing outside the install directory is searched (collections_scan_sys_path off), so a dependency that is not
  declared is missing there, as it would be for a user.
- `.cache/collection/ansible.cfg` points Ansible at the installed copy only; tests/platform/test_installed_collection.py
  and test_awx_runner.py use it to run site.yml and the runbooks from the installed copy against the lab.

Usage: scripts/collection.py [--out DIR]   (default .cache/collection)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
# Paths that must never be in the tarball (a prefix match on the archive member name).
FORBIDDEN = (".lab", ".venv", ".cache", ".collections", ".git", ".ruff_cache", ".pytest_cache", "tests/platform", "tests/integration", "tests/unit",
             "tests/bench", "molecule", "docs/bench", "inventories/lab", "scripts")
# Not a dependency of the platform: only playbooks/awx_configure.yml uses it (requirements.yml lists it as optional).
OPTIONAL = ("awx.awx",)


def galaxy() -> dict:
    return yaml.safe_load((ROOT / "galaxy.yml").read_text())


def env_for(out: pathlib.Path) -> dict:
    env = dict(os.environ, ANSIBLE_CONFIG=str(out / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    env.pop("ANSIBLE_ROLES_PATH", None)
    return env


def write_config(out: pathlib.Path) -> None:
    """An ansible.cfg that sees the installed copy and nothing else (no source tree, no site-packages)."""
    (out / "no-roles").mkdir(exist_ok=True)
    (out / "ansible.cfg").write_text(
        "# Written by scripts/collection.py: Ansible sees only the collections installed next to this file.\n"
        "[defaults]\n"
        f"collections_path = {out / 'installed'}\n"
        "collections_scan_sys_path = False\n"
        f"roles_path = {out / 'no-roles'}\n"
        "interpreter_python = auto_silent\n"
        "retry_files_enabled = False\n"
        "[connection]\n"
        "pipelining = True\n"
    )


def build(out: pathlib.Path) -> pathlib.Path:
    meta = galaxy()
    tarball = out / f"{meta['namespace']}-{meta['name']}-{meta['version']}.tar.gz"
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out), str(ROOT)],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    leaked = sorted(n for n in names if any(n == p or n.startswith(p + "/") for p in FORBIDDEN))
    if leaked:
        sys.exit(f"[collection] build_ignore lets these into the tarball: {leaked[:20]}")
    print(f"[collection] {tarball.name}: {tarball.stat().st_size} bytes, {len(names)} members")
    return tarball


def dependency_sources(meta: dict) -> list[dict]:
    """type: dir sources for every declared dependency and theirs, from the site-packages the venv's Ansible uses,
    plus OPTIONAL."""
    import ansible_collections  # the `ansible` package's collections

    bases = [pathlib.Path(b) for b in ansible_collections.__path__]
    todo, seen, sources = [*OPTIONAL, *(meta.get("dependencies") or {})], set(), []
    while todo:
        fqcn = todo.pop()
        if fqcn in seen:
            continue
        seen.add(fqcn)
        found = [b.joinpath(*fqcn.split(".")) for b in bases if (b.joinpath(*fqcn.split("."), "MANIFEST.json")).exists()]
        if not found:
            sys.exit(f"[collection] dependency {fqcn} is not carried by the `ansible` package ({bases})")
        path = found[0]
        manifest = path / "MANIFEST.json"
        todo.extend(json.loads(manifest.read_text())["collection_info"].get("dependencies") or {})
        sources.append({"name": str(path), "type": "dir"})
    return sorted(sources, key=lambda s: s["name"])


def install(out: pathlib.Path, tarball: pathlib.Path) -> pathlib.Path:
    dest = out / "installed"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    reqs = out / "requirements.yml"
    reqs.write_text(yaml.safe_dump({"collections": [{"name": str(tarball), "type": "file"},
                                                    *dependency_sources(galaxy())]}, sort_keys=True))
    res = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-r", str(reqs),
                          "-p", str(dest)], env=env_for(out), capture_output=True, text=True, timeout=600, check=False)
    if res.returncode != 0:
        sys.exit(f"[collection] install failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    listed = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "list", "--format", "json"], env=env_for(out),
                            capture_output=True, text=True, timeout=120, check=True)
    found = {name: info["version"] for where in json.loads(listed.stdout).values() for name, info in where.items()}
    print(f"[collection] installed into {dest}: " + ", ".join(f"{k} {v}" for k, v in sorted(found.items())))
    if "hingecraft.enterprise_db" not in found:
        sys.exit("[collection] hingecraft.enterprise_db is not visible through .cache/collection/ansible.cfg")
    return dest / "ansible_collections" / "hingecraft" / "enterprise_db"


def syntax_check(out: pathlib.Path, installed: pathlib.Path) -> None:
    books = sorted(p.stem for p in (installed / "playbooks").glob("*.yml"))
    fqcns = [f"hingecraft.enterprise_db.{b}" for b in books]
    # Some plays' host patterns index the default groups (groups['postgresql'][0]): one host in each.
    inventory = out / "syntax-inventory.yml"
    groups = ("postgresql", "proxy", "pgbackrest_repo", "pgbackrest_restore")
    inventory.write_text(yaml.safe_dump({"all": {"children": {g: {"hosts": {f"{g}-1": None}} for g in groups}}}))
    res = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inventory), *fqcns],
                         env=env_for(out), capture_output=True, text=True, timeout=600, check=False, cwd=str(out))
    if res.returncode != 0:
        sys.exit(f"[collection] syntax check from the installed copy failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    print(f"[collection] --syntax-check from the installed copy: {len(books)} playbooks ({', '.join(books)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / ".cache" / "collection")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    write_config(out)
    tarball = build(out)
    installed = install(out, tarball)
    syntax_check(out, installed)
    print(f"[collection] done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
