# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import (
    connect_kwargs,
    postgres_common_argument_spec,
    qualified,
    split_qualified,
)
from psycopg import sql


@pytest.mark.parametrize('name, expected', [
    ('t', ('public', 't')),
    ('s.t', ('s', 't')),
    ('"My.Schema"."T"', ('My.Schema', 'T')),
    ('"a""b".c', ('a"b', 'c')),
    ('Members', ('public', 'Members')),
    ('x"; DROP TABLE y; --', ('public', 'x"; DROP TABLE y; --')),
    ('s.x"; DROP TABLE y; --', ('s', 'x"; DROP TABLE y; --')),
    (('s', 't'), ('s', 't')),
])
def test_split_qualified(name, expected):
    assert split_qualified(name) == expected


@pytest.mark.parametrize('name', ['', 'a.b.c', 'a.', '.a', '"unterminated', 'a..b'])
def test_split_qualified_rejects(name):
    with pytest.raises(ValueError):
        split_qualified(name)


def test_split_qualified_default_schema():
    assert split_qualified('t', default_schema='app') == ('app', 't')


def test_qualified_returns_identifier():
    ident = qualified('s.t')
    assert isinstance(ident, sql.Identifier)
    assert ident == sql.Identifier('s', 't')


def test_argument_spec_contract():
    spec = postgres_common_argument_spec
    assert spec['login_password']['no_log'] is True
    assert spec['login_port']['default'] == 5432
    assert 'login_db' in spec['db']['aliases']
    assert set(spec['ssl_mode']['choices']) == {'allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full'}
    for key in ('login_user', 'login_host', 'login_unix_socket', 'ca_cert', 'connect_timeout', 'session_role'):
        assert key in spec


def test_connect_kwargs_socket_wins_and_empty_values_dropped():
    kw = connect_kwargs({'login_user': 'postgres', 'login_password': '', 'login_host': 'db1',
                         'login_unix_socket': '/var/run/postgresql', 'login_port': 5433, 'db': 'app',
                         'ssl_mode': 'verify-full', 'ca_cert': '/ca.crt', 'connect_timeout': 5})
    assert kw['host'] == '/var/run/postgresql'
    assert kw['port'] == 5433
    assert kw['dbname'] == 'app'
    assert kw['sslrootcert'] == '/ca.crt'
    assert 'password' not in kw
