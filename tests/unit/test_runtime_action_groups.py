"""meta/runtime.yml's action groups hold every module, so module_defaults can set their options once.

Generic: it lists plugins/modules, so a module added later fails here until it is in a group.
"""

import shutil

import pytest
import yaml
from ansible_run import ROOT, run_playbook

COLLECTION = "hingecraft.enterprise_db"
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))


def _groups():
    with open(ROOT / "meta" / "runtime.yml", encoding="utf-8") as f:
        return (yaml.safe_load(f) or {}).get("action_groups") or {}


def _takes_connection_options(module):
    return "postgres_common_argument_spec" in (ROOT / "plugins" / "modules" / f"{module}.py").read_text("utf-8")


def test_there_are_modules():
    assert MODULES


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_in_one_group_by_its_full_name(module):
    holders = [name for name, members in _groups().items() if f"{COLLECTION}.{module}" in (members or [])]
    assert len(holders) == 1, f"{module}: in the action groups {holders} of meta/runtime.yml (wanted exactly one)"


@pytest.mark.parametrize("module", MODULES)
def test_the_postgresql_group_is_the_modules_with_the_shared_connection_options(module):
    in_group = f"{COLLECTION}.{module}" in (_groups().get("postgresql") or [])
    assert in_group == _takes_connection_options(module), (
        f"{module}: group postgresql must hold exactly the modules built on postgres_common_argument_spec "
        f"(module_defaults for the group sets those options on every member)"
    )


def test_groups_name_only_existing_modules():
    named = {m for members in _groups().values() for m in (members or []) if isinstance(m, str)}
    unknown = sorted(m for m in named if m.split(".")[-1] not in MODULES or not m.startswith(f"{COLLECTION}."))
    assert not unknown, f"meta/runtime.yml action_groups name modules that do not exist here: {unknown}"


def test_module_defaults_of_the_group_reach_a_module(tmp_path):
    """A play sets only the group's defaults; the module's connection error shows that it received them."""
    play = [
        {
            "name": "module_defaults through the action group",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "module_defaults": {
                f"group/{COLLECTION}.postgresql": {"login_host": "127.0.0.1", "login_port": 1, "connect_timeout": 2}
            },
            "tasks": [
                {
                    "name": "An index, in check mode (connection options from the group only)",
                    f"{COLLECTION}.pg_index": {
                        "name": "x_idx", "table": "public.x", "columns": ["a"], "db": "postgres",
                    },
                    "check_mode": True,
                }
            ],
        }
    ]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play), encoding="utf-8")
    python = ROOT / ".venv" / "bin" / "python"
    interpreter = str(python if python.exists() else shutil.which("python3"))
    rc, out = run_playbook(playbook, extra_vars={"ansible_python_interpreter": interpreter})
    assert rc != 0, out[-3000:]
    assert '"127.0.0.1", port 1 failed' in out, out[-3000:]
