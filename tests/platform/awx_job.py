"""Job templates run as AWX runs them, against the lab, without an AWX: shared by test_awx_runner (the check and
report templates) and test_platform (the `site (apply)` template is the platform suite's last, changed=0 site run).

AWX hands a job to ansible-runner: the project checkout as the working directory, the template's playbook, the
inventory, extra variables built as AWX builds them (awx/main/models/mixins.py, AWX 24.6: the template's extra_vars,
then each survey question's default that passes the question's own validation), the credential type's injectors
rendered with the credential's values into a file of `!unsafe` strings passed as `-e @file` (awx/main/models/
credential.py inject_credential), `--check` for a check job and `--diff` with diff mode, and a collections path of
the project's requirements then the execution environment's collections (awx/main/tasks/jobs.py). Here the EE's
collections are the installed tarball (tests/platform/installed.py) and the credential's values are the lab's
generated secrets (.lab/secrets), so the platform secrets reach the roles only through the credential type's
injectors - a field mapped to the wrong variable shows up as a change or a failure.
"""

from __future__ import annotations

import json
import os
import pathlib

import ansible_runner
import installed
import jinja2.sandbox
import lab
import yaml

ROOT = lab.ROOT
# The credential's values in the lab: credential type field id -> file in .lab/secrets (the inventory's lookups).
LAB_SECRET_FILES = {
    "pgbackrest_cipher_pass": "pgbackrest_cipher_pass",
    "pgbouncer_auth_password": "pgbouncer_auth",
    "pgpool_aes_key": "pgpool_aes_key",
    "pgpool_check_password": "pgpool_check",
    "pgpool_pcp_password": "pgpool_pcp",
    "postgresql_superuser_password": "postgres_superuser",
    "replication_password": "replicator",
}
LAB_SECURITY_ROLES = ("admin_login", "app_ro_login", "app_rw_login", "auditor_login", "backup", "bi_reader_login", "etl",
                      "monitoring", "replication")
LAB_SECRET_FILES.update({f"security_password_{r}": f"pg_{r}" for r in LAB_SECURITY_ROLES})
LAB_SECRET_FILES.update({f"redis_{u}_password": f"redis_{u}" for u in ("admin", "app", "monitor", "replication", "sentinel")})


def survey_defaults(template: dict) -> dict:
    """AWX's _update_unified_job_kwargs: a question's default is passed when it is not None and validates."""
    out = {}
    if not template.get("survey_enabled"):
        return out
    for q in template.get("survey_spec", {}).get("spec", []):
        default = q.get("default")
        if default is None:
            continue
        if q["type"] == "integer" and (not isinstance(default, int) or isinstance(default, bool)):
            continue
        if q["type"] in ("text", "textarea") and not (
                isinstance(default, str) and len(default) >= int(q.get("min") or 0)
                and (q.get("max") in ("", None) or len(default) <= int(q["max"]))):
            continue
        out[q["variable"]] = default
    return out


def credential_vars_file(credential_type: dict, values: dict, path: pathlib.Path) -> pathlib.Path:
    """inject_credential: every extra_vars injector rendered in Jinja's sandbox with the credential's values, written
    as YAML whose strings are !unsafe (AWX's safe_dump), for `-e @path`."""
    sandbox = jinja2.sandbox.ImmutableSandboxedEnvironment()

    def build(node):
        if isinstance(node, dict):
            return {k: build(v) for k, v in node.items()}
        return sandbox.from_string(node).render(**values)

    class Unsafe(str):
        pass

    def tag(node):
        return {k: tag(v) for k, v in node.items()} if isinstance(node, dict) else Unsafe(node)

    dumper = type("UnsafeDumper", (yaml.SafeDumper,), {})
    dumper.add_representer(Unsafe, lambda d, s: d.represent_scalar("!unsafe", str(s)))
    path.write_text(yaml.dump(tag(build(credential_type["injectors"]["extra_vars"])), Dumper=dumper))
    path.chmod(0o400)
    return path


def run_template(template: dict, credential_type: dict, tmp: pathlib.Path, timeout: int) -> ansible_runner.Runner:
    values = {field: lab.secret(name) for field, name in LAB_SECRET_FILES.items()}
    fields = {f["id"] for f in credential_type["inputs"]["fields"]}
    assert set(values) == fields, f"lab values for {sorted(set(values) ^ fields)} missing or unknown"
    creds = credential_vars_file(credential_type, values, tmp / "credential_extra_vars.yml")
    extravars = {**(template.get("extra_vars") or {}), **survey_defaults(template)}
    args = ["-e", f"@{creds}"] + (["--check"] if template["job_type"] == "check" else []) + \
        (["--diff"] if template["diff_mode"] else [])
    # ansible-runner runs the ansible-playbook it finds on PATH, as AWX's execution environment does: the venv's.
    env = {**installed.env(), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "ANSIBLE_COLLECTIONS_PATH": f"{tmp / 'requirements_collections'}:{installed.COLL / 'installed'}"}
    (tmp / "runner").mkdir(exist_ok=True)
    return ansible_runner.run(private_data_dir=str(tmp / "runner"), project_dir=str(ROOT), playbook=template["playbook"],
                              inventory=str(lab.INVENTORY), extravars=extravars, cmdline=" ".join(args), envvars=env,
                              quiet=True, timeout=timeout)


def changed_tasks(runner) -> list[str]:
    return sorted({f"{e['event_data'].get('host')}: {e['event_data'].get('task')}" for e in runner.events
                   if e.get("event") == "runner_on_ok" and e["event_data"].get("res", {}).get("changed")})


def render(out: pathlib.Path) -> dict:
    """The rendered AWX data, from the installed collection's own awx_configure playbook (no AWX contacted)."""
    installed.install()
    res = lab.run_playbook("localhost,", "hingecraft.enterprise_db.awx_configure", "-e",
                           json.dumps({"hc_awx_render_dir": str(out), "hc_awx_ee_image": "hingecraft-ee:test",
                                       "hc_awx_restore_drill_canary_table": "public.platform_accounts"}),
                           timeout=300, check=False, env=installed.env())
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    data = json.loads((out / "awx.json").read_text())
    return {"templates": {t["name"]: t for t in data["job_templates"]}, "credential_type": data["credential_types"][0]}


def run_site_template(name: str, tmp: pathlib.Path, job_type: str) -> tuple[ansible_runner.Runner, str]:
    """Run the named site template on the whole lab and assert what every site job must show: successful, every
    host reached, nothing failed or unreachable, every role task taken from the installed tarball (the EE's
    collections), never from the source tree. Returns the runner and the tail of its output."""
    awx = render(tmp / "awx-render")
    template = awx["templates"][name]
    assert template["job_type"] == job_type, template
    runner = run_template(template, awx["credential_type"], tmp, timeout=1800)
    stats = runner.stats or {}
    tail = runner.stdout.read()[-4000:]
    assert runner.status == "successful", (runner.status, runner.rc, tail)
    hosts = {h for group in lab.GROUPS.values() for h in group}
    assert set(stats.get("ok", {})) >= hosts, (sorted(stats.get("ok", {})), tail)
    assert not stats.get("failures") and not stats.get("dark"), (stats, tail)
    paths = {e["event_data"].get("task_path", "").rsplit(":", 1)[0] for e in runner.events
             if e.get("event") == "runner_on_ok" and "/roles/" in e["event_data"].get("task_path", "")}
    assert paths, "no role task reported a task path"
    outside = sorted(p for p in paths if not p.startswith(str(installed.INSTALLED) + "/"))
    assert not outside, f"role tasks ran from outside the installed copy: {outside[:5]}"
    return runner, tail
