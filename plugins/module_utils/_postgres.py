# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""PostgreSQL connection options, connecting, and identifier validation shared by every PG module.

The options here are documented once in plugins/doc_fragments/postgres.py; a unit test fails when
the two drift. Identifiers are validated against a strict pattern and then always quoted with
psycopg2.sql.Identifier; values are always bound parameters.
"""

from __future__ import annotations

import re

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError

try:
    import psycopg2
    from psycopg2 import sql

    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError as import_error:  # pragma: no cover - exercised by the missing_required_lib path
    psycopg2 = None
    sql = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = import_error

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
# Plain identifiers only: quoting makes anything safe to send, but a name like
# "users'; DROP TABLE x; --" is never what a user meant, so it is refused with a message instead.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*\Z")
# Where an option allows it, a name that needs quoting (a space, a hyphen, camelCase from an ORM, non-ASCII) is
# accepted when written quoted as in SQL: '"first name"', 'shop."Order Items"'; "" stands for a quote. Control
# characters are never part of a name anyone meant. Unquoted, the plain pattern above still applies.
_PART = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"\x00-\x1f\x7f]|"")+")'
_QUALIFIED = re.compile(r"(%s)(?:\.(%s))?\Z" % (_PART, _PART))
MAX_IDENTIFIER_BYTES = 63


class PostgresError(LocksmithError):
    """Connecting to or querying PostgreSQL failed."""


class InvalidIdentifier(PostgresError):
    """A schema, table, column or role name does not validate; nothing was sent to the server."""


def postgres_argument_spec():
    """Connection options shared by every PostgreSQL module (doc fragment: locksmith.ops.postgres)."""
    return dict(
        login_host=dict(type="str"),
        login_port=dict(type="int", default=5432),
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", no_log=True),
        login_unix_socket=dict(type="path"),
        ssl_mode=dict(type="str", default="prefer", choices=SSL_MODES),
        ca_cert=dict(type="path"),
        connect_timeout=dict(type="int", default=10),
    )


def _refuse(option, value, quoted):
    how = "use letters, digits, _ and $, starting with a letter or _"
    if quoted:
        how += ", or write the name in double quotes as in SQL ('\"first name\"')"
    raise InvalidIdentifier(
        "%s %r is not a valid identifier: %s, at most %d bytes; nothing was sent to the server"
        % (option, value, how, MAX_IDENTIFIER_BYTES),
        option=option,
    )


def _name(part, option, value, quoted):
    """The name one plain or (when ``quoted`` is allowed) double-quoted part stands for."""
    if part.startswith('"'):
        if not quoted:
            _refuse(option, value, quoted)
        part = part[1:-1].replace('""', '"')
    if len(part.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        _refuse(option, value, quoted)
    return part


def validate_identifier(value, option, quoted=False):
    """The name ``value`` stands for: a plain identifier (returned as is) or, with ``quoted``, one written in
    double quotes (returned unquoted). Anything else raises InvalidIdentifier naming ``option``."""
    match = _QUALIFIED.match(value) if isinstance(value, str) else None
    if not match or match.group(2) is not None:
        _refuse(option, value, quoted)
    return _name(match.group(1), option, value, quoted)


def split_qualified(value, option, default_schema="public", quoted=False):
    """'schema.table' or 'table' -> (schema, table), both validated (and unquoted, with ``quoted``)."""
    match = _QUALIFIED.match(value) if isinstance(value, str) else None
    if not match:
        if isinstance(value, str) and '"' not in value and value.count(".") > 1:
            raise InvalidIdentifier(
                "%s %r must be 'table' or 'schema.table'; nothing was sent to the server" % (option, value),
                option=option,
            )
        _refuse(option, value, quoted)
    if match.group(2) is None:
        return validate_identifier(default_schema, option), _name(match.group(1), option, value, quoted)
    return _name(match.group(1), option, value, quoted), _name(match.group(2), option, value, quoted)


def dump_pattern(*parts):
    """A pg_dump --schema/--table pattern that matches exactly these names: quoted, so * ? and . are literal."""
    return ".".join('"%s"' % part.replace('"', '""') for part in parts)


def written(*parts):
    """The name as an option takes it (split_qualified with ``quoted``): a part that is no plain identifier is
    double-quoted, as in SQL, so 'shop."a.b"' and '"shop.a".b' stay two names."""
    return ".".join(part if _IDENTIFIER.match(part) else '"%s"' % part.replace('"', '""') for part in parts)


def identifier(*parts):
    """psycopg2.sql.Identifier for validated parts (schema, table, ...)."""
    return sql.Identifier(*parts)


def connect_kwargs(params, dbname):
    """psycopg2.connect() keyword arguments from module params; the password never leaves this dict."""
    kwargs = {
        "dbname": dbname,
        "user": params["login_user"],
        "port": params["login_port"],
        "connect_timeout": params["connect_timeout"],
        "sslmode": params["ssl_mode"],
        "application_name": "locksmith.ops",
    }
    host = params.get("login_host") or params.get("login_unix_socket")
    if host:
        kwargs["host"] = host
    if params.get("login_password") is not None:
        kwargs["password"] = params["login_password"]
    if params.get("ca_cert"):
        kwargs["sslrootcert"] = params["ca_cert"]
    return kwargs


def describe_target(params, dbname):
    """host:port/db as shown in messages (never the password)."""
    host = params.get("login_host") or params.get("login_unix_socket") or "local socket"
    return "%s:%s/%s as %s" % (host, params["login_port"], dbname, params["login_user"])


# connect_kwargs() key -> the option it comes from, for messages.
_CONNECT_OPTION = {
    "dbname": "the database name",
    "user": "login_user",
    "host": "login_host (or login_unix_socket)",
    "password": "login_password",  # nosec B105 - an option name, not a password
    "sslrootcert": "ca_cert",
}


def connect(params, dbname, autocommit=False):
    """Open a connection; failures become PostgresError with the cause and the option to fix."""
    kwargs = connect_kwargs(params, dbname)
    # libpq takes C strings: psycopg2 raises ValueError on a NUL, which no caller expects.
    with_nul = [_CONNECT_OPTION.get(key, key) for key, value in kwargs.items() if "\x00" in str(value)]
    if with_nul:
        raise PostgresError("%s holds a NUL character, which PostgreSQL cannot take; remove it" % ", ".join(with_nul))
    port = params["login_port"]
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise PostgresError(
            "login_port %d is not a TCP port; give 1-65535 (PostgreSQL listens on 5432 unless told otherwise)" % port
        )
    target = describe_target(params, dbname)
    try:
        conn = psycopg2.connect(**kwargs)
    except psycopg2.OperationalError as err:
        raise PostgresError(explain_connect_error(str(err), target), target=target) from err
    conn.autocommit = autocommit
    return conn


def explain_connect_error(text, target):
    """Turn libpq's connection error into what failed and what to change."""
    first = text.strip().splitlines()[-1] if text.strip() else text
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        fix = "check login_user and login_password (or the pg_hba.conf method for this client)"
    elif "does not exist" in lowered and "database" in lowered:
        fix = "check the database name, or create the database first"
    elif "role" in lowered and "does not exist" in lowered:
        fix = "check login_user; the role does not exist on this server"
    elif "could not translate host name" in lowered:
        fix = "check login_host: no such host name here (or no DNS server answers)"
    elif "on socket" in lowered or "on that socket" in lowered:
        # An empty login_host means the local socket, as libpq reads an unset host.
        fix = (
            "check login_unix_socket (the directory of PostgreSQL's socket) and login_port, or set login_host to "
            "connect over TCP"
        )
    elif "connection refused" in lowered or "could not connect" in lowered or "timeout" in lowered:
        fix = "check login_host and login_port, and that PostgreSQL is running and reachable from this host"
    elif "no pg_hba.conf entry" in lowered:
        fix = "add a pg_hba.conf entry for this client, or connect from an allowed address"
    elif "ssl" in lowered:
        fix = "check ssl_mode and ca_cert against the server's SSL settings"
    else:
        fix = "check the login_* options"
    return "cannot connect to PostgreSQL at %s: %s; %s" % (target, first, fix)


def server_version(conn):
    """The server's version as an int, e.g. 150018."""
    return conn.server_version


def fetch_all(conn, query, params=None):
    """Run a read-only query with bound parameters; return rows as dicts."""
    with conn.cursor() as cur:
        cur.execute(query, params)
        columns = [col.name for col in cur.description]
        return [dict(zip(columns, row)) for row in cur.fetchall()]


def rendered(conn, statement):
    """The SQL text of a psycopg2.sql object, for executed_queries and --diff (never holds secrets)."""
    return statement.as_string(conn) if hasattr(statement, "as_string") else str(statement)
