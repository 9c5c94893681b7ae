"""The execution environment's build context (`make ee`, after `make collection`), offline.

1. `ansible-builder introspect` over the INSTALLED collection (so the files it reads are proven to be in the
   tarball, not left out by build_ignore): the entries it attributes to hingecraft.enterprise_db must be exactly
   the lines of meta/ee-requirements.txt and meta/ee-bindep.txt, and every Python requirement must be pinned in
   requirements.txt at a version inside its range (the EE then gets what the tests ran with).
2. `ansible-builder create -f execution-environment.yml` into .cache/ee/context: the context must carry the very
   tarball that `make collection` built and installed, and install it in the galaxy stage from the base image
   that execution-environment.yml names.

Building the image needs that base image from its registry, which these machines cannot reach:
`ansible-builder build --context .cache/ee/context ...` is for users with one (docs/awx.md).
"""

from __future__ import annotations

import hashlib
import pathlib
import re
import subprocess
import sys
import time

import yaml
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
COLL = ROOT / ".cache" / "collection"
CONTEXT = ROOT / ".cache" / "ee" / "context"
OURS = "# from collection hingecraft.enterprise_db"


def lines(path: pathlib.Path) -> list[str]:
    return [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines() if ln.split("#", 1)[0].strip()]


def fail(msg: str) -> None:
    sys.exit(f"[ee] {msg}")


def pins() -> dict[str, str]:
    """name -> pinned version from requirements.txt (name==version lines; extras dropped)."""
    out = {}
    for ln in lines(ROOT / "requirements.txt"):
        if "==" in ln and not ln.startswith("-"):
            req = Requirement(ln)
            out[req.name.lower()] = str(next(iter(req.specifier)).version)
    return out


def check_introspect() -> None:
    if not (COLL / "installed" / "ansible_collections" / "hingecraft" / "enterprise_db").is_dir():
        fail("no installed collection in .cache/collection (run `make collection` first)")
    res = subprocess.run([str(BIN / "ansible-builder"), "introspect", "--sanitize", str(COLL / "installed")],
                         capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0:
        fail(f"ansible-builder introspect failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    data = yaml.safe_load(res.stdout.split("---", 1)[1])
    meta = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())["dependencies"]
    for kind, path in (("python", meta["python"]), ("system", meta["system"])):
        got = sorted(e.split("#", 1)[0].strip() for e in data.get(kind) or [] if e.endswith(OURS))
        want = sorted(lines(ROOT / path))
        if got != want:
            fail(f"introspect's {kind} entries for hingecraft.enterprise_db {got} differ from {path} {want}")
    pinned = pins()
    for entry in lines(ROOT / meta["python"]):
        req = Requirement(entry)
        version = pinned.get(req.name.lower())
        if version is None:
            fail(f"{req.name} (meta/ee-requirements.txt) is not pinned in requirements.txt")
        if not req.specifier.contains(version, prereleases=True):
            fail(f"requirements.txt pins {req.name}=={version}, outside the EE range {req.specifier}")
    others = sorted({e.split("# from collection ", 1)[1] for e in (data.get("python") or []) + (data.get("system") or [])
                     if not e.endswith(OURS)})
    print(f"[ee] introspect: hingecraft.enterprise_db python {lines(ROOT / meta['python'])}, system "
          f"{lines(ROOT / meta['system'])}; requirements.txt pins agree; also from {', '.join(others)}")


def check_context() -> None:
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    res = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", str(ROOT / "execution-environment.yml"),
                          "--context", str(CONTEXT)], capture_output=True, text=True, timeout=120, check=False,
                         cwd=str(ROOT))
    if res.returncode != 0:
        fail(f"ansible-builder create failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    containerfile = (CONTEXT / "Dockerfile").read_text()
    base = ee["images"]["base_image"]["name"]
    if f'EE_BASE_IMAGE="{base}"' not in containerfile:
        fail(f"the Containerfile does not build from {base}")
    wanted = [c["name"] for c in ee["dependencies"]["galaxy"]["collections"] if c.get("type") == "file"]
    req = yaml.safe_load((CONTEXT / "_build" / "requirements.yml").read_text())
    if [c["name"] for c in req["collections"]] != wanted:
        fail(f"the context's galaxy requirements {req} are not {wanted}")
    built = sorted(COLL.glob("hingecraft-enterprise_db-*.tar.gz"))
    for name in wanted:
        copied = CONTEXT / "_build" / pathlib.Path(name).relative_to("/build")
        if not copied.exists():
            fail(f"{name} is installed by the galaxy stage but is not in the context ({copied}); built: {built}")
        tested = COLL / copied.name
        if hashlib.sha256(copied.read_bytes()).digest() != hashlib.sha256(tested.read_bytes()).digest():
            fail(f"{copied} is not the tarball that `make collection` tested ({tested})")
    if not re.search(r"ansible-galaxy collection install .*-r requirements\.yml", containerfile):
        fail("the Containerfile's galaxy stage does not install requirements.yml")
    size = sum(p.stat().st_size for p in CONTEXT.rglob("*") if p.is_file())
    print(f"[ee] build context {CONTEXT} ({size} bytes): {base}, galaxy stage installs {', '.join(wanted)}")


def main() -> None:
    started = time.monotonic()
    check_introspect()
    check_context()
    print(f"[ee] done in {time.monotonic() - started:.1f} s (the image build needs a registry: see docs/awx.md)")


if __name__ == "__main__":
    main()
