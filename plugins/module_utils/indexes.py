# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Index statements and catalog reads shared by pg_index and pg_index_advisor (one code path for CREATE INDEX).

``create_statement()`` builds CREATE INDEX from pg_index's parameters, ``run_index_statement()`` runs it with
or without CONCURRENTLY (outside a transaction block for the former, so only reported in check mode),
``find_index()``/``signature()`` read an index back from the catalog in a comparable form.
"""

from __future__ import annotations

from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import split_qualified, sql

SIGNATURE_QUERY = '''
SELECT am.amname AS method, i.indisunique AS unique, i.indisvalid AS valid, i.indnkeyatts AS nkey,
       i.indnatts AS natts, pg_catalog.pg_get_indexdef(i.indexrelid) AS definition,
       pg_catalog.pg_get_expr(i.indpred, i.indrelid, true) AS "where",
       coalesce(c.reloptions, '{}') AS options,
       ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnatts) AS k
             ORDER BY k) AS cols,
       ARRAY(SELECT CASE WHEN oc.opcdefault THEN '' ELSE oc.opcname END
             FROM unnest(i.indclass) WITH ORDINALITY AS u(oid, k) JOIN pg_catalog.pg_opclass oc ON oc.oid = u.oid
             ORDER BY u.k) AS opclasses,
       ARRAY(SELECT u.o FROM unnest(i.indoption) WITH ORDINALITY AS u(o, k) ORDER BY u.k) AS options_bits,
       i.indrelid::regclass::text AS table_name,
       (SELECT t.relkind FROM pg_catalog.pg_class t WHERE t.oid = i.indrelid) AS table_kind,
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co WHERE co.conindid = i.indexrelid) AS backs_constraint
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE i.indexrelid = %s
'''


def normalise_column_spec(item):
    """One entry of ``columns`` -> dict(name|expression, opclass, order, nulls). Raises ValueError."""
    if isinstance(item, str):
        if not item:
            raise ValueError('empty column name in columns')
        return {'name': item, 'expression': None, 'opclass': None, 'order': None, 'nulls': None}
    if not isinstance(item, dict):
        raise TypeError(f'columns entries must be strings or dictionaries, got {item!r}')
    unknown = set(item) - {'name', 'expression', 'opclass', 'order', 'nulls'}
    if unknown:
        raise ValueError('unknown keys in columns entry {!r}: {}'.format(item, ', '.join(sorted(unknown))))
    if bool(item.get('name')) == bool(item.get('expression')):
        raise ValueError(f'a columns entry needs exactly one of name or expression: {item!r}')
    order = item.get('order')
    if order is not None and str(order).lower() not in ('asc', 'desc'):
        raise ValueError(f'columns order must be asc or desc, got {order!r}')
    nulls = item.get('nulls')
    if nulls is not None and str(nulls).lower() not in ('first', 'last'):
        raise ValueError(f'columns nulls must be first or last, got {nulls!r}')
    return {'name': item.get('name'), 'expression': item.get('expression'), 'opclass': item.get('opclass'),
            'order': str(order).lower() if order else None, 'nulls': str(nulls).lower() if nulls else None}


def column_sql(spec):
    parts = [sql.Identifier(spec['name']) if spec['name'] else sql.SQL('({})').format(sql.SQL(spec['expression']))]
    if spec['opclass']:
        parts.append(sql.Identifier(*split_qualified(spec['opclass'], default_schema=None))
                     if '.' in spec['opclass'] else sql.Identifier(spec['opclass']))
    if spec['order']:
        parts.append(sql.SQL(spec['order'].upper()))
    if spec['nulls']:
        parts.append(sql.SQL('NULLS ' + spec['nulls'].upper()))
    return sql.SQL(' ').join(parts)


def create_statement(index_name, schema, table, p, concurrent):
    """CREATE INDEX statement for the module parameters p (index name unqualified: it goes to the table schema)."""
    stmt = [sql.SQL('CREATE UNIQUE INDEX' if p['unique'] else 'CREATE INDEX')]
    if concurrent:
        stmt.append(sql.SQL('CONCURRENTLY'))
    stmt.append(sql.SQL('{} ON {} USING {} ({})').format(
        sql.Identifier(index_name), sql.Identifier(schema, table) if schema else sql.Identifier(table),
        sql.Identifier(p['method']), sql.SQL(', ').join(column_sql(c) for c in p['_columns'])))
    if p['include']:
        stmt.append(sql.SQL('INCLUDE ({})').format(sql.SQL(', ').join(sql.Identifier(c) for c in p['include'])))
    if p['storage_parameters']:
        stmt.append(sql.SQL('WITH ({})').format(sql.SQL(', ').join(
            sql.SQL('{} = {}').format(sql.Identifier(str(k)), sql.Literal(v))
            for k, v in sorted(p['storage_parameters'].items()))))
    if p['where']:
        stmt.append(sql.SQL('WHERE ({})').format(sql.SQL(p['where'])))
    return sql.SQL(' ').join(stmt)


def signature(row):
    """Comparable description of an index from SIGNATURE_QUERY."""
    if row is None:
        return {'exists': False}
    nkey = row['nkey']
    keys = []
    for k, col in enumerate(row['cols'][:nkey]):
        text = col
        if row['opclasses'][k]:
            text += ' ' + row['opclasses'][k]
        bits = row['options_bits'][k] if k < len(row['options_bits']) else 0
        desc, nulls_first = bool(bits & 1), bool(bits & 2)
        if desc:
            text += ' DESC'
        if nulls_first != desc:  # default is NULLS LAST for ASC, NULLS FIRST for DESC
            text += ' NULLS FIRST' if nulls_first else ' NULLS LAST'
        keys.append(text)
    return {'exists': True, 'method': row['method'], 'unique': row['unique'], 'columns': keys,
            'include': list(row['cols'][nkey:]), 'where': row['where'],
            'storage_parameters': sorted(row['options'] or []), 'valid': row['valid']}


def comparable(sig):
    return {k: v for k, v in sig.items() if k not in ('valid', 'definition')}


def temp_name(name, suffix):
    """name + suffix, cut to PostgreSQL's 63-byte identifier limit."""
    raw = name.encode('utf-8')
    room = 63 - len(suffix.encode('utf-8'))
    cut = raw[:room].decode('utf-8', 'ignore')
    return cut + suffix


def find_index(s, schema, name):
    rows = s.query('SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace '
                   "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('i', 'I')", (schema, name))
    if not rows:
        return None
    return s.query(SIGNATURE_QUERY, (rows[0]['oid'],))[0]


def run_index_statement(s, stmt, concurrent):
    """Execute an index statement through the session: CONCURRENTLY ones outside a transaction block."""
    if concurrent:
        with s.autocommit_block():
            s.execute(stmt)
    else:
        s.execute(stmt)


def drop_statement(schema, name, concurrent):
    return sql.SQL('DROP INDEX {}{}').format(sql.SQL('CONCURRENTLY ' if concurrent else ''),
                                             sql.Identifier(schema, name))
