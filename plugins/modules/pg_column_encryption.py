# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_column_encryption
short_description: Re-encrypt pgcrypto-encrypted columns under a new key, in bounded batches, without downtime
version_added: "0.1.0"
description:
  - Works with the column encryption helpers the C(hingecraft.enterprise_db.security) role installs
    (C(<schema>.encrypt), C(decrypt), C(rotate_batch)). Encrypted columns are C(bytea) written by
    C(pgp_sym_encrypt), and a key id column says which key encrypted each row.
  - With O(state=rotated), rows whose key id is O(old_key_id) are re-encrypted with O(new_key) and get
    O(new_key_id), at most O(batch_size) rows per transaction (rows locked by the application are skipped and
    picked up by a later batch), until none is left or O(max_batches) batches ran.
  - With O(state=status), nothing changes; the row count per key id is returned.
  - Keys travel only as bind parameters of a transaction-local C(set_config) (never inside statement text, so
    neither C(log_statement), pgaudit nor C(pg_stat_activity) shows them), and are never stored.
author:
  - HingeCraft platform engineering (@hingecraft)
extends_documentation_fragment:
  - hingecraft.enterprise_db.postgres
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Counts the rows that would be re-encrypted; changes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  table:
    description: Table holding the encrypted columns, optionally schema-qualified (default schema V(public)).
    type: str
    required: true
  columns:
    description: Encrypted C(bytea) columns of O(table).
    type: list
    elements: str
    default: []
  key_id_column:
    description: Integer column with the id of the key that encrypted the row.
    type: str
    default: key_id
  state:
    description: V(rotated) re-encrypts; V(status) only reports.
    type: str
    choices: [rotated, status]
    default: rotated
  old_key_id:
    description: Key id being retired.
    type: int
  new_key_id:
    description: Key id of O(new_key).
    type: int
  old_key:
    description: The retired key (from the vault).
    type: str
  new_key:
    description: The new key (from the vault).
    type: str
  batch_size:
    description: Rows per transaction.
    type: int
    default: 500
  max_batches:
    description: Upper bound on batches in one run; the module reports the rows still left.
    type: int
    default: 10000
  crypto_schema:
    description: Schema of the helper functions.
    type: str
    default: hc_crypto
seealso:
  - name: pgcrypto
    description: PostgreSQL manual, PGP encryption functions.
    link: https://www.postgresql.org/docs/17/pgcrypto.html
"""

EXAMPLES = r"""
- name: Move app.customers from key 1 to key 2
  hingecraft.enterprise_db.pg_column_encryption:
    db: appdb
    login_unix_socket: /var/run/postgresql
    table: app.customers
    columns: [email, phone]
    old_key_id: 1
    new_key_id: 2
    old_key: "{{ vault_column_keys[1] }}"
    new_key: "{{ vault_column_keys[2] }}"
    batch_size: 1000
  no_log: true
"""

RETURN = r"""
reencrypted:
  description: Rows re-encrypted in this run (in check mode, the rows that would be).
  returned: always
  type: int
batches:
  description: Batches (transactions) run.
  returned: always
  type: int
remaining:
  description: Rows still under O(old_key_id) after the run.
  returned: always
  type: int
key_ids:
  description: Row count per key id after the run.
  returned: always
  type: dict
queries:
  description: Statements run (without parameter values).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

try:
    from psycopg import sql
except ImportError:  # reported by ensure_psycopg
    sql = None

from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.postgres import (
    PgSession,
    ensure_psycopg,
    postgres_common_argument_spec,
    split_qualified,
)

SET_KEYS = ("SELECT pg_catalog.set_config('hc_keys.k' || %s::text, %s, true), "
            "pg_catalog.set_config('hc_keys.k' || %s::text, %s, true)")


def key_counts(s, tbl, key_col):
    rows = s.query(sql.SQL("SELECT {k} AS key_id, count(*) AS n FROM {t} GROUP BY 1").format(
        k=sql.Identifier(key_col), t=tbl))
    return {str(r["key_id"]): r["n"] for r in rows}


def main():
    argument_spec = dict(postgres_common_argument_spec)
    argument_spec.update(
        table={"type": "str", "required": True},
        columns={"type": "list", "elements": "str", "default": []},
        key_id_column={"type": "str", "default": "key_id", "no_log": False},
        state={"type": "str", "choices": ["rotated", "status"], "default": "rotated"},
        old_key_id={"type": "int"},
        new_key_id={"type": "int"},
        old_key={"type": "str", "no_log": True},
        new_key={"type": "str", "no_log": True},
        batch_size={"type": "int", "default": 500},
        max_batches={"type": "int", "default": 10000},
        crypto_schema={"type": "str", "default": "hc_crypto"},
    )
    module = AnsibleModule(
        argument_spec=argument_spec, supports_check_mode=True,
        required_if=[("state", "rotated", ("columns", "old_key_id", "new_key_id", "old_key", "new_key"))])
    ensure_psycopg(module)
    p = module.params
    if p["state"] == "rotated":
        if not p["columns"]:
            module.fail_json(msg="columns: at least one encrypted column is required")
        if p["old_key_id"] == p["new_key_id"]:
            module.fail_json(msg="new_key_id must differ from old_key_id")
        if not p["old_key"] or not p["new_key"]:
            module.fail_json(msg="old_key and new_key must not be empty")
        if not 1 <= p["batch_size"] <= 100000:
            module.fail_json(msg="batch_size must be between 1 and 100000")
        if not 1 <= p["max_batches"] <= 1000000:
            module.fail_json(msg="max_batches must be between 1 and 1000000")
    try:
        schema, name = split_qualified(p["table"])
    except ValueError as e:
        module.fail_json(msg=f"table: {e}")
    tbl = sql.Identifier(schema, name)

    s = PgSession(module)
    if not s.relation(schema, name):
        s.fail(f"table {schema}.{name} does not exist")
    have = {c["name"] if isinstance(c, dict) else c for c in (s.columns(schema, name) or [])}
    for col in p["columns"] + [p["key_id_column"]]:
        if have and col not in have:
            s.fail(f"column {col!r} does not exist in {schema}.{name}")

    before = key_counts(s, tbl, p["key_id_column"])
    result = {"reencrypted": 0, "batches": 0}
    if p["state"] == "status" or module.check_mode:
        todo = before.get(str(p["old_key_id"]), 0) if p["state"] == "rotated" else 0
        s.finish(changed=False)
        s.close()
        module.exit_json(changed=False, reencrypted=todo, batches=0, remaining=todo, key_ids=before,
                         queries=s.queries)

    rotate = sql.SQL("SELECT {fn}(%s::regclass, %s::text[], %s, %s, %s, %s) AS n").format(
        fn=sql.Identifier(p["crypto_schema"], "rotate_batch"))
    while result["batches"] < p["max_batches"]:
        s.execute(SET_KEYS, (p["old_key_id"], p["old_key"], p["new_key_id"], p["new_key"]), redact=True)
        rows = s.execute(rotate, (f"{sql.Identifier(schema, name).as_string(s.conn)}", p["columns"],
                                  p["key_id_column"], p["old_key_id"], p["new_key_id"], p["batch_size"]),
                         redact=True)
        s.conn.commit()  # one transaction per batch: short row locks, no downtime
        result["batches"] += 1
        done = rows[0]["n"] if rows else 0
        result["reencrypted"] += done
        if done == 0:
            break
    after = key_counts(s, tbl, p["key_id_column"])
    s.finish(changed=result["reencrypted"] > 0)
    s.close()
    # keep the record short: one line per distinct statement
    queries = list(dict.fromkeys(s.queries))
    module.exit_json(changed=result["reencrypted"] > 0, remaining=after.get(str(p["old_key_id"]), 0),
                     key_ids=after, queries=queries, **result)


if __name__ == "__main__":
    main()
