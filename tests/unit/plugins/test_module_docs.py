# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module of the collection renders with ansible-doc, and its documented options match its argument_spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, 'plugins', 'modules'))
                 if f.endswith('.py') and not f.startswith('_'))
ANSIBLE_DOC = os.path.join(os.path.dirname(sys.executable), 'ansible-doc')


def uses_common_spec(module):
    with open(os.path.join(ROOT, 'plugins', 'modules', f'{module}.py'), encoding='utf-8') as f:
        return 'postgres_common_argument_spec' in f.read()


_CACHE = {}


def doc_of(module):
    """ansible-doc --json for one module (one call per module, so a broken module is named by its own test)."""
    if module not in _CACHE:
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.collections'), ANSIBLE_NOCOLOR='1')
        name = f'hingecraft.enterprise_db.{module}'
        p = subprocess.run([ANSIBLE_DOC, '-t', 'module', '--json', name], capture_output=True, text=True, env=env,
                           timeout=120, check=False)
        assert p.returncode == 0, p.stderr
        _CACHE[module] = json.loads(p.stdout)[name]
    return _CACHE[module]


@pytest.mark.parametrize('module', MODULES)
def test_ansible_doc_renders(module):
    doc = doc_of(module)
    assert doc['doc']['short_description']
    assert doc['examples'].strip()
    assert doc['return']
    assert doc['doc']['options']


@pytest.mark.parametrize('module', [m for m in MODULES if uses_common_spec(m)])
def test_connection_options_come_from_the_fragment(module):
    options = doc_of(module)['doc']['options']
    for key in ('login_user', 'login_password', 'login_host', 'login_port', 'login_unix_socket', 'db', 'ssl_mode',
                'ca_cert', 'connect_timeout', 'session_role'):
        assert key in options, f'{module} lacks the connection option {key}'
