# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PgSession itself, against a fake psycopg connection that records what reaches it.

What a module may rely on: reads are not recorded and changes are, in the order run; check mode rolls back and
never runs an autocommit (CONCURRENTLY) statement; probe() always rolls its savepoint back; every failure rolls
back, closes and fails the module with the statements recorded so far.
"""

from __future__ import annotations

import psycopg
import pytest
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils import postgres
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import PgSession, to_text_error
from psycopg import sql


class FailJson(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs.get('msg'))
        self.kwargs = kwargs


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.check_mode = check_mode
        self._name = 'hingecraft.enterprise_db.pg_example'
        self.params = {'login_user': 'postgres', 'login_unix_socket': '/run/postgresql', 'db': 'app',
                       'login_port': 5432, 'ssl_mode': 'prefer', 'connect_timeout': 10, **params}

    def fail_json(self, **kwargs):
        raise FailJson(kwargs)


class FakeCursor:
    def __init__(self, conn, row_factory=None):
        self.conn = conn
        self.row_factory = row_factory
        self.description = None
        self._rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, stmt, params=None):
        text = stmt if isinstance(stmt, str) else stmt.as_string(self.conn)
        self.conn.log.append(('execute', text, params, self.conn.autocommit))
        error = self.conn.errors.get(text)
        if error is not None:
            raise error
        rows = self.conn.results.get(text)
        self.description = [('column',)] if rows is not None else None
        self._rows = rows or []

    def fetchall(self):
        return list(self._rows)


class FakeInfo:
    server_version = 170006


class FakeConnection:
    """Enough of psycopg.Connection for PgSession; psycopg.sql renders against it without a server."""

    adapters = psycopg.adapters
    connection = None
    info = FakeInfo()

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.autocommit = False
        self.closed = False
        self.log = []
        self.results = {}
        self.errors = {}

    def cursor(self, row_factory=None):
        return FakeCursor(self, row_factory)

    def commit(self):
        self.log.append(('commit',))

    def rollback(self):
        self.log.append(('rollback',))

    def close(self):
        self.closed = True
        self.log.append(('close',))

    def executed(self):
        return [entry[1] for entry in self.log if entry[0] == 'execute']

    def calls(self):
        return [entry[0] for entry in self.log]


class FakeClientCursor:
    """psycopg.ClientCursor stand-in: binds the parameters into the text the way the record shows them."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def mogrify(self, stmt, params):
        text = stmt.as_string(self.conn)
        return text.replace('%s', '{}').format(*(sql.Literal(p).as_string(self.conn) for p in params))


@pytest.fixture
def connect(monkeypatch):
    """Replace psycopg.connect; returns the list of connections made (the last one is the session's)."""
    made = []

    def fake_connect(**kwargs):
        conn = FakeConnection(**kwargs)
        made.append(conn)
        return conn

    monkeypatch.setattr(postgres.psycopg, 'connect', fake_connect)
    monkeypatch.setattr(postgres.psycopg, 'ClientCursor', FakeClientCursor)
    return made


def session(connect, check_mode=False, autocommit=False, **params):
    s = PgSession(FakeModule(check_mode=check_mode, **params), autocommit=autocommit)
    return s, connect[-1]


# --- connecting ---------------------------------------------------------------------------------------------

def test_connects_with_the_module_parameters_and_names_the_module(connect):
    s, conn = session(connect, login_password='pw', ca_cert='/ca.crt')
    assert conn.kwargs == {'user': 'postgres', 'password': 'pw', 'host': '/run/postgresql', 'port': 5432,
                           'dbname': 'app', 'sslmode': 'prefer', 'connect_timeout': 10, 'sslrootcert': '/ca.crt',
                           'application_name': 'hingecraft.enterprise_db.pg_example'}
    assert conn.autocommit is False
    assert s.queries == []
    assert s.server_version == 170006


def test_connection_error_fails_the_module(monkeypatch):
    def refuse(**kwargs):
        raise psycopg.OperationalError('connection refused')

    monkeypatch.setattr(postgres.psycopg, 'connect', refuse)
    with pytest.raises(FailJson) as exc:
        PgSession(FakeModule())
    assert exc.value.kwargs['msg'] == 'unable to connect to the database: connection refused'


def test_missing_psycopg_fails_the_module(monkeypatch):
    monkeypatch.setattr(postgres, 'HAS_PSYCOPG', False)
    with pytest.raises(FailJson) as exc:
        PgSession(FakeModule())
    assert 'psycopg (version 3)' in exc.value.kwargs['msg']


def test_session_role_is_set_as_an_identifier(connect):
    s, conn = session(connect, session_role='app"owner')
    assert conn.executed() == ['SET ROLE "app""owner"']
    assert s.queries == []


def test_session_role_error_rolls_back_closes_and_fails(connect, monkeypatch):
    original = FakeConnection.__init__

    def with_error(self, **kwargs):
        original(self, **kwargs)
        self.errors['SET ROLE "nobody"'] = psycopg.errors.InvalidParameterValue('role "nobody" does not exist')

    monkeypatch.setattr(FakeConnection, '__init__', with_error)
    with pytest.raises(FailJson) as exc:
        session(connect, session_role='nobody')
    assert exc.value.kwargs['msg'] == "unable to set session_role 'nobody': role \"nobody\" does not exist"
    assert connect[-1].calls()[-2:] == ['rollback', 'close']


@pytest.mark.parametrize('check_mode, autocommit, expected', [(False, True, True), (True, True, False),
                                                              (False, False, False)])
def test_autocommit_session_only_outside_check_mode(connect, check_mode, autocommit, expected):
    conn = session(connect, check_mode=check_mode, autocommit=autocommit)[1]
    assert conn.autocommit is expected


# --- reads and changes --------------------------------------------------------------------------------------

def test_query_returns_rows_and_is_not_recorded(connect):
    s, conn = session(connect)
    conn.results["SELECT 1 AS one"] = [{'one': 1}]
    assert s.query('SELECT 1 AS one') == [{'one': 1}]
    assert s.query(sql.SQL('SET search_path TO {}').format(sql.Identifier('app'))) == []
    assert s.queries == []
    assert conn.executed() == ['SELECT 1 AS one', 'SET search_path TO "app"']


def test_execute_records_in_order_with_parameters_bound(connect):
    s, conn = session(connect)
    s.execute(sql.SQL('CREATE SCHEMA {}').format(sql.Identifier('app')))
    s.execute('COMMENT ON SCHEMA app IS %s', ("it's ours",))
    assert s.queries == ['CREATE SCHEMA "app"', "COMMENT ON SCHEMA app IS 'it''s ours'"]
    # the server gets the statement and its parameters separately (server-side binding)
    assert conn.log[-1][1:3] == ('COMMENT ON SCHEMA app IS %s', ("it's ours",))


def test_execute_redact_and_label(connect):
    s, conn = session(connect)
    s.execute('ALTER ROLE app PASSWORD %s', ('secret',), redact=True)
    s.execute('CREATE TABLE t (id int)', label='V1__create_t.sql')
    assert s.queries == ['ALTER ROLE app PASSWORD %s', 'V1__create_t.sql']
    assert 'secret' not in ' '.join(s.queries)
    assert conn.executed() == ['ALTER ROLE app PASSWORD %s', 'CREATE TABLE t (id int)']


def test_execute_returns_rows_of_a_statement_that_has_them(connect):
    s, conn = session(connect)
    conn.results['DELETE FROM t RETURNING id'] = [{'id': 7}]
    assert s.execute('DELETE FROM t RETURNING id') == [{'id': 7}]
    assert s.execute('DELETE FROM u') is None


# --- finishing and check mode -------------------------------------------------------------------------------

@pytest.mark.parametrize('check_mode, changed, ending', [(False, True, 'commit'), (False, False, 'rollback'),
                                                         (True, True, 'rollback'), (True, False, 'rollback')])
def test_finish_commits_only_a_real_change(connect, check_mode, changed, ending):
    s, conn = session(connect, check_mode=check_mode)
    s.execute('CREATE TABLE t (id int)')
    s.finish(changed)
    assert conn.calls() == ['execute', ending]


def test_check_mode_runs_changes_in_the_transaction_it_rolls_back(connect):
    s, conn = session(connect, check_mode=True)
    s.execute('CREATE TABLE t (id int)')
    s.finish(True)
    assert s.queries == ['CREATE TABLE t (id int)']
    assert conn.calls() == ['execute', 'rollback']


def test_finish_on_a_closed_connection_does_nothing(connect):
    s, conn = session(connect)
    s.close()
    s.finish(True)
    s.close()
    assert conn.calls() == ['close']


def test_autocommit_block_commits_first_and_restores_the_transaction(connect):
    s, conn = session(connect)
    s.execute('CREATE TABLE t (id int)')
    with s.autocommit_block():
        assert conn.autocommit is True
        s.execute('CREATE INDEX CONCURRENTLY t_id ON t (id)')
        with s.autocommit_block():  # nested: no second commit, still autocommit
            s.execute('REFRESH MATERIALIZED VIEW CONCURRENTLY v')
        assert conn.autocommit is True
    assert conn.autocommit is False
    assert [e[0] if e[0] != 'execute' else (e[1], e[3]) for e in conn.log] == [
        ('CREATE TABLE t (id int)', False), 'commit',
        ('CREATE INDEX CONCURRENTLY t_id ON t (id)', True), ('REFRESH MATERIALIZED VIEW CONCURRENTLY v', True)]
    assert s.queries == ['CREATE TABLE t (id int)', 'CREATE INDEX CONCURRENTLY t_id ON t (id)',
                         'REFRESH MATERIALIZED VIEW CONCURRENTLY v']


def test_autocommit_block_in_check_mode_records_but_runs_nothing(connect):
    s, conn = session(connect, check_mode=True)
    with s.autocommit_block():
        s.execute('CREATE INDEX CONCURRENTLY t_id ON t (id)')
        assert conn.autocommit is False
    s.execute('COMMENT ON INDEX t_id IS NULL')  # after the block, changes run again (and are rolled back)
    s.finish(True)
    assert s.queries == ['CREATE INDEX CONCURRENTLY t_id ON t (id)', 'COMMENT ON INDEX t_id IS NULL']
    assert conn.executed() == ['COMMENT ON INDEX t_id IS NULL']
    assert 'commit' not in conn.calls()


def test_autocommit_block_restores_the_transaction_after_an_exception(connect):
    s, conn = session(connect)
    with pytest.raises(KeyError), s.autocommit_block():
        raise KeyError('boom')
    assert conn.autocommit is False


# --- probe() ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('check_mode', [False, True])
def test_probe_is_a_savepoint_always_rolled_back_and_not_recorded(connect, check_mode):
    s, conn = session(connect, check_mode=check_mode)
    conn.results['SELECT pg_get_indexdef(1)'] = [{'pg_get_indexdef': 'CREATE INDEX ...'}]
    with s.probe():
        s.query('CREATE TEMP TABLE hc_probe_t (LIKE t)')
        assert s.query('SELECT pg_get_indexdef(1)') == [{'pg_get_indexdef': 'CREATE INDEX ...'}]
    assert conn.executed() == ['SAVEPOINT hc_probe', 'CREATE TEMP TABLE hc_probe_t (LIKE t)',
                               'SELECT pg_get_indexdef(1)', 'ROLLBACK TO SAVEPOINT hc_probe',
                               'RELEASE SAVEPOINT hc_probe']
    assert s.queries == []
    assert 'commit' not in conn.calls()


def test_probe_rolls_back_when_its_body_raises(connect):
    s, conn = session(connect)
    with pytest.raises(ValueError), s.probe():
        raise ValueError('not comparable')
    assert conn.executed()[-2:] == ['ROLLBACK TO SAVEPOINT hc_probe', 'RELEASE SAVEPOINT hc_probe']


def test_probe_needs_a_transaction(connect):
    s, conn = session(connect, autocommit=True)
    with pytest.raises(RuntimeError, match='needs a transaction'), s.probe():
        pass  # pragma: no cover - never entered
    assert conn.executed() == []


def test_probe_after_the_connection_closed_skips_the_rollback(connect):
    s, conn = session(connect)
    with s.probe():
        s.close()
    assert conn.executed() == ['SAVEPOINT hc_probe']


# --- try_query() --------------------------------------------------------------------------------------------

def test_try_query_returns_rows_inside_a_released_savepoint(connect):
    s, conn = session(connect)
    conn.results['EXPLAIN SELECT 1'] = [{'QUERY PLAN': 'Result'}]
    assert s.try_query('EXPLAIN SELECT 1') == ([{'QUERY PLAN': 'Result'}], None)
    assert conn.executed() == ['SAVEPOINT hc_try', 'EXPLAIN SELECT 1', 'RELEASE SAVEPOINT hc_try']
    assert s.queries == []


def test_try_query_turns_an_error_into_text_and_keeps_the_transaction(connect):
    s, conn = session(connect)
    conn.errors['EXPLAIN VACUUM'] = psycopg.errors.SyntaxError('syntax error at or near "VACUUM"')
    assert s.try_query('EXPLAIN VACUUM') == (None, 'syntax error at or near "VACUUM"')
    assert conn.executed()[-2:] == ['ROLLBACK TO SAVEPOINT hc_try', 'RELEASE SAVEPOINT hc_try']
    assert 'close' not in conn.calls()


def test_try_query_needs_a_transaction(connect):
    s = session(connect, autocommit=True)[0]
    with pytest.raises(RuntimeError, match='needs a transaction'):
        s.try_query('SELECT 1')


# --- failures -----------------------------------------------------------------------------------------------

def test_failed_statement_rolls_back_closes_and_returns_the_queries_so_far(connect):
    s, conn = session(connect)
    conn.errors['CREATE TABLE t (id int)'] = psycopg.errors.DuplicateTable('relation "t" already exists')
    s.execute('CREATE SCHEMA app')
    with pytest.raises(FailJson) as exc:
        s.execute('CREATE TABLE t (id int)')
    assert exc.value.kwargs == {'msg': 'statement failed: CREATE TABLE t (id int): relation "t" already exists',
                                'queries': ['CREATE SCHEMA app', 'CREATE TABLE t (id int)']}
    assert conn.calls()[-2:] == ['rollback', 'close']
    assert 'commit' not in conn.calls()


def test_failed_redacted_statement_keeps_the_values_out_of_the_message(connect):
    s, conn = session(connect)
    conn.errors['ALTER ROLE app PASSWORD %s'] = psycopg.errors.InsufficientPrivilege('permission denied')
    with pytest.raises(FailJson) as exc:
        s.execute('ALTER ROLE app PASSWORD %s', ('secret',), redact=True)
    assert 'secret' not in repr(exc.value.kwargs)
    assert exc.value.kwargs['msg'] == 'statement failed: ALTER ROLE app PASSWORD %s: permission denied'


def test_failed_query_names_the_statement_with_its_values(connect):
    s, conn = session(connect)
    conn.errors['SELECT * FROM t WHERE id = %s'] = psycopg.errors.UndefinedTable('relation "t" does not exist')
    with pytest.raises(FailJson) as exc:
        s.query('SELECT * FROM t WHERE id = %s', (3,))
    assert exc.value.kwargs['msg'] == 'query failed: SELECT * FROM t WHERE id = 3: relation "t" does not exist'
    assert exc.value.kwargs['queries'] == []
    assert conn.calls()[-2:] == ['rollback', 'close']


def test_fail_returns_the_queries_unless_given(connect):
    s = session(connect)[0]
    s.execute('CREATE SCHEMA app')
    with pytest.raises(FailJson) as exc:
        s.fail('spec does not match', diff={'before': 1})
    assert exc.value.kwargs == {'msg': 'spec does not match', 'diff': {'before': 1}, 'queries': ['CREATE SCHEMA app']}
    s2 = session(connect)[0]
    with pytest.raises(FailJson) as exc:
        s2.fail('custom', queries=['x'])
    assert exc.value.kwargs['queries'] == ['x']


def test_fail_still_fails_when_rollback_and_close_raise(connect):
    s, conn = session(connect)

    def broken():
        raise psycopg.OperationalError('server closed the connection')

    conn.rollback = broken
    conn.close = broken
    with pytest.raises(FailJson) as exc:
        s.fail('lost the server')
    assert exc.value.kwargs['msg'] == 'lost the server'


# --- error text ---------------------------------------------------------------------------------------------

class FakeDiag:
    def __init__(self, detail=None, hint=None):
        self.message_detail = detail
        self.message_hint = hint


class ErrorWithDiag(Exception):
    def __init__(self, text, diag):
        super().__init__(text)
        self.diag = diag


@pytest.mark.parametrize('text, diag, expected', [
    ('plain', None, 'plain'),
    ('first line\nsecond', FakeDiag('the detail', 'the hint'), 'first line (the detail; the hint)'),
    ('says it all: the detail', FakeDiag('the detail'), 'says it all: the detail'),
    ('  padded  ', FakeDiag(), 'padded'),
])
def test_to_text_error(text, diag, expected):
    assert to_text_error(ErrorWithDiag(text, diag) if diag is not None else Exception(text)) == expected
