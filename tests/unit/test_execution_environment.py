"""The execution environment definition and galaxy.yml agree with each other and with the pinned requirements.

`make ee` runs ansible-builder itself (introspect, create); these are the fast consistency checks that need no
build: the EE installs the tarball version galaxy.yml builds, runs the ansible-core and ansible-runner the tests
run, the collection's EE files are in the tarball, and the dependency ranges hold the versions tested.
"""

from __future__ import annotations

import fnmatch
import json
import pathlib

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = pathlib.Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
EE = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
# ansible-builder 3's definition keys (docs: definition/ of ansible-builder).
EE_KEYS = {"version", "images", "dependencies", "additional_build_files", "additional_build_steps",
           "build_arg_defaults", "options"}


def pin(path: str, name: str) -> str:
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-") and Requirement(line).name.lower() == name:
            return line
    raise AssertionError(f"{name} is not pinned in {path}")


def ignored(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") or fnmatch.fnmatch(path, p) for p in GALAXY["build_ignore"])


def test_ee_definition_is_builder_v3():
    assert EE["version"] == 3
    assert set(EE) <= EE_KEYS, sorted(set(EE) - EE_KEYS)
    assert EE["images"]["base_image"]["name"].rsplit(":", 1)[1] != "latest", "pin the base image"


def test_ee_installs_the_tarball_galaxy_builds():
    version = GALAXY["version"]
    files = [c["name"] for c in EE["dependencies"]["galaxy"]["collections"] if c.get("type") == "file"]
    assert files == [f"/build/collections/{GALAXY['namespace']}-{GALAXY['name']}-{version}.tar.gz"]
    assert all(t.endswith(f":{version}") for t in EE["options"]["tags"])
    copied = [f for f in EE["additional_build_files"] if f["dest"] == "collections"]
    assert copied and fnmatch.fnmatch(f".cache/collection/{pathlib.Path(files[0]).name}", copied[0]["src"])


def test_ee_runs_the_engine_the_tests_run():
    assert EE["dependencies"]["ansible_core"]["package_pip"] == pin("requirements.txt", "ansible-core")
    assert EE["dependencies"]["ansible_runner"]["package_pip"] == pin("requirements-test.txt", "ansible-runner")


def test_collection_ee_files_ship_in_the_tarball():
    meta = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
    for path in ("meta/execution-environment.yml", meta["dependencies"]["python"], meta["dependencies"]["system"]):
        assert (ROOT / path).is_file(), path
        assert not ignored(path), f"{path} is build_ignored: the installed collection would not declare it"
    for path in (".lab/secrets/x", "tests/platform/lab.py", "molecule/ha/molecule.yml", "docs/bench/ha.json"):
        assert ignored(path), f"{path} would ship in the tarball"


def test_galaxy_metadata_and_dependency_ranges():
    for key in ("repository", "documentation", "issues", "homepage", "tags", "description", "license"):
        assert GALAXY.get(key), f"galaxy.yml lacks {key}"
    import ansible_collections

    for fqcn, spec in GALAXY["dependencies"].items():
        specifier = SpecifierSet(spec)
        assert any(s.operator == "<" for s in specifier), f"{fqcn}: {spec} has no upper bound"
        # the `ansible` package's copy (other entries of the namespace may be the source tree's .collections)
        found = [m for b in ansible_collections.__path__ if (m := pathlib.Path(b).joinpath(*fqcn.split("."), "MANIFEST.json")).exists()]
        assert found, f"{fqcn} is not carried by the ansible package"
        manifest = json.loads(found[0].read_text())
        version = manifest["collection_info"]["version"]
        assert specifier.contains(version), f"{fqcn} {version} (the ansible package) is outside {spec}"


def test_requirements_yml_has_galaxy_yml_ranges():
    reqs = {c["name"]: c["version"] for c in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]}
    assert {k: v for k, v in reqs.items() if k in GALAXY["dependencies"]} == GALAXY["dependencies"]
    assert set(reqs) - set(GALAXY["dependencies"]) == {"awx.awx"}, "only the optional awx.awx is extra"
