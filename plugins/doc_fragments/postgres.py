# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options of every locksmith.ops PostgreSQL module (spec: module_utils/_postgres.py)."""

    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
      - When neither O(login_host) nor O(login_unix_socket) is set, libpq's default (the local socket) is used.
    type: str
    version_added: 0.1.0
  login_port:
    description: TCP port of the PostgreSQL server.
    type: int
    default: 5432
    version_added: 0.1.0
  login_user:
    description: The role to connect as.
    type: str
    default: postgres
    version_added: 0.1.0
  login_password:
    description:
      - Password of O(login_user). Never logged or returned.
      - Omit it to use peer, certificate or C(.pgpass) authentication.
    type: str
    version_added: 0.1.0
  login_unix_socket:
    description: Directory of the server's Unix socket, used when O(login_host) is not set.
    type: path
    version_added: 0.1.0
  ssl_mode:
    description:
      - libpq C(sslmode). Use V(verify-full) with O(ca_cert) across any network you do not control.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
    version_added: 0.1.0
  ca_cert:
    description: CA certificate file used to verify the server when O(ssl_mode) is V(verify-ca) or V(verify-full).
    type: path
    version_added: 0.1.0
  connect_timeout:
    description: Seconds to wait for the connection before failing.
    type: int
    default: 10
    version_added: 0.1.0
requirements:
  - psycopg2 (or psycopg2-binary) on the host that runs the module
notes:
  - Identifiers (schemas, tables, columns, roles) must be plain names, letters, digits, C(_) and C($);
    anything else is refused before any SQL is sent. Every identifier is quoted with psycopg2.sql and
    every value is a bound parameter.
"""
