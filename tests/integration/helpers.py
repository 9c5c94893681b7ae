# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the module integration tests (shared by every tests/integration/test_*.py).

The tests run the collection's modules BY ANSIBLE against one PostgreSQL 17 container (``hc-it-pg17``, started
by the session fixture in conftest.py): connection ``community.docker.docker`` as the OS user ``postgres``
(``docker exec -u postgres``), so the modules reach the server over the Unix socket with peer authentication,
exactly as on a real Debian host. Results come back through the ``ansible.posix.json`` callback.

Typical use::

    r = run_modules([
        call('pg_index', {'name': 'i1', 'table': 's.t', 'columns': ['a']}, check_mode=True),
        call('pg_index', {'name': 'i1', 'table': 's.t', 'columns': ['a']}, diff=True),
    ])
    assert r[0]['changed'] and not r[0].get('failed')

A failing call does not stop the batch (each call is wrapped in block/rescue); its result has ``failed: True``
and ``msg``. Check results in the catalog with ``psql_rows()`` / ``psql_value()`` (``docker exec psql``).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
CONTAINER = os.environ.get('HC_IT_CONTAINER', 'hc-it-pg17')
DB = 'hc_it'
COLLECTION = 'hingecraft.enterprise_db'
ANSIBLE_PLAYBOOK = os.path.join(REPO_ROOT, '.venv', 'bin', 'ansible-playbook')
PLAYBOOK_TIMEOUT = 300


class AnsibleRunError(AssertionError):
    pass


def sh(cmd, input_text=None, timeout=120, check=True):
    """Run a command (list), return CompletedProcess with text output; raise with stderr on failure."""
    p = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"command failed ({p.returncode}): {' '.join(cmd)}\n"
                             f'stdout: {p.stdout[-4000:]}\nstderr: {p.stderr[-4000:]}')
    return p


# --- psql through docker exec -------------------------------------------------------------------------------

def psql(statements, db=DB, check=True):
    """Run SQL text as postgres inside the container (ON_ERROR_STOP); return the CompletedProcess."""
    return sh(['docker', 'exec', '-i', '-u', 'postgres', CONTAINER, 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
               '-d', db, '-f', '-'], input_text=statements, check=check)


def psql_rows(query, db=DB):
    """Rows of a SELECT as a list of dicts (through json_agg, so types survive as JSON)."""
    wrapped = 'SELECT coalesce(json_agg(t), \'[]\'::json) FROM ({}) t'.format(query.strip().rstrip(';'))
    out = sh(['docker', 'exec', '-i', '-u', 'postgres', CONTAINER, 'psql', '-X', '-q', '-A', '-t', '-v',
              'ON_ERROR_STOP=1', '-d', db, '-f', '-'], input_text=wrapped + ';\n').stdout
    return json.loads(out.strip() or '[]')


def psql_value(query, db=DB):
    """First column of the first row (None when there is no row)."""
    rows = psql_rows(query, db=db)
    if not rows:
        return None
    return next(iter(rows[0].values()))


def fresh_schema(name, db=DB):
    """Drop (cascade) and recreate a schema; each test module works in its own schema."""
    psql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE; CREATE SCHEMA "{name}";', db=db)
    return name


def catalog_snapshot(db=DB):
    """Everything a module could create, outside the system schemas, as a comparable dict.

    Relations (with kind), indexes with definitions, functions, triggers, policies, RLS flags, text search
    configurations, extensions, pg_cron jobs: equal snapshots before/after prove that nothing changed.
    """
    user_ns = ("n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
               "AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'")
    parts = {
        'schemas': f"SELECT nspname FROM pg_namespace n WHERE {user_ns} ORDER BY 1",
        'relations':
            "SELECT n.nspname, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, "
            "pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE {user_ns} ORDER BY 1, 2",
        'columns':
            "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, "
            "pg_get_expr(d.adbin, d.adrelid) AS expr FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid "
            f"AND d.adnum = a.attnum WHERE {user_ns} AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v','m') "
            "ORDER BY 1, 2, 3",
        'indexes': "SELECT schemaname, indexname, indexdef FROM pg_indexes "
                   "WHERE schemaname NOT IN ('pg_catalog') ORDER BY 1, 2",
        'functions':
            "SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) AS args, md5(p.prosrc) AS src "
            f"FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {user_ns} "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') ORDER BY 1, 2, 3",
        'triggers': "SELECT tgrelid::regclass::text AS rel, tgname, tgenabled FROM pg_trigger "
                    "WHERE NOT tgisinternal ORDER BY 1, 2",
        'policies': "SELECT schemaname, tablename, policyname, cmd, roles::text, qual, with_check "
                    "FROM pg_policies ORDER BY 1, 2, 3",
        'ts_configs': "SELECT n.nspname, c.cfgname FROM pg_ts_config c "
                      f"JOIN pg_namespace n ON n.oid = c.cfgnamespace WHERE {user_ns} ORDER BY 1, 2",
        'extensions': "SELECT extname, extversion FROM pg_extension ORDER BY 1",
        'roles': "SELECT rolname FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%' ORDER BY 1",
        'acls': "SELECT n.nspname, c.relname, c.relacl::text AS acl FROM pg_class c "
                f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user_ns} AND c.relacl IS NOT NULL ORDER BY 1, 2",
    }
    cron = "CASE WHEN to_regclass('cron.job') IS NULL THEN '[]'::json ELSE " \
           "(SELECT coalesce(json_agg(j ORDER BY j.jobname), '[]') FROM (SELECT jobname, schedule, command, database " \
           "FROM cron.job) j) END"
    # one psql round trip: a JSON object with one array per catalog part
    select = ', '.join(f"'{k}', (SELECT coalesce(json_agg(t), '[]'::json) FROM ({q}) t)" for k, q in parts.items())
    query = f'SELECT json_build_object({select}) AS snap'
    snap = psql_value(query, db=db)
    if psql_value("SELECT to_regclass('cron.job') IS NOT NULL", db=db):
        snap['cron_jobs'] = psql_value(f'SELECT {cron} AS jobs', db=db)
    return snap


def copy_to_container(src, dest):
    """Copy a file or directory into the container at dest, owned by postgres."""
    sh(['docker', 'exec', CONTAINER, 'rm', '-rf', dest])
    sh(['docker', 'exec', CONTAINER, 'mkdir', '-p', os.path.dirname(dest.rstrip('/')) or '/'])
    sh(['docker', 'cp', src, f'{CONTAINER}:{dest}'])
    sh(['docker', 'exec', CONTAINER, 'chown', '-R', 'postgres:postgres', dest])


# --- modules through ansible-playbook ------------------------------------------------------------------------

def call(module, args, check_mode=False, diff=False, name=None):
    """One module invocation for run_modules(). ``module`` is the short name (pg_index) or a FQCN."""
    if '.' not in module:
        module = f'{COLLECTION}.{module}'
    return {'module': module, 'args': dict(args), 'check_mode': bool(check_mode), 'diff': bool(diff),
            'name': name}


def _environment():
    env = dict(os.environ)
    env.update({
        'ANSIBLE_CONFIG': os.path.join(REPO_ROOT, 'ansible.cfg'),
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(REPO_ROOT, '.collections'),
        'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
        'ANSIBLE_CALLBACKS_ENABLED': 'ansible.posix.json',
        'ANSIBLE_PIPELINING': 'True',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'ANSIBLE_LOCAL_TEMP': tempfile.gettempdir(),
        'PATH': os.path.join(REPO_ROOT, '.venv', 'bin') + os.pathsep + env.get('PATH', ''),
    })
    return env


def run_playbook(tasks, default_db=DB, timeout=PLAYBOOK_TIMEOUT):
    """Run a list of plain Ansible task dicts against the container in ONE play; return the JSON callback
    output (dict). The caller is responsible for wrapping expected failures (run_modules does)."""
    play = [{'name': 'hingecraft module integration', 'hosts': CONTAINER, 'gather_facts': False,
             'tasks': tasks}]
    with tempfile.TemporaryDirectory(prefix='hc-it-') as tmp:
        inv = os.path.join(tmp, 'inventory.ini')
        with open(inv, 'w', encoding='utf-8') as f:
            f.write(f'{CONTAINER} ansible_connection=community.docker.docker ansible_user=postgres '
                    'ansible_python_interpreter=/usr/bin/python3\n')
        pb = os.path.join(tmp, 'play.yml')
        with open(pb, 'w', encoding='utf-8') as f:
            json.dump(play, f)  # JSON is YAML
        p = subprocess.run([ANSIBLE_PLAYBOOK, '-i', inv, pb], capture_output=True, text=True, timeout=timeout,
                           env=_environment(), cwd=REPO_ROOT, check=False)
    try:
        out = json.loads(p.stdout)
    except ValueError as e:
        raise AnsibleRunError(f'ansible-playbook output is not JSON (rc {p.returncode}): {e}\n'
                              f'{p.stdout[-4000:]}\n{p.stderr[-4000:]}') from e
    if p.returncode != 0:
        raise AnsibleRunError(f"ansible-playbook failed (rc {p.returncode}): {json.dumps(out.get('stats'))}\n"
                              f'{p.stderr[-4000:]}')
    return out


def _label(i, c):
    return f"call {i:03d} {c.get('name') or c['module'].split('.')[-1]}"


def run_modules(calls, default_db=DB):
    """Run module calls (see call()) in one playbook; return one result dict per call, in order.

    Each call runs in a block whose rescue records the failure, so an expected failure does not stop the
    batch; every result carries ``failed`` (bool). The database defaults to the test database.
    """
    tasks = []
    for i, c in enumerate(calls):
        args = dict(c['args'])
        args.setdefault('db', default_db)
        label = _label(i, c)
        tasks.append({
            'name': label,
            'block': [{'name': label, c['module']: args, 'check_mode': c['check_mode'], 'diff': c['diff']}],
            'rescue': [{'name': f'{label} failed (recorded)',
                        'ansible.builtin.debug': {'msg': 'failure recorded for the test'}}],
        })
    out = run_playbook(tasks, default_db=default_db)
    results = {}
    for play in out.get('plays', []):
        for t in play.get('tasks', []):
            name = t.get('task', {}).get('name', '')
            if name.startswith('call ') and not name.endswith('(recorded)'):
                res = t.get('hosts', {}).get(CONTAINER)
                if res is not None:
                    results[name] = res
    ordered = []
    for i, c in enumerate(calls):
        label = _label(i, c)
        if label not in results:
            raise AnsibleRunError(f'no result for {label} in the playbook output')
        r = results[label]
        r.setdefault('failed', False)
        r.setdefault('changed', False)
        ordered.append(r)
    return ordered


def run_module(module, args, check_mode=False, diff=False, default_db=DB):
    """Run one module call; return its result dict."""
    return run_modules([call(module, args, check_mode=check_mode, diff=diff)], default_db=default_db)[0]


def wait_for(predicate, timeout=60, interval=0.5, what='condition'):
    """Poll predicate() until true, bounded in time."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as e:  # noqa: BLE001 - the last error is reported on timeout
            last = e
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout}s waiting for {what} (last error: {last})')
