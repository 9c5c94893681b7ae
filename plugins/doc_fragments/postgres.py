# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Connection options of every PostgreSQL module in hingecraft.enterprise_db
    # (plugins/module_utils/postgres.py: postgres_common_argument_spec).
    DOCUMENTATION = r'''
options:
  login_user:
    description:
      - The database role to connect as.
    type: str
    default: postgres
    aliases: [login]
  login_password:
    description:
      - The password of O(login_user). Leave empty for peer or certificate authentication.
    type: str
    default: ''
  login_host:
    description:
      - Host name or IP address of the server. Empty means the local Unix socket (see O(login_unix_socket)).
    type: str
    default: ''
    aliases: [host]
  login_port:
    description:
      - Port of the server (also used to name the Unix socket file).
    type: int
    default: 5432
    aliases: [port]
  login_unix_socket:
    description:
      - Directory of the local Unix socket, for example C(/var/run/postgresql). Takes precedence over O(login_host).
      - Empty means libpq's default socket directory.
    type: str
    default: ''
    aliases: [unix_socket]
  db:
    description:
      - The database to connect to and change. Empty means the database named like O(login_user).
    type: str
    default: ''
    aliases: [login_db]
  ssl_mode:
    description:
      - libpq C(sslmode). Use V(verify-full) with O(ca_cert) across hosts.
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file used to verify the server (libpq C(sslrootcert)).
    type: str
    aliases: [ssl_rootcert]
  connect_timeout:
    description:
      - Seconds to wait for the connection.
    type: int
    default: 10
  session_role:
    description:
      - Role to C(SET ROLE) to right after connecting; objects are then created as (and owned by) that role.
    type: str
requirements:
  - psycopg >= 3.1 (psycopg 3; Debian 13 C(python3-psycopg)) on the managed node
notes:
  - Every statement is built with C(psycopg.sql); identifiers are quoted and values are passed as parameters.
  - Object names may be given as C(schema.name) or C(name) (schema C(public)). A part written in double quotes is
    taken verbatim, so a dot can be part of a name (C("my.schema"."t")). Names are not case-folded.
  - The module returns C(queries), the statements it executed (or, in check mode, would execute).
'''
