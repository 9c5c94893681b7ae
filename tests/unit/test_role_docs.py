"""Every role has a README.md whose variable tables are what scripts/role_docs.py makes of its argument specs.

Generic: it walks roles/, so a role added later fails here until it has meta/argument_specs.yml and a generated
README (run `python scripts/role_docs.py`).
"""

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("role_docs", ROOT / "scripts" / "role_docs.py")
role_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(role_docs)

ROLES = role_docs.role_dirs(ROOT / "roles")


def test_there_are_roles():
    assert ROLES, "no roles under roles/"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_readme_is_generated_from_the_specs(role):
    try:
        wanted = role_docs.render(role)
    except role_docs.RoleDocsError as exc:
        pytest.fail(str(exc))
    readme = role / "README.md"
    assert readme.is_file(), f"{role.name}: README.md is missing; run: python scripts/role_docs.py"
    assert readme.read_text(encoding="utf-8") == wanted, (
        f"{role.name}: README.md is stale (meta/argument_specs.yml changed); run: python scripts/role_docs.py"
    )


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_readme_has_a_hand_written_intro(role):
    intro = role_docs.existing_intro(role / "README.md")
    assert intro, f"{role.name}: README.md has no introduction between the INTRO markers"


def _fake_role(tmp_path, specs=None, readme=None):
    role = tmp_path / "roles" / "newrole"
    (role / "tasks").mkdir(parents=True)
    if specs is not None:
        (role / "meta").mkdir()
        (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(specs), encoding="utf-8")
    if readme is not None:
        (role / "README.md").write_text(readme, encoding="utf-8")
    return role


SPECS = {
    "argument_specs": {
        "main": {
            "short_description": "A new role",
            "options": {
                "newrole_items": {
                    "type": "list",
                    "elements": "dict",
                    "default": [],
                    "description": "Items | with a pipe, for O(newrole_mode) and <name>.",
                    "options": {
                        "name": {"type": "str", "required": True, "description": "Item name."},
                        "secret": {"type": "str", "no_log": True, "description": "Its secret."},
                    },
                },
                "newrole_mode": {"type": "str", "default": "fast", "choices": ["fast", "safe"], "description": "Mode."},
            },
        },
    }
}


def test_a_role_without_argument_specs_fails_naming_the_file(tmp_path):
    role = _fake_role(tmp_path)
    with pytest.raises(role_docs.RoleDocsError, match=r"newrole: meta/argument_specs.yml is missing"):
        role_docs.render(role)
    assert role_docs.main(["--check", "--roles-dir", str(tmp_path / "roles")]) == 1


def test_specs_without_main_fail(tmp_path):
    role = _fake_role(tmp_path, specs={"argument_specs": {"other": {"options": {}}}})
    with pytest.raises(role_docs.RoleDocsError, match="no argument_specs entry point 'main'"):
        role_docs.render(role)


def test_new_role_gets_tables_with_sub_options_and_a_placeholder_intro(tmp_path):
    role = _fake_role(tmp_path, specs=SPECS)
    assert role_docs.main(["--check", str(role)]) == 1
    assert role_docs.main([str(role)]) == 0
    text = (role / "README.md").read_text(encoding="utf-8")
    assert text.startswith("# hingecraft.enterprise_db.newrole\n")
    assert role_docs.existing_intro(role / "README.md") == "A new role."
    assert "| `newrole_items[].name` | str | **required** | Item name. |" in text
    assert "Its secret. Secret: never logged." in text
    assert "Items \\| with a pipe, for `newrole_mode` and &lt;name&gt;." in text
    assert "| `newrole_mode` | str | `fast` | Mode. Choices: `fast`, `safe`. |" in text
    assert role_docs.main(["--check", str(role)]) == 0


def test_the_intro_is_kept_and_the_rest_regenerated(tmp_path):
    role = _fake_role(tmp_path, specs=SPECS)
    role_docs.main([str(role)])
    readme = role / "README.md"
    hand = "Written by hand.\n\nTwo paragraphs, `code` and a [link](x)."
    text = readme.read_text(encoding="utf-8").replace("A new role.", hand, 1)
    readme.write_text(text.replace("Mode. Choices", "Edited by hand. Choices"), encoding="utf-8")
    assert role_docs.main(["--check", str(role)]) == 1
    role_docs.main([str(role)])
    regenerated = readme.read_text(encoding="utf-8")
    assert role_docs.existing_intro(readme) == hand
    assert "Edited by hand" not in regenerated
    assert "Mode. Choices" in regenerated


def test_an_aliased_entry_point_points_at_main(tmp_path):
    specs = {"argument_specs": dict(SPECS["argument_specs"])}
    main_options = SPECS["argument_specs"]["main"]["options"]
    specs["argument_specs"]["extra"] = {"short_description": "Extra tasks", "options": main_options}
    role = _fake_role(tmp_path, specs=specs)
    text = role_docs.render(role)
    assert "### `extra`\n\nExtra tasks.\n\nTakes the same variables as `main`" in text
