from __future__ import annotations

import re

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres
from ansible_collections.locksmith.ops.plugins.module_utils._postgres import InvalidIdentifier

INJECTIONS = [
    "public'; DROP TABLE users; --",
    "users'; DROP TABLE --",
    "../../../etc/passwd",
    'a"b',
    "x; SELECT pg_sleep(10)",
    "",
    "1leading_digit",
    "a" * 64,
    "tab\tle",
    "name\x00nul",
    "trailing_newline\n",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_payloads_are_refused_with_the_option_named(payload):
    with pytest.raises(InvalidIdentifier, match=r"tables\[0\] .* is not a valid identifier.*nothing was sent"):
        _postgres.validate_identifier(payload, "tables[0]")


@pytest.mark.parametrize("name", ["users", "_private", "Orders", "t$1", "a" * 63])
def test_plain_identifiers_pass(name):
    assert _postgres.validate_identifier(name, "x") == name


def test_split_qualified():
    assert _postgres.split_qualified("users", "t") == ("public", "users")
    assert _postgres.split_qualified("app.users", "t") == ("app", "users")
    with pytest.raises(InvalidIdentifier, match=r"must be 'table' or 'schema\.table'"):
        _postgres.split_qualified("a.b.c", "t")
    with pytest.raises(InvalidIdentifier):
        _postgres.split_qualified("public.users'; --", "t")
    with pytest.raises(InvalidIdentifier):
        _postgres.split_qualified(None, "t")


def _params(**over):
    params = {k: v.get("default") for k, v in _postgres.postgres_argument_spec().items()}
    params.update(over)
    return params


def test_connect_kwargs_carry_password_only_in_the_dict():
    kwargs = _postgres.connect_kwargs(_params(login_host="db", login_password="s3cret", ca_cert="/ca.pem"), "app")
    assert kwargs["password"] == "s3cret"
    assert kwargs["host"] == "db" and kwargs["sslrootcert"] == "/ca.pem" and kwargs["dbname"] == "app"
    assert "s3cret" not in _postgres.describe_target(_params(login_host="db", login_password="s3cret"), "app")


def test_unix_socket_used_when_no_host():
    assert _postgres.connect_kwargs(_params(login_unix_socket="/run/pg"), "app")["host"] == "/run/pg"
    assert "host" not in _postgres.connect_kwargs(_params(), "app")


@pytest.mark.parametrize(
    ("libpq", "fix"),
    [
        ('FATAL:  password authentication failed for user "app"', "login_password"),
        ('FATAL:  database "nope" does not exist', "database name"),
        ('FATAL:  role "ghost" does not exist', "login_user"),
        ("could not connect to server: Connection refused", "login_host and login_port"),
        ('FATAL:  no pg_hba.conf entry for host "10.0.0.9"', "pg_hba.conf"),
        ("SSL error: certificate verify failed", "ssl_mode"),
        ("something else", "login_*"),
    ],
)
def test_connect_errors_name_the_fix(libpq, fix):
    message = _postgres.explain_connect_error(libpq, "db:5432/app as app")
    assert message.startswith("cannot connect to PostgreSQL at db:5432/app as app: ")
    assert fix in message


@pytest.mark.parametrize(
    ("over", "dbname", "named"),
    [
        ({"login_host": "127.0.0.1\x00x"}, "app", "login_host (or login_unix_socket)"),
        ({"login_password": "a\x00b"}, "app", "login_password"),
        ({}, "a\x00b", "the database name"),
    ],
)
def test_a_nul_in_a_connection_value_is_refused_by_name_before_connecting(over, dbname, named):
    # psycopg2 raised ValueError ("embedded null character"), a traceback for the modules.
    with pytest.raises(_postgres.PostgresError, match=re.escape(named + " holds a NUL character")) as caught:
        _postgres.connect(_params(login_port=1, **over), dbname)
    assert "a\x00b" not in caught.value.msg


@pytest.mark.parametrize(
    "written, name",
    [('"first name"', "first name"), ('"a""b"', 'a"b'), ('"Order-Items"', "Order-Items"), ('"café.x"', "café.x")],
)
def test_a_name_written_quoted_is_taken_where_allowed(written, name):
    assert _postgres.validate_identifier(written, "x", quoted=True) == name
    with pytest.raises(InvalidIdentifier, match="is not a valid identifier"):
        _postgres.validate_identifier(written, "x")  # where an option does not allow it


@pytest.mark.parametrize(
    "payload", [INJECTIONS[0], INJECTIONS[1], '"a"b"', '"unclosed', '""', '"t\tb"', '"%s"' % ("é" * 32)]
)
def test_quoting_does_not_open_the_door_to_payloads(payload):
    with pytest.raises(InvalidIdentifier, match="double quotes"):
        _postgres.split_qualified("public." + payload, "t", quoted=True)


def test_split_qualified_quoted():
    assert _postgres.split_qualified('shop."Order Items"', "t", quoted=True) == ("shop", "Order Items")
    assert _postgres.split_qualified('"a.b"."c"', "t", quoted=True) == ("a.b", "c")
    assert _postgres.split_qualified('"a.b"', "t", quoted=True) == ("public", "a.b")
    with pytest.raises(InvalidIdentifier):
        _postgres.split_qualified('"a"."b"."c"', "t", quoted=True)


def test_dump_pattern_matches_exactly_these_names():
    assert _postgres.dump_pattern("Shop Data", 'a"b*?') == '"Shop Data"."a""b*?"'
