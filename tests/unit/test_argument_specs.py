"""Every role's defaults/main.yml and meta/argument_specs.yml (entry point main) declare the same variables.

Generic: it walks roles/ so roles added later are checked too.
"""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"


def _roles():
    return sorted(p for p in ROLES.iterdir() if p.is_dir() and not p.name.startswith("."))


def _load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def test_there_are_roles():
    assert _roles(), f"no roles under {ROLES}"


@pytest.mark.parametrize("role", _roles(), ids=lambda p: p.name)
def test_defaults_match_argument_specs(role):
    defaults_file = role / "defaults" / "main.yml"
    specs_file = role / "meta" / "argument_specs.yml"
    defaults = _load(defaults_file) if defaults_file.exists() else {}
    assert specs_file.exists(), f"{role.name}: meta/argument_specs.yml is missing"
    specs = _load(specs_file).get("argument_specs", {})
    assert "main" in specs, f"{role.name}: argument_specs has no entry point 'main'"
    options = specs["main"].get("options") or {}

    missing_in_specs = sorted(set(defaults) - set(options))
    missing_in_defaults = sorted(k for k, v in options.items() if k not in defaults and not v.get("required"))
    assert not missing_in_specs, f"{role.name}: in defaults/main.yml but not in argument_specs: {missing_in_specs}"
    assert not missing_in_defaults, (
        f"{role.name}: optional in argument_specs but not in defaults/main.yml: {missing_in_defaults}"
    )


@pytest.mark.parametrize("role", _roles(), ids=lambda p: p.name)
def test_public_variables_are_prefixed(role):
    defaults_file = role / "defaults" / "main.yml"
    defaults = _load(defaults_file) if defaults_file.exists() else {}
    bad = sorted(k for k in defaults if not k.startswith(f"{role.name}_"))
    assert not bad, f"{role.name}: defaults without the '{role.name}_' prefix: {bad}"


@pytest.mark.parametrize("role", _roles(), ids=lambda p: p.name)
def test_spec_defaults_equal_role_defaults(role):
    defaults_file = role / "defaults" / "main.yml"
    specs_file = role / "meta" / "argument_specs.yml"
    if not (defaults_file.exists() and specs_file.exists()):
        pytest.skip(f"{role.name}: no defaults or no argument specs (covered by the test above)")
    defaults = _load(defaults_file)
    options = (_load(specs_file).get("argument_specs", {}).get("main", {}).get("options")) or {}
    wrong = sorted(k for k, v in options.items() if "default" in v and k in defaults and v["default"] != defaults[k])
    assert not wrong, f"{role.name}: argument_specs default differs from defaults/main.yml for {wrong}"


@pytest.mark.parametrize("role", _roles(), ids=lambda p: p.name)
def test_entry_points_do_not_copy_main_options(role):
    """An extra entry point (tasks_from) reuses main's option blocks through a YAML alias instead of a copy.

    yaml.safe_load turns an alias into the very same object, so a block that is equal to main's but not
    identical was written out a second time.
    """
    specs_file = role / "meta" / "argument_specs.yml"
    if not specs_file.exists():
        pytest.skip(f"{role.name}: no argument specs (covered above)")
    specs = _load(specs_file).get("argument_specs", {})
    main = (specs.get("main") or {}).get("options") or {}
    copied = sorted(
        f"{entry}.{name}"
        for entry, spec in specs.items()
        if entry != "main"
        for name, option in ((spec or {}).get("options") or {}).items()
        if name in main and option == main[name] and option is not main[name]
    )
    assert not copied, (
        f"{role.name}: option blocks copied from entry point main (use `options: *{role.name}_options` "
        f"or an alias per option): {copied}"
    )
