"""defaults/main.yml and meta/argument_specs.yml of the security roles name the same variables with the same
defaults and matching types; secrets are declared no_log and have no default value."""
import pathlib

import pytest
import yaml

ROLES = pathlib.Path(__file__).resolve().parents[2] / "roles"
TYPES = {bool: "bool", int: "int", str: "str", list: "list", dict: "dict"}
SECRETS = {"security": ["security_passwords"], "encrypted_storage": ["encrypted_storage_key"]}


@pytest.mark.parametrize("role", sorted(SECRETS))
def test_defaults_and_argument_specs_agree(role):
    defaults = yaml.safe_load((ROLES / role / "defaults/main.yml").read_text())
    spec = yaml.safe_load((ROLES / role / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) == set(spec)
    for name, value in defaults.items():
        assert spec[name]["default"] == value, name
        assert spec[name]["type"] == TYPES[type(value)], name
    for name in SECRETS[role]:
        assert spec[name].get("no_log") is True and not defaults[name]
