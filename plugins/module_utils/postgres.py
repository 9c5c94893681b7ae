# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers for the collection's PostgreSQL modules (psycopg 3 only).

Every module builds its statements with ``psycopg.sql`` and runs them through :class:`PgSession`, which
records each executed statement (``queries``), commits or - in check mode - rolls back, and knows how to run
statements that cannot run inside a transaction block (``CREATE INDEX CONCURRENTLY``, ``REFRESH ...
CONCURRENTLY``): in check mode those are recorded but never executed.
"""

from __future__ import annotations

import contextlib
import traceback

from ansible.module_utils.basic import missing_required_lib

try:
    import psycopg
    from psycopg import sql
    from psycopg.rows import dict_row
except ImportError:  # pragma: no cover - exercised through ensure_psycopg()
    psycopg = None
    sql = None
    dict_row = None
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

HAS_PSYCOPG = psycopg is not None

SSL_MODES = ['allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full']

# Connection options shared by every module of the collection (documented by the
# hingecraft.enterprise_db.postgres doc fragment). Copy it before extending: dict(postgres_common_argument_spec).
postgres_common_argument_spec = {
    'login_user': {'type': 'str', 'default': 'postgres', 'aliases': ['login']},
    'login_password': {'type': 'str', 'default': '', 'no_log': True},
    'login_host': {'type': 'str', 'default': '', 'aliases': ['host']},
    'login_port': {'type': 'int', 'default': 5432, 'aliases': ['port']},
    'login_unix_socket': {'type': 'str', 'default': '', 'aliases': ['unix_socket']},
    'db': {'type': 'str', 'default': '', 'aliases': ['login_db']},
    'ssl_mode': {'type': 'str', 'default': 'prefer', 'choices': SSL_MODES},
    'ca_cert': {'type': 'str', 'aliases': ['ssl_rootcert']},
    'connect_timeout': {'type': 'int', 'default': 10},
    'session_role': {'type': 'str'},
}


def ensure_psycopg(module):
    """Fail the module (missing_required_lib) when psycopg 3 cannot be imported."""
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib('psycopg (version 3)'), exception=PSYCOPG_IMPORT_ERROR)
    major = int(str(getattr(psycopg, '__version__', '3')).split('.', 1)[0])
    if major < 3:  # pragma: no cover - the psycopg package is version 3 by definition
        module.fail_json(msg=missing_required_lib('psycopg (version 3)'))


def split_qualified(name, default_schema='public'):
    """Split ``schema.name`` into ``(schema, name)``.

    A part in double quotes is taken verbatim (``""`` is an escaped quote), so ``"my.schema"."t"`` ->
    ``('my.schema', 't')``. An unquoted part runs to the next dot and is taken as written (no case folding);
    quote characters inside it are ordinary characters. A name without a schema gets ``default_schema``.
    Raises ValueError for an empty name or more than two parts.
    """
    if isinstance(name, (tuple, list)):
        if len(name) == 2:
            return str(name[0]), str(name[1])
        if len(name) == 1:
            return default_schema, str(name[0])
        raise ValueError(f'expected (schema, name), got {name!r}')
    if not isinstance(name, str) or name == '':
        raise ValueError('empty object name')
    parts = []
    i, n = 0, len(name)
    while True:
        if i < n and name[i] == '"':
            j, buf = i + 1, []
            while True:
                if j >= n:
                    raise ValueError(f'unterminated quoted identifier in {name!r}')
                if name[j] == '"':
                    if j + 1 < n and name[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    j += 1
                    break
                buf.append(name[j])
                j += 1
            part = ''.join(buf)
            if j < n and name[j] != '.':
                # text after a closing quote: not a quoted identifier after all, take the whole rest verbatim
                part, j = name[i:], n
            i = j
        else:
            j = name.find('.', i)
            if j < 0:
                j = n
            part = name[i:j]
            i = j
        if part == '':
            raise ValueError(f'empty part in object name {name!r}')
        parts.append(part)
        if i >= n:
            break
        i += 1  # skip the dot
        if i >= n:
            raise ValueError(f'object name {name!r} ends with a dot')
    if len(parts) == 1:
        return default_schema, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    # More than two parts: with unquoted parts the extra dots most likely belong to the name itself.
    raise ValueError(f'object name {name!r} has more than two dot-separated parts; quote parts that contain dots')


def qualified(name, default_schema='public'):
    """``'schema.table'`` or ``('schema', 'table')`` -> ``sql.Identifier(schema, table)``."""
    schema, obj = split_qualified(name, default_schema)
    return sql.Identifier(schema, obj)


def connect_kwargs(params, application_name='hingecraft.enterprise_db'):
    """Map the common module parameters to psycopg.connect() keyword arguments (pure; unit tested)."""
    kw = {
        'user': params.get('login_user') or None,
        'password': params.get('login_password') or None,
        'host': params.get('login_unix_socket') or params.get('login_host') or None,
        'port': params.get('login_port') or 5432,
        'dbname': params.get('db') or None,
        'sslmode': params.get('ssl_mode') or 'prefer',
        'connect_timeout': params.get('connect_timeout'),
        'application_name': application_name,
    }
    if params.get('ca_cert'):
        kw['sslrootcert'] = params['ca_cert']
    return {k: v for k, v in kw.items() if v is not None}


class PgSession:
    """One connection per module run.

    ``query()`` reads (not recorded); ``execute()`` changes and is recorded in ``queries``; ``finish(changed)``
    commits, or rolls back in check mode; ``autocommit_block()`` wraps statements that cannot run in a
    transaction (CONCURRENTLY) - they are recorded but not executed in check mode. Entering the block commits
    work done so far (outside check mode), because PostgreSQL needs an idle connection for them.
    """

    def __init__(self, module, autocommit=False):
        ensure_psycopg(module)
        self.module = module
        self.check_mode = module.check_mode
        self.queries = []
        self._in_autocommit_block = False
        name = 'hingecraft.enterprise_db.{}'.format(getattr(module, '_name', 'module').split('.')[-1])
        try:
            self.conn = psycopg.connect(**connect_kwargs(module.params, application_name=name))
        except psycopg.Error as e:
            module.fail_json(msg=f'unable to connect to the database: {to_text_error(e)}')
        self.conn.autocommit = bool(autocommit) and not self.check_mode
        self.autocommit = bool(autocommit)
        if module.params.get('session_role'):
            try:
                with self.conn.cursor() as cur:
                    cur.execute(sql.SQL('SET ROLE {}').format(sql.Identifier(module.params['session_role'])))
            except psycopg.Error as e:
                self._fail('unable to set session_role {!r}: {}'.format(module.params['session_role'], to_text_error(e)))

    @property
    def server_version(self):
        """Server version as an integer, e.g. 170012 for 17.12."""
        return self.conn.info.server_version

    def render(self, stmt, params=None):
        """The statement as text, with parameters bound client-side for the record."""
        if isinstance(stmt, str):
            stmt = sql.SQL(stmt)
        if params is None:
            return stmt.as_string(self.conn)
        with psycopg.ClientCursor(self.conn) as cur:
            return cur.mogrify(stmt, params)

    def query(self, stmt, params=None):
        """Run a read and return its rows as a list of dicts (never recorded)."""
        if isinstance(stmt, str):
            stmt = sql.SQL(stmt)
        try:
            with self.conn.cursor(row_factory=dict_row) as cur:
                cur.execute(stmt, params)
                return cur.fetchall() if cur.description else []
        except psycopg.Error as e:
            self._fail(f'query failed: {self._safe_render(stmt, params)}: {to_text_error(e)}')

    def try_query(self, stmt, params=None):
        """Run a read inside a savepoint; return ``(rows, None)`` or ``(None, error text)`` when PostgreSQL
        rejects it (the transaction stays usable). For reads whose failure is an answer, e.g. EXPLAIN of a
        statement text taken from pg_stat_statements."""
        if isinstance(stmt, str):
            stmt = sql.SQL(stmt)
        if self.conn.autocommit:
            raise RuntimeError('try_query() needs a transaction (PgSession(autocommit=False))')
        with self.conn.cursor() as cur:
            cur.execute('SAVEPOINT hc_try')
        try:
            with self.conn.cursor(row_factory=dict_row) as cur:
                cur.execute(stmt, params)
                rows = cur.fetchall() if cur.description else []
        except psycopg.Error as e:
            with self.conn.cursor() as cur:
                cur.execute('ROLLBACK TO SAVEPOINT hc_try')
                cur.execute('RELEASE SAVEPOINT hc_try')
            return None, to_text_error(e)
        with self.conn.cursor() as cur:
            cur.execute('RELEASE SAVEPOINT hc_try')
        return rows, None

    def execute(self, stmt, params=None, redact=False, label=None):
        """Run a change and record it in ``queries`` (``redact=True`` records it without parameter values,
        ``label`` records that text instead of the statement, e.g. for a whole migration file).

        Inside ``autocommit_block()`` in check mode the statement is recorded but not executed.
        """
        if isinstance(stmt, str):
            stmt = sql.SQL(stmt)
        if label is not None:
            text = label
        else:
            text = stmt.as_string(self.conn) if (redact or params is None) else self.render(stmt, params)
        self.queries.append(text)
        if self._in_autocommit_block and self.check_mode:
            return None
        try:
            with self.conn.cursor(row_factory=dict_row) as cur:
                cur.execute(stmt, params)
                return cur.fetchall() if cur.description else None
        except psycopg.Error as e:
            self._fail(f'statement failed: {text if not redact else stmt.as_string(self.conn)}: {to_text_error(e)}')

    @contextlib.contextmanager
    def autocommit_block(self):
        """Run the enclosed execute() calls outside a transaction (not at all in check mode)."""
        if self._in_autocommit_block:
            yield self
            return
        previous = self.conn.autocommit
        if not self.check_mode and not previous:
            self.conn.commit()
            self.conn.autocommit = True
        self._in_autocommit_block = True
        try:
            yield self
        finally:
            self._in_autocommit_block = False
            if not self.check_mode and not previous and not self.conn.closed:
                self.conn.autocommit = False

    @contextlib.contextmanager
    def probe(self):
        """A savepoint that is always rolled back: build throw-away objects (a temp table, an index on it, a
        temp view) to let PostgreSQL canonicalise a desired definition, then compare it with the catalog.
        Statements inside go through query() and are not recorded."""
        if self.conn.autocommit:
            raise RuntimeError('probe() needs a transaction (PgSession(autocommit=False))')
        with self.conn.cursor() as cur:
            cur.execute('SAVEPOINT hc_probe')
        try:
            yield self
        finally:
            if not self.conn.closed:
                with self.conn.cursor() as cur:
                    cur.execute('ROLLBACK TO SAVEPOINT hc_probe')
                    cur.execute('RELEASE SAVEPOINT hc_probe')

    def finish(self, changed=True):
        """Commit (roll back in check mode or when nothing changed)."""
        if self.conn.closed:
            return
        if self.check_mode or not changed:
            self.conn.rollback()
        else:
            self.conn.commit()

    def close(self):
        if not self.conn.closed:
            self.conn.close()

    def fail(self, msg, **kwargs):
        """Roll back, close and fail the module, returning the statements recorded so far."""
        self._fail(msg, **kwargs)

    def _fail(self, msg, **kwargs):
        with contextlib.suppress(Exception):
            self.conn.rollback()
        with contextlib.suppress(Exception):
            self.conn.close()
        kwargs.setdefault('queries', self.queries)
        self.module.fail_json(msg=msg, **kwargs)

    def _safe_render(self, stmt, params):
        try:
            return self.render(stmt, params)
        except (psycopg.Error, TypeError, ValueError):
            return repr(stmt)

    # Catalog helpers shared by the modules --------------------------------------------------------------

    def relation(self, schema, name):
        """pg_class row (oid, relkind, relispartition) of schema.name, or None."""
        rows = self.query(
            'SELECT c.oid, c.relkind, c.relispartition FROM pg_catalog.pg_class c '
            'JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s',
            (schema, name))
        return rows[0] if rows else None

    def columns(self, schema, table):
        """Ordered list of {name, type, not_null, generated} for a table's live columns."""
        return self.query(
            'SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, '
            'a.attnotnull AS not_null, a.attgenerated AS generated FROM pg_catalog.pg_attribute a '
            'JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace '
            'WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum',
            (schema, table))

    def extension_installed(self, name):
        return bool(self.query('SELECT 1 FROM pg_catalog.pg_extension WHERE extname = %s', (name,)))

    def extension_schema(self, name):
        """Schema an installed extension lives in, or None when it is not installed."""
        rows = self.query('SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n '
                          'ON n.oid = e.extnamespace WHERE e.extname = %s', (name,))
        return rows[0]['nspname'] if rows else None

    def extension_available(self, name):
        return bool(self.query('SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = %s', (name,)))


def to_text_error(exc):
    """A one-line message for a psycopg error (primary message + detail/hint when present)."""
    diag = getattr(exc, 'diag', None)
    msg = str(exc).strip()
    if diag is not None:
        extra = [x for x in (getattr(diag, 'message_detail', None), getattr(diag, 'message_hint', None)) if x]
        if extra and not all(x in msg for x in extra):
            msg = '{} ({})'.format(msg.splitlines()[0], '; '.join(extra))
    return msg
