"""AWX content as data (extensions/awx/*.yml, applied by playbooks/awx_configure.yml), checked without an AWX.

- The module arguments are rendered by the apply playbook itself (hc_awx_render_dir: no AWX contacted) twice: the
  two renders are the same bytes, with sorted keys.
- Every rendered item is validated against the argument spec of the awx.awx module it goes to (job_template,
  schedule, credential_type, execution_environment), loaded from the awx.awx collection the `ansible` package
  carries (the spec its main() builds, plus ControllerModule's connection options): unknown keys, wrong types and
  bad choices fail here, not against a live AWX.
- Surveys pass AWX's own survey-spec validation (ported from awx/api/views JobTemplateSurveySpec._validate_spec_data
  and awx/main/models/mixins.py _survey_element_validation, AWX 24.6), are a fixpoint of what AWX stores (so a rerun
  compares equal: ansible/awx#7554), and ask only for variables the playbook reads.
- The credential type passes AWX's JSON schemas for inputs and injectors (awx/main/fields.py), its injectors name
  only its fields, and every variable it injects is a role input of the platform.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import re

import jinja2
import jinja2.nodes
import jsonschema
import pytest
import yaml
from ansible_run import run_playbook

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "extensions" / "awx"
RENDER_VARS = {"hc_awx_ee_image": "registry.example.invalid/hingecraft-ee:0.1.0",
               "hc_awx_restore_drill_canary_table": "public.canary"}
MODULES = {"job_templates": "job_template", "schedules": "schedule", "credential_types": "credential_type",
           "execution_environments": "execution_environment"}
# Survey question keys AWX (API and UI) knows; anything else is a typo that AWX would store and ignore.
QUESTION_KEYS = {"question_name", "question_description", "variable", "type", "required", "default", "choices", "min",
                 "max", "new_question"}
SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                "integer": int, "float": (float, int)}


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(name: str) -> dict:
    return yaml.load((DATA / name).read_text(), Loader=_Loader)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    outs = []
    for i in (1, 2):
        d = tmp_path_factory.mktemp(f"awx-render-{i}")
        rc, out = run_playbook(ROOT / "playbooks" / "awx_configure.yml",
                               extra_vars={**RENDER_VARS, "hc_awx_render_dir": str(d)})
        assert rc == 0, out[-3000:]
        outs.append((d / "awx.json").read_bytes())
    return outs


@pytest.fixture(scope="module")
def data(rendered):
    return json.loads(rendered[0])


def test_render_is_stable_and_sorted(rendered, data):
    assert rendered[0] == rendered[1], "two renders of the same data differ"
    assert rendered[0].decode() == json.dumps(data, indent=4, sort_keys=True) + "\n", "keys are not sorted"
    counts = {"credential_types": 1, "execution_environments": 1, "job_templates": 13, "schedules": 2}
    assert {k: len(v) for k, v in data.items()} == counts


def test_no_generated_values_in_the_data():
    text = "".join(p.read_text() for p in sorted(DATA.glob("*.yml")))
    for generated in ("now(", "lookup(", "query(", "random", "uuid", "ansible_date_time", "strftime"):
        assert generated not in text, f"{generated} in extensions/awx: a value generated at render time"


# --- awx.awx argument specs ------------------------------------------------------------------------------------
def awx_argspec(module: str) -> tuple[dict, dict]:
    """(argument_spec, AnsibleModule keyword arguments) that awx.awx.<module>'s main() builds, without running it."""
    mod = importlib.import_module(f"ansible_collections.awx.awx.plugins.modules.{module}")
    from ansible_collections.awx.awx.plugins.module_utils.controller_api import ControllerModule

    class Captured(Exception):
        pass

    class Capture:
        def __init__(self, argument_spec=None, **kwargs):
            raise Captured(argument_spec, kwargs)

    mod.ControllerAPIModule = Capture
    with pytest.raises(Captured) as exc:
        mod.main()
    spec, kwargs = exc.value.args
    return {**spec, **ControllerModule.AUTH_ARGSPEC}, kwargs


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_module_arguments_pass_the_awx_awx_argument_spec(data, kind):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    spec, kwargs = awx_argspec(MODULES[kind])
    validator = ArgumentSpecValidator(spec, **{k: v for k, v in kwargs.items() if k in (
        "mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")})
    for item in data[kind]:
        result = validator.validate(item)
        assert not result.error_messages, f"awx.awx.{MODULES[kind]} rejects {item.get('name')}: {result.error_messages}"


def test_the_loaded_argument_spec_rejects_what_awx_awx_would():
    """Control: the spec really is the module's (a typo, a bad choice and a missing name fail)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    spec, _kwargs = awx_argspec("job_template")
    assert {"survey_spec", "survey_enabled", "controller_host"} <= set(spec)
    errors = ArgumentSpecValidator(spec).validate({"survey_specs": {}, "job_type": "apply"}).error_messages
    assert any("survey_specs" in e for e in errors) and any("job_type" in e for e in errors)
    assert any("name" in e for e in errors), errors


def test_apply_playbook_passes_every_key_the_data_sets(data):
    """A key in the data that the apply task does not pass would be dropped silently."""
    play = yaml.safe_load((ROOT / "playbooks" / "awx_configure.yml").read_text())[0]
    passed = {}
    for task in play["tasks"]:
        for key, args in task.items():
            if key.startswith("awx.awx."):
                passed[key.split(".")[-1]] = set(args)
    for kind, module in MODULES.items():
        used = set().union(*(set(item) for item in data[kind]))
        assert used <= passed[module], f"awx.awx.{module} task does not pass {sorted(used - passed[module])}"


# --- templates and playbooks -----------------------------------------------------------------------------------
def site_layers() -> set[str]:
    site = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    return {pathlib.Path(p["ansible.builtin.import_playbook"]).stem for p in site}


def test_every_template_runs_an_existing_playbook(data):
    for t in data["job_templates"]:
        assert re.fullmatch(r"playbooks/[a-z_]+\.yml", t["playbook"]), t["playbook"]
        assert (ROOT / t["playbook"]).is_file(), f"{t['name']}: {t['playbook']} does not exist"


def test_every_runbook_has_a_template(data):
    """Every playbook a user runs gets a template: all of playbooks/ but site.yml's layers, the lab and this one."""
    books = {p.stem for p in (ROOT / "playbooks").glob("*.yml")} - site_layers() - {"lab", "awx_configure"}
    # Layers built but not yet imported by site.yml (their component has not joined the lab): they become site
    # layers, not runbooks. Remove a name here when site.yml imports it.
    pending_layers = {"kafka", "gateway"}
    assert not pending_layers & site_layers(), "site.yml imports it now: drop it from pending_layers"
    books -= pending_layers
    covered = {pathlib.Path(t["playbook"]).stem for t in data["job_templates"]}
    assert covered == books, f"no template: {sorted(books - covered)}; unknown: {sorted(covered - books)}"
    site = sorted(t["job_type"] for t in data["job_templates"] if t["playbook"] == "playbooks/site.yml")
    assert site == ["check", "run"], "site.yml needs a check-mode template and an apply template"
    assert all(t["allow_simultaneous"] is False for t in data["job_templates"]), "runbooks must not overlap"
    assert all(0 < t["timeout"] <= 7200 for t in data["job_templates"]), "every template needs a bounded timeout"


_ENV = jinja2.Environment()
_BARE = {"when", "that", "failed_when", "changed_when", "until"}


def _names(src: str) -> set[str]:
    """Variable names a template reads (parsed, never compiled: Ansible's filters are unknown to plain Jinja)."""
    names = list(_ENV.parse(src).find_all(jinja2.nodes.Name))
    return {n.name for n in names if n.ctx == "load"} - {n.name for n in names if n.ctx in ("store", "param")}


def _refs(node, key=None, out=None, assigned=None):
    """Jinja variable names a playbook reads, and names it assigns itself (register, set_fact)."""
    out = set() if out is None else out
    assigned = set() if assigned is None else assigned
    if isinstance(node, dict):
        if isinstance(node.get("register"), str):
            assigned.add(node["register"])
        if isinstance(node.get("ansible.builtin.set_fact"), dict):
            assigned.update(node["ansible.builtin.set_fact"])
        for k, v in node.items():
            _refs(v, k, out, assigned)
    elif isinstance(node, list):
        for v in node:
            _refs(v, key, out, assigned)
    elif isinstance(node, str):
        src = f"{{{{ {node} }}}}" if key in _BARE else node
        if "{{" in src or "{%" in src:
            out |= _names(src)
    return out, assigned


def _role_options(role: str, entry: str) -> set[str]:
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    return set((spec.get(entry) or spec.get("main") or {}).get("options", {}))


def playbook_inputs(path: pathlib.Path) -> set[str]:
    """Variables a playbook takes: what its plays and tasks read (minus what they register or set themselves), its
    play vars, and the argument-spec options of the collection roles it runs; through import_playbook too."""
    plays = yaml.safe_load(path.read_text())
    reads, assigned = _refs(plays)
    inputs = set()
    for play in plays:
        if "ansible.builtin.import_playbook" in play:
            inputs |= playbook_inputs(path.parent / play["ansible.builtin.import_playbook"])
            continue
        inputs |= set(play.get("vars") or {})
        for task in play.get("tasks", []) + [t for b in play.get("tasks", []) for t in b.get("block", [])]:
            for key in ("ansible.builtin.import_role", "ansible.builtin.include_role"):
                if key in task and task[key]["name"].startswith("hingecraft.enterprise_db."):
                    role = task[key]["name"].split(".")[-1]
                    inputs |= _role_options(role, pathlib.Path(task[key].get("tasks_from", "main")).stem)
    return inputs | (reads - assigned)


def test_survey_and_extra_variables_are_inputs_of_the_playbook(data):
    templates = {t["name"]: t for t in data["job_templates"]}
    for t in data["job_templates"]:
        inputs = playbook_inputs(ROOT / t["playbook"])
        asked = [q["variable"] for q in (t.get("survey_spec") or {}).get("spec", [])] + list(t.get("extra_vars") or {})
        unknown = [v for v in asked if v not in inputs]
        assert not unknown, f"{t['name']}: {unknown} are not read by {t['playbook']}"
    for s in data["schedules"]:
        t = templates[s["unified_job_template"]]
        inputs = playbook_inputs(ROOT / t["playbook"])
        assert set(s.get("extra_data") or {}) <= inputs, f"{s['name']}: extra_data not read by {t['playbook']}"


def test_input_detection_sees_a_stray_variable():
    """The check above can fail: a name no playbook reads is not an input."""
    assert "switchover_target" in playbook_inputs(ROOT / "playbooks" / "switchover.yml")
    assert "switchover_taget" not in playbook_inputs(ROOT / "playbooks" / "switchover.yml")
    assert "__switchover_old" not in playbook_inputs(ROOT / "playbooks" / "switchover.yml")  # set_fact, not input
    assert "pki_ca_dir" in playbook_inputs(ROOT / "playbooks" / "rotate_certs.yml")  # the pki role's spec


# --- surveys as AWX validates and stores them ------------------------------------------------------------------
def awx_spec_errors(spec: dict) -> list[str]:
    """AWX 24.6's JobTemplateSurveySpec._validate_spec_data, returning every error instead of the first."""
    errors = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(spec.get(field), kind):
            errors.append(f"survey field {field} missing or not {kind.__name__}")
    if errors or not spec["spec"]:
        return errors or ["'spec' doesn't contain any items"]
    seen = set()
    for idx, q in enumerate(spec["spec"]):
        for field, kind in (("type", str), ("question_name", str), ("variable", str), ("required", bool)):
            if not isinstance(q.get(field), kind):
                errors.append(f"question {idx}: {field} missing or not {kind.__name__}")
        if q.get("variable") in seen:
            errors.append(f"question {idx}: variable {q.get('variable')} duplicated")
        seen.add(q.get("variable"))
        qtype = q.get("type")
        if qtype not in SURVEY_TYPES:
            errors.append(f"question {idx}: type {qtype} not one of {sorted(SURVEY_TYPES)}")
            continue
        if q.get("default", "") != "" and not isinstance(q["default"], SURVEY_TYPES[qtype]):
            errors.append(f"question {idx}: default {q['default']!r} is not {qtype}")
        for key in ("min", "max"):
            if q.get(key) is not None and not isinstance(q[key], int):
                errors.append(f"question {idx}: {key} must be an integer")
        if qtype in ("multiplechoice", "multiselect"):
            if "choices" not in q:
                errors.append(f"question {idx}: {qtype} needs choices")
            elif "default" in q:
                defaults = q["default"].splitlines() if isinstance(q["default"], str) else q["default"]
                if qtype == "multiplechoice" and len(defaults) > 1:
                    errors.append(f"question {idx}: one default only")
                if any(d not in q["choices"] for d in defaults):
                    errors.append(f"question {idx}: default not among the choices")
    return errors


def awx_element_errors(q: dict, value) -> list[str]:
    """AWX 24.6's _survey_element_validation for one answer (here: the default AWX passes when none is given)."""
    name, qtype = q["variable"], q["type"]
    if qtype in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return [f"{name}: {value!r} is not a string"]
        if q.get("min") not in ("", None) and len(value) < int(q["min"]):
            return [f"{name}: {value!r} shorter than {q['min']}"]
        if q.get("max") not in ("", None) and len(value) > int(q["max"]):
            return [f"{name}: {value!r} longer than {q['max']}"]
    elif qtype == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{name}: {value!r} is not an integer"]
        if q.get("min") not in ("", None) and value < int(q["min"]):
            return [f"{name}: {value} below {q['min']}"]
        if q.get("max") not in ("", None) and value > int(q["max"]):
            return [f"{name}: {value} above {q['max']}"]
    elif qtype == "multiplechoice" and value not in q["choices"]:
        return [f"{name}: {value!r} not among {q['choices']}"]
    return []


def awx_stored(spec: dict) -> dict:
    """What AWX stores for a posted spec: newline-joined choices and defaults of choice questions are rewritten."""
    out = json.loads(json.dumps(spec))
    for q in out["spec"]:
        if q["type"] in ("multiplechoice", "multiselect"):
            if isinstance(q.get("choices"), str):
                q["choices"] = "\n".join(c for c in q["choices"].splitlines() if c.strip())
            if isinstance(q.get("default"), str):
                q["default"] = "\n".join(c for c in q["default"].splitlines() if c.strip())
    return out


def surveys(data):
    return [(t["name"], t["survey_spec"]) for t in data["job_templates"] if t.get("survey_spec")]


def test_surveys_pass_awx_validation(data):
    assert len(surveys(data)) >= 8
    for name, spec in surveys(data):
        assert not awx_spec_errors(spec), (name, awx_spec_errors(spec))
        for q in spec["spec"]:
            assert set(q) <= QUESTION_KEYS, f"{name}: unknown question keys {sorted(set(q) - QUESTION_KEYS)}"
            if "default" in q:
                assert not awx_element_errors(q, q["default"]), (name, awx_element_errors(q, q["default"]))
            else:
                assert q["required"] or q["type"] == "text", f"{name}: {q['variable']} optional without default"
    enabled = {t["name"]: t["survey_enabled"] for t in data["job_templates"]}
    assert all(enabled[name] for name, _spec in surveys(data)), "a template with a survey has it disabled"


def test_awx_validation_rejects_bad_surveys():
    """The ported validation can fail."""
    good = {"question_name": "q", "variable": "v", "type": "integer", "required": True, "default": 1}
    assert not awx_spec_errors({"name": "", "description": "", "spec": [good]})
    assert awx_spec_errors({"name": "", "description": "", "spec": [dict(good, default="1")]})
    assert awx_spec_errors({"name": "", "description": "", "spec": [good, good]})
    assert awx_spec_errors({"name": "", "description": "", "spec": [dict(good, type="multiplechoice")]})
    assert awx_element_errors(dict(good, type="text", min=3), "ab")


def test_surveys_are_stored_as_given_so_a_rerun_is_unchanged(data):
    """awx.awx.job_template compares the spec it sends with the one AWX returns: it must be AWX's fixpoint."""
    for name, spec in surveys(data):
        assert awx_stored(spec) == spec, f"{name}: AWX would store a different spec (reported changed on every run)"
        assert not [q for q in spec["spec"] if q["type"] == "password"], f"{name}: password defaults read back as $encrypted$"
        assert all(isinstance(q.get("choices", []), list) for q in spec["spec"]), f"{name}: choices must be lists"


def test_pitr_survey_asks_target_type_and_value(data):
    spec = next(t["survey_spec"] for t in data["job_templates"] if t["playbook"] == "playbooks/pitr_restore.yml")
    questions = {q["variable"]: q for q in spec["spec"]}
    assert questions["pitr_target_type"]["choices"] == ["time", "lsn", "xid", "name", "latest", "immediate"]
    assert questions["pitr_target_type"]["required"] and "default" not in questions["pitr_target_type"]
    assert "default" not in questions["pitr_target"], "a default '' would be passed as the target"


# --- schedules -------------------------------------------------------------------------------------------------
def test_schedules_point_at_templates_with_fixed_rrules(data):
    templates = {t["name"]: t for t in data["job_templates"]}
    for s in data["schedules"]:
        assert re.fullmatch(r"DTSTART;TZID=UTC:\d{8}T\d{6} RRULE:FREQ=(WEEKLY|MONTHLY|DAILY);INTERVAL=\d+;\S+", s["rrule"])
        t = templates[s["unified_job_template"]]
        survey_vars = {q["variable"] for q in (t.get("survey_spec") or {}).get("spec", [])}
        extra = set(s.get("extra_data") or {})
        assert extra <= survey_vars or t["ask_variables_on_launch"], f"AWX refuses {s['name']}'s extra_data"
        for q in (t.get("survey_spec") or {}).get("spec", []):
            if q["variable"] in extra:
                assert not awx_element_errors(q, s["extra_data"][q["variable"]]), s["name"]
            else:
                assert not q["required"] or "default" in q, f"{s['name']} leaves required {q['variable']} unanswered"
    drill = [s for s in data["schedules"] if templates[s["unified_job_template"]]["playbook"] == "playbooks/restore_drill.yml"]
    assert drill and "FREQ=WEEKLY" in drill[0]["rrule"]


# --- the credential type ---------------------------------------------------------------------------------------
INPUTS_SCHEMA = {  # awx/main/fields.py CredentialTypeInputField.schema (AWX 24.6)
    "type": "object", "additionalProperties": False,
    "properties": {
        "required": {"type": "array", "items": {"type": "string"}},
        "fields": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["id", "label"],
            "properties": {
                "type": {"enum": ["string", "boolean"]}, "format": {"enum": ["ssh_private_key", "url"]},
                "choices": {"type": "array", "minItems": 1, "items": {"type": "string"}, "uniqueItems": True},
                "id": {"type": "string", "pattern": "^[a-zA-Z_]+[a-zA-Z0-9_]*$"}, "label": {"type": "string"},
                "help_text": {"type": "string"}, "multiline": {"type": "boolean"}, "secret": {"type": "boolean"},
                "ask_at_runtime": {"type": "boolean"}, "default": {}}}}}}
INJECTORS_SCHEMA = {  # awx/main/fields.py CredentialTypeInjectorField.schema (AWX 24.6)
    "type": "object", "additionalProperties": False,
    "properties": {
        "file": {"type": "object", "additionalProperties": False,
                 "patternProperties": {r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$": {"type": "string"}}},
        "env": {"type": "object", "additionalProperties": False,
                "patternProperties": {"^[a-zA-Z_]+[a-zA-Z0-9_]*$": {"type": "string", "pattern": "^[\x00-\x7f]*$"}}},
        "extra_vars": {"type": "object", "additionalProperties": False, "patternProperties": {
            r"^[a-zA-Z_\{\}]+[a-zA-Z0-9_\{\}]*$": {"anyOf": [{"type": "string"}, {"type": "array"},
                                                             {"$ref": "#/properties/extra_vars"}]}}}}}


def _leaves(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _leaves(v)
    else:
        yield node


def test_credential_type_passes_awx_schemas_and_injects_platform_inputs():
    ct = load("credential_types.yml")["controller_credential_types"][0]
    jsonschema.validate(ct["inputs"], INPUTS_SCHEMA)
    jsonschema.validate(ct["injectors"], INJECTORS_SCHEMA)
    ids = [f["id"] for f in ct["inputs"]["fields"]]
    assert len(ids) == len(set(ids)) and "tower" not in ids
    assert sorted(ct["inputs"]["required"]) == sorted(ids), "an optional field would inject '' over the inventory"
    assert all(f.get("secret") for f in ct["inputs"]["fields"]), "every field is a secret"
    used = set()
    for leaf in _leaves(ct["injectors"]["extra_vars"]):
        used |= _names(leaf)
    assert used == set(ids), f"injectors name {sorted(used - set(ids))}; fields never injected {sorted(set(ids) - used)}"
    role_inputs = set().union(*(_role_options(p.parent.parent.name, "main")
                                for p in (ROOT / "roles").glob("*/meta/argument_specs.yml")))
    injected = set(ct["injectors"]["extra_vars"])
    assert injected <= role_inputs, f"injected but no role takes them: {sorted(injected - role_inputs)}"
    security = _role_options("security", "main")
    assert "security_passwords" in security


def test_templates_carry_the_secrets_credential(data):
    ct = load("credential_types.yml")["controller_credential_types"][0]
    assert all("HingeCraft platform secrets" in t["credentials"] for t in data["job_templates"])
    assert data["credential_types"][0]["injectors"] == ct["injectors"], "Ansible templated the AWX injector strings"
