"""Job templates run as AWX runs them, against the lab, without an AWX (how: tests/platform/awx_job.py).

- `HingeCraft | site (apply)`: the platform suite's last site.yml, after every fault (test_platform's
  test_second_site_run_changes_nothing_after_the_failovers): the installed tarball's roles, the credential type's
  injectors, every host, changed=0.
- `HingeCraft | site (check)`: the same in check mode, changing nothing. A third full site.yml on the lab (about 10
  minutes on 2 cores) that proves little the apply run and the Molecule scenarios' check-mode converges do not, so
  `make test` skips it (saying so) and `make platform-full` runs it.
- `HingeCraft | audit_report` with its survey defaults: a fresh JSON report per PostgreSQL host in the survey's
  default directory, holding the records of the converge.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import awx_job
import lab
import pytest


@pytest.fixture(scope="module")
def awx(tmp_path_factory):
    return awx_job.render(tmp_path_factory.mktemp("awx-render"))


@pytest.mark.skipif(os.environ.get("HC_PLATFORM_FULL") != "1",
                    reason="a third full site.yml (~10 min on 2 cores), left out of make test for time: there check "
                           "mode is proven for pki and postgresql only (their Molecule scenarios); "
                           "`make platform-full` runs this check-mode site.yml on the lab")
def test_site_check_template_through_ansible_runner(tmp_path, results):
    started = time.monotonic()
    runner, _tail = awx_job.run_site_template("HingeCraft | site (check)", tmp_path, "check")
    results["awx_runner_site_check_s"] = round(time.monotonic() - started, 1)
    stats = runner.stats or {}
    assert not stats.get("changed"), (stats.get("changed"), awx_job.changed_tasks(runner))


def test_audit_report_template_with_survey_defaults(awx, tmp_path, results):
    template = awx["templates"]["HingeCraft | audit_report"]
    answers = awx_job.survey_defaults(template)
    assert set(answers) == {"audit_report_since", "audit_report_dir"}, answers
    report_dir = pathlib.Path(answers["audit_report_dir"])
    for old in report_dir.glob("audit-*.json"):
        old.unlink()
    started = time.monotonic()
    runner = awx_job.run_template(template, awx["credential_type"], tmp_path, timeout=900)
    results["awx_runner_audit_report_s"] = round(time.monotonic() - started, 1)
    assert runner.status == "successful", (runner.status, runner.rc, runner.stdout.read()[-4000:])
    reports = {p.stem.removeprefix("audit-"): json.loads(p.read_text()) for p in report_dir.glob("audit-*.json")}
    assert set(reports) == set(lab.NODES), sorted(reports)
    for host, report in reports.items():
        assert report["host"] == host and report["since"] == answers["audit_report_since"], report
    records = {h: len(r["pgaudit"]) + len(r["trail"]) for h, r in reports.items()}
    results["awx_runner_audit_records"] = records
    assert sum(records.values()) > 0, f"no audit record at all after site.yml converged the lab: {records}"
