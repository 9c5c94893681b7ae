# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_migrate
short_description: Apply or roll back versioned SQL migrations with checksums, a history table and an advisory lock
version_added: 0.1.0
description:
  - Reads a directory of versioned migration files on the managed node - C(V<version>__<name>.sql) (up) and
    optionally C(U<version>__<name>.sql) (down) - where versions are positive integers without gaps.
  - Records every applied file with its SHA-256 checksum in a history table, and refuses to continue when an applied
    file was changed afterwards, when a version is missing (a gap), or when a file would run out of order.
  - Migrates up to O(target_version) (default - the newest file), or rolls back to it by running the down files of
    the newer versions in descending order.
  - Each file runs in its own transaction together with its history row. A session-level C(pg_advisory_lock) keeps
    two runs from racing; the second one waits up to O(lock_timeout) seconds and then re-reads the history.
  - All input is validated before anything is changed.
author:
  - HingeCraft platform engineering (@hingecraft)
extends_documentation_fragment:
  - hingecraft.enterprise_db.postgres
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - In check mode nothing is executed; RV(pending) and RV(queries) list the files that would run.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
options:
  path:
    description:
      - Directory on the managed node that holds the migration files. Other files (not C(*.sql)) are ignored.
      - Exactly one of O(path) and O(files) is required.
    type: path
  files:
    description:
      - The migration files given as data - file name (C(V<version>__<name>.sql) or C(U<version>__<name>.sql)) to
        its SQL text - instead of a directory on the managed node, for example read on the controller with the
        C(file) lookup. Nothing is written to the managed node, so a run against a new primary after a failover
        changes nothing.
      - The checksum is taken of the UTF-8 text, as for a file with the same bytes.
    type: dict
  target_version:
    description:
      - Version to migrate or roll back to. V(latest) (default) means the newest C(V) file.
      - A version lower than the current one rolls back; every newer applied version then needs its C(U) file.
    type: str
    default: latest
  baseline_version:
    description:
      - For a database that already holds the schema up to this version - when the history is empty, record a
        baseline at this version and never run the files up to it.
      - Ignored once the history has entries.
    type: int
  history_table:
    description:
      - The history table (C(schema.table)); created when missing. Its schema must exist.
    type: str
    default: public.schema_history
  lock_timeout:
    description:
      - Seconds to wait for the advisory lock held by another run.
    type: int
    default: 60
notes:
  - A file is sent to the server as one multi-statement string inside a transaction, so statements that cannot run
    in a transaction block (C(CREATE INDEX CONCURRENTLY), C(VACUUM)) cannot be used in migrations.
  - The advisory lock key is derived from the history table name, so independent histories do not block each other.
seealso:
  - name: Advisory locks
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/explicit-locking.html#ADVISORY-LOCKS
  - name: Advisory lock functions
    description: PostgreSQL manual.
    link: https://www.postgresql.org/docs/17/functions-admin.html#FUNCTIONS-ADVISORY-LOCKS
'''

EXAMPLES = r'''
- name: Migrate the application schema to the newest version
  hingecraft.enterprise_db.pg_migrate:
    db: hingecraft
    path: /opt/hingecraft/migrations

- name: Adopt an existing database that already has versions 1-3
  hingecraft.enterprise_db.pg_migrate:
    db: legacy
    path: /opt/hingecraft/migrations
    baseline_version: 3

- name: Migrations kept on the controller, nothing copied to the host
  hingecraft.enterprise_db.pg_migrate:
    db: hingecraft
    files: "{{ dict(paths | map('basename') | zip(q('ansible.builtin.file', *paths, rstrip=false))) }}"
  vars:
    paths: "{{ q('ansible.builtin.fileglob', 'migrations/*.sql') | sort }}"

- name: Roll back to version 2 (runs U4, then U3)
  hingecraft.enterprise_db.pg_migrate:
    db: hingecraft
    path: /opt/hingecraft/migrations
    target_version: "2"
'''

RETURN = r'''
changed:
  description: Whether a migration ran (or would run in check mode).
  returned: always
  type: bool
queries:
  description: The files executed (or to be executed in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [V2__add_clubs.sql]
applied:
  description: Versions migrated up in this run (in check mode, that would be).
  returned: always
  type: list
  elements: int
rolled_back:
  description: Versions rolled back in this run (in check mode, that would be).
  returned: always
  type: list
  elements: int
pending:
  description: Versions that would run (in check mode) or remain above the target.
  returned: always
  type: list
  elements: int
version:
  description: The current version after the run (in check mode, as it would be); 0 for an empty history.
  returned: always
  type: int
diff:
  description: C({version}) before and after, in diff mode.
  returned: when diff mode is on
  type: dict
'''

import hashlib
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import (
    PgSession,
    ensure_psycopg,
    postgres_common_argument_spec,
    split_qualified,
    sql,
)

FILE_RE = re.compile(r'^([VU])(\d+)__([A-Za-z0-9][A-Za-z0-9_.\-]*)\.sql$')


class MigrationError(Exception):
    pass


def scan(path):
    """Read the directory: {'V': {version: {file, name, checksum, text}}, 'U': {...}}. Raises MigrationError."""
    if not os.path.isdir(path):
        raise MigrationError(f'migration directory {path} does not exist')
    entries = []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if entry.endswith('.sql') and os.path.isfile(full):
            with open(full, 'rb') as f:
                entries.append((entry, f.read()))
    return collect(entries)


def scan_given(files):
    """The files option: {name: text}. Every name must be a migration file name; texts are encoded as UTF-8."""
    entries = []
    for name in sorted(files):
        text = files[name]
        if not isinstance(text, str):
            raise MigrationError(f'files: the value of {name} must be the SQL text, got {type(text).__name__}')
        if os.path.basename(name) != name or not name.endswith('.sql'):
            raise MigrationError(f'files: {name!r} is not a file name ending in .sql')
        entries.append((name, text.encode('utf-8')))
    return collect(entries)


def collect(entries):
    """(file name, bytes) pairs -> {'V': {...}, 'U': {...}}, validated. Raises MigrationError."""
    found = {'V': {}, 'U': {}}
    for entry, data in entries:
        m = FILE_RE.match(entry)
        if not m:
            raise MigrationError(f'file name {entry} does not match V<version>__<name>.sql or U<version>__<name>.sql')
        kind, version, name = m.group(1), int(m.group(2)), m.group(3)
        if version < 1:
            raise MigrationError(f'{entry}: versions start at 1')
        if version in found[kind]:
            raise MigrationError(f'duplicate version {kind}{version}: {found[kind][version]["file"]} and {entry}')
        try:
            text = data.decode('utf-8')
        except UnicodeDecodeError as e:
            raise MigrationError(f'{entry} is not UTF-8: {e}') from e
        found[kind][version] = {'file': entry, 'name': name, 'checksum': hashlib.sha256(data).hexdigest(),
                                'text': text}
    for version, down in found['U'].items():
        if version not in found['V']:
            raise MigrationError(f'down file {down["file"]} has no V{version} file')
    return found


def check_sequence(versions, baseline):
    """Versions above the baseline must be consecutive from baseline + 1. Raises MigrationError naming the gap."""
    expected = baseline + 1
    for v in sorted(x for x in versions if x > baseline):
        if v != expected:
            if expected == v - 1:
                raise MigrationError(f'version gap: V{expected} is missing before V{v}')
            raise MigrationError(f'version gap: V{expected} to V{v - 1} are missing before V{v}')
        expected += 1


def plan(files, history, target, baseline_param):
    """Pure planning: returns dict(baseline, current, up, down). Raises MigrationError before any change."""
    applied = {h['version']: h for h in history if h['kind'] == 'migrate'}
    baselines = [h['version'] for h in history if h['kind'] == 'baseline']
    baseline = max(baselines) if baselines else (baseline_param if (baseline_param and not history) else 0)
    if baseline < 0:
        raise MigrationError('baseline_version must be positive')
    versions = sorted(files['V'])
    check_sequence(versions, baseline)
    for v, h in sorted(applied.items()):
        f = files['V'].get(v)
        if f is None:
            raise MigrationError(f'applied version V{v} ({h["description"]}) has no file in the directory')
        if f['checksum'] != h['checksum']:
            raise MigrationError(f'checksum of applied migration {f["file"]} changed: recorded {h["checksum"]}, '
                                 f'file has {f["checksum"]}; never edit an applied migration, add a new version')
    current = max(list(applied) + [baseline]) if (applied or baseline) else 0
    missing = [v for v in versions if baseline < v < current and v not in applied]
    if missing:
        raise MigrationError('versions ' + ', '.join(f'V{v}' for v in missing)
                             + f' are not applied but older than the current V{current} (out of order)')
    newest = max(versions) if versions else baseline
    if target in (None, '', 'latest'):
        goal = max(newest, current)
    else:
        if not re.match(r'^\d+$', str(target)):
            raise MigrationError(f'target_version must be a non-negative integer or latest, got {target!r}')
        goal = int(target)
        if goal > newest:
            raise MigrationError(f'target_version {goal} has no migration file (newest is V{newest})')
        if goal < baseline:
            raise MigrationError(f'target_version {goal} is below the baseline V{baseline}')
    up = [v for v in versions if current < v <= goal]
    down = sorted((v for v in applied if v > goal), reverse=True)
    no_down = [v for v in down if v not in files['U']]
    if no_down:
        raise MigrationError(f'cannot roll back to V{goal}: no down file for '
                             + ', '.join(f'V{v} ({files["V"][v]["file"]})' for v in no_down))
    return {'baseline': baseline, 'current': current, 'goal': goal, 'up': up, 'down': down}


def read_history(s, schema, table):
    if s.relation(schema, table) is None:
        return None
    return s.query(sql.SQL('SELECT version, description, checksum, kind FROM {} ORDER BY version').format(
        sql.Identifier(schema, table)))


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        path={'type': 'path'},
        files={'type': 'dict'},
        target_version={'type': 'str', 'default': 'latest'},
        baseline_version={'type': 'int'},
        history_table={'type': 'str', 'default': 'public.schema_history'},
        lock_timeout={'type': 'int', 'default': 60},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('path', 'files')], required_one_of=[('path', 'files')])
    ensure_psycopg(module)
    p = module.params
    try:
        schema, table = split_qualified(p['history_table'])
    except ValueError as e:
        module.fail_json(msg=f'history_table: {e}')
    if p['target_version'] not in (None, '', 'latest') and not re.match(r'^\d+$', p['target_version']):
        module.fail_json(msg=f"target_version must be a non-negative integer or latest, got {p['target_version']!r}")
    try:
        files = scan(p['path']) if p['path'] else scan_given(p['files'])
    except MigrationError as e:
        module.fail_json(msg=str(e))

    s = PgSession(module)
    if not s.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s', (schema,)):
        s.fail(f'schema {schema} of history_table does not exist')
    lock_name = f'hingecraft.pg_migrate:{schema}.{table}'
    # Wait (bounded) for a concurrent run; the lock is held for the whole session.
    s.query("SELECT pg_catalog.set_config('lock_timeout', %s, false)", (f'{int(p["lock_timeout"]) * 1000}',))
    s.query('SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext(%s))', (lock_name,))
    s.query('RESET lock_timeout')
    s.conn.commit()

    history = read_history(s, schema, table) or []
    try:
        steps = plan(files, history, p['target_version'], p['baseline_version'])
    except MigrationError as e:
        s.fail(str(e))
    before = {'version': steps['current'] if history else 0}
    labels = [files['U'][v]['file'] for v in steps['down']] + [files['V'][v]['file'] for v in steps['up']]
    needs_baseline = not history and bool(p['baseline_version'])
    changed = bool(labels) or needs_baseline
    hist = sql.Identifier(schema, table)

    if module.check_mode:
        s.queries.extend(labels)
    elif changed:
        if s.relation(schema, table) is None:
            s.execute(sql.SQL(
                'CREATE TABLE {} (version integer PRIMARY KEY, description text NOT NULL, script text NOT NULL, '
                'checksum text NOT NULL, kind text NOT NULL CHECK (kind IN ({}, {})), '
                'installed_by text NOT NULL DEFAULT current_user, '
                'installed_on timestamptz NOT NULL DEFAULT now(), execution_ms integer NOT NULL DEFAULT 0)').format(
                    hist, sql.Literal('migrate'), sql.Literal('baseline')))
        if needs_baseline:
            s.execute(sql.SQL('INSERT INTO {} (version, description, script, checksum, kind) '
                              'VALUES (%s, %s, %s, %s, %s)').format(hist),
                      (p['baseline_version'], '<< baseline >>', '', '', 'baseline'))
        s.conn.commit()
        for v in steps['down']:
            f = files['U'][v]
            started = time.monotonic()
            s.execute(sql.SQL(f['text']), label=f['file'])
            s.query(sql.SQL('DELETE FROM {} WHERE version = %s').format(hist), (v,))
            s.conn.commit()
            f['ms'] = int((time.monotonic() - started) * 1000)
        for v in steps['up']:
            f = files['V'][v]
            started = time.monotonic()
            s.execute(sql.SQL(f['text']), label=f['file'])
            s.query(sql.SQL('INSERT INTO {} (version, description, script, checksum, kind, execution_ms) '
                            'VALUES (%s, %s, %s, %s, %s, %s)').format(hist),
                    (v, f['name'].replace('_', ' '), f['file'], f['checksum'], 'migrate',
                     int((time.monotonic() - started) * 1000)))
            s.conn.commit()
    s.query('SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext(%s))', (lock_name,))
    s.finish(False)
    s.close()
    after = {'version': steps['goal'] if labels else steps['current']}
    result = {'changed': changed, 'queries': s.queries, 'applied': steps['up'], 'rolled_back': steps['down'],
              'pending': steps['up'] if module.check_mode else [], 'version': after['version']}
    if module._diff:
        result['diff'] = {'before': before, 'after': after}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
