"""Platform acceptance suite: the lab that `make lab` built (playbooks/site.yml on inventories/lab), proven as
a whole. A lab that is not running is a failure here, never a skip: `make platform` builds it first."""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import lab

RESULTS: dict = {}


@pytest.fixture(scope="session", autouse=True)
def the_lab():
    missing = [c for c in lab.ALL_CONTAINERS if not lab.running(c)]
    if missing:
        pytest.fail(f"lab containers not running: {', '.join(missing)} (run `make lab` first)", pytrace=False)
    if not lab.CA.exists() or not (lab.SECRETS / "hingecraft_app").exists():
        pytest.fail(f"lab CA {lab.CA} or secrets in {lab.SECRETS} missing (run `make lab` first)", pytrace=False)
    yield
    # Only a run with the fault matrix's summary replaces the published figures; a partial run (-k, one file)
    # writes next to the caches instead of overwriting docs/bench/platform.json with a handful of numbers.
    default = lab.ROOT / "docs" / "bench" / "platform.json"
    if "summary" not in RESULTS:
        default = lab.ROOT / ".cache" / "platform-partial.json"
    out = pathlib.Path(os.environ.get("HC_PLATFORM_RESULTS", default))
    if RESULTS:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(RESULTS, indent=2, sort_keys=True) + "\n")
        sys.stderr.write(f"\n[platform] results written to {out}\n")


@pytest.fixture(scope="session")
def results():
    return RESULTS


# The second site.yml must change nothing after every fault of every component, so it runs last, whatever file
# the other components' faults live in.
LAST = "test_second_site_run_changes_nothing_after_the_failovers"


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.name == LAST)
