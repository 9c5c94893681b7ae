# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Session fixture: ONE PostgreSQL 17 container (hc-it-pg17) for every module integration test.

The image comes from scripts/pg-test-image.sh (PostgreSQL 17, pgvector, pg_partman, pg_cron, hypopg, pgaudit,
python3-psycopg; cached by recipe hash). A leftover container of the same name (an aborted run) is removed
first. Set HC_IT_KEEP=1 to keep the container after the run for debugging.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import helpers


def _start_container():
    image = helpers.sh([os.path.join(helpers.REPO_ROOT, 'scripts', 'pg-test-image.sh')], timeout=900).stdout.strip()
    helpers.sh(['docker', 'rm', '-f', helpers.CONTAINER], check=False)
    helpers.sh(['docker', 'run', '-d', '--name', helpers.CONTAINER, '--hostname', 'pg-it',
                '--label', 'hingecraft.role=integration-test',
                '--cap-add', 'SYS_ADMIN', '--cgroupns', 'host', '-v', '/sys/fs/cgroup:/sys/fs/cgroup:ro',
                '--tmpfs', '/run', '--tmpfs', '/run/lock', '--tmpfs', '/tmp',
                image])

    def ready():
        p = helpers.sh(['docker', 'exec', '-u', 'postgres', helpers.CONTAINER, 'psql', '-X', '-A', '-t', '-d',
                        helpers.DB, '-c', 'SELECT 1'], check=False, timeout=20)
        return p.returncode == 0 and p.stdout.strip() == '1'

    helpers.wait_for(ready, timeout=90, what=f'PostgreSQL 17 in {helpers.CONTAINER} to accept connections')
    return image


@pytest.fixture(scope='session')
def pg_container():
    """Start hc-it-pg17 (once per session) and yield its name; removed at the end unless HC_IT_KEEP=1."""
    if helpers.sh(['docker', 'info'], check=False, timeout=30).returncode != 0:
        pytest.fail('no Docker engine answers: run `make image` (starts the engine and builds the base image)')
    started = time.monotonic()
    image = _start_container()
    sys.stderr.write(f'\n[integration] {helpers.CONTAINER} from {image} ready in {time.monotonic() - started:.1f} s\n')
    yield helpers.CONTAINER
    if os.environ.get('HC_IT_KEEP') != '1':
        helpers.sh(['docker', 'rm', '-f', helpers.CONTAINER], check=False)


@pytest.fixture(scope='module')
def schema(pg_container, request):
    """A fresh schema named after the test module (test_pg_index.py -> it_pg_index)."""
    name = 'it_' + request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')
    helpers.fresh_schema(name)
    return name
