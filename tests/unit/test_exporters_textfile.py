"""roles/exporters' textfile collector script, rendered by Ansible and run with a stub psql: pgpool-II node states
from `SHOW pool_nodes` (attached, primary, no primary, pgpool not answering, pgpool hanging past `timeout 5`) and
certificate expiry days, written atomically in the text format the node exporter reads."""

import os
import re
import shutil
import subprocess
import time

import pytest
from ansible_run import ROOT, run_playbook

RENDER = ROOT / "tests" / "unit" / "playbooks" / "exporters_render.yml"
NODES_OK = ("0|pg1|5432|up|up|0.333333|primary|primary|10|false|0|||2026-12-02 00:00:00\n"
            "1|pg2|5432|down|up|0.333333|standby|standby|0|false|0|streaming|async|2026-12-02 00:00:00\n"
            "2|pg3|5432|up|up|0.333333|standby|standby|5|true|0|streaming|sync|2026-12-02 00:00:00\n")
NODES_NO_PRIMARY = NODES_OK.replace("|primary|primary|", "|standby|standby|")

for tool in ("bash", "openssl", "timeout", "awk"):
    if shutil.which(tool) is None:
        pytestmark = pytest.mark.skip(reason=f"{tool} is not installed on this machine")


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    d = tmp_path_factory.mktemp("textfile")
    (d / "out").mkdir()
    (d / "certs").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=t", "-days", "20", "-keyout", str(d / "certs" / "k.pem"),
                    "-out", str(d / "certs" / "server.crt")], check=True, capture_output=True, timeout=60)
    extra = {"hc_out": str(d), "exporters_textfile_pgpool_enabled": True, "exporters_node_textfile_dir": str(d / "out"),
             "exporters_config_dir": str(d), "exporters_textfile_cert_globs": [str(d / "certs" / "*.crt")]}
    rc, log = run_playbook(RENDER, extra_vars=extra)
    assert rc == 0, log[-3000:]
    return d


def run(d, psql_body):
    stub = d / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "psql").write_text("#!/bin/bash\n" + psql_body)
    (stub / "psql").chmod(0o755)
    env = dict(os.environ, PATH=f"{stub}:{os.environ['PATH']}")
    t0 = time.monotonic()
    res = subprocess.run(["bash", str(d / "script")], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    prom = d / "out" / "hingecraft.prom"
    assert not [p for p in (d / "out").iterdir() if p.name.startswith(".")], "temporary file left behind"
    return prom.read_text(), time.monotonic() - t0


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = "^" + re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    found = [float(m.group(1)) for m in re.finditer(pat, text, re.MULTILINE)]
    assert len(found) == 1, (name, labels, text)
    return found[0]


def test_node_states_and_primary(script):
    text = run(script, f"cat <<'EOF'\n{NODES_OK}EOF\n")[0]
    assert metric(text, "hingecraft_pgpool_up") == 1
    assert metric(text, "hingecraft_pgpool_primary_node_id") == 0
    assert metric(text, "hingecraft_pgpool_node_up", node_id="0", hostname="pg1") == 1
    assert metric(text, "hingecraft_pgpool_node_up", node_id="1", hostname="pg2") == 0
    assert metric(text, "hingecraft_pgpool_node_primary", node_id="0", hostname="pg1") == 1
    assert metric(text, "hingecraft_pgpool_node_primary", node_id="2", hostname="pg3") == 0


def test_no_primary_is_minus_one(script):
    text = run(script, f"cat <<'EOF'\n{NODES_NO_PRIMARY}EOF\n")[0]
    assert metric(text, "hingecraft_pgpool_primary_node_id") == -1


def test_pgpool_not_answering(script):
    text = run(script, "echo 'could not connect' >&2; exit 2\n")[0]
    assert metric(text, "hingecraft_pgpool_up") == 0
    assert "hingecraft_pgpool_primary_node_id" not in text


def test_hanging_pgpool_is_cut_after_5_seconds(script):
    text, took = run(script, "sleep 20\n")
    assert metric(text, "hingecraft_pgpool_up") == 0
    assert took < 12, f"the run took {took:.1f} s"


def test_certificate_expiry_days(script):
    text = run(script, "exit 2\n")[0]
    days = metric(text, "hingecraft_certificate_expiry_days", path=str(script / "certs" / "server.crt"))
    assert 19.9 < days <= 20.0


def test_output_is_valid_exposition_format(script):
    promtool = shutil.which("promtool", path=str(ROOT / ".cache" / "prom-tools" / "bin")) or shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not found: run scripts/prom-tools.sh (checks the text format only)")
    run(script, f"cat <<'EOF'\n{NODES_OK}EOF\n")
    res = subprocess.run([promtool, "check", "metrics"], input=(script / "out" / "hingecraft.prom").read_text(),
                         capture_output=True, text=True, timeout=30, check=False)
    out = res.stderr + res.stdout
    # check metrics also lints; the one finding allowed is the unit of the expiry metric, days by design
    lint = [ln for ln in out.splitlines() if ln.strip() and "use base unit" not in ln]
    assert res.returncode in (0, 3) and not lint, out


def test_metric_families_are_contiguous(script):
    text = run(script, f"cat <<'EOF'\n{NODES_OK}EOF\n")[0]
    names = [ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if not ln.startswith("#")]
    seen, last = set(), None
    for n in names:
        assert n == last or n not in seen, f"{n} is split into two groups: {names}"
        seen.add(n)
        last = n
