"""Parsing pg_dumpall --globals-only and the archive's DATABASE entries as data; rebuilding them with psycopg2.sql."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.locksmith.ops.plugins.module_utils import _restore as R
from ansible_collections.locksmith.ops.plugins.module_utils import _restore_cluster as RC
from ansible_collections.locksmith.ops.plugins.module_utils import _restore_globals as G
from ansible_collections.locksmith.ops.plugins.module_utils._restore import RestoreError

GLOBALS = """--
-- PostgreSQL database cluster dump
--

\\restrict abc123

SET default_transaction_read_only = off;
SET client_encoding = 'UTF8';

CREATE ROLE alice;
ALTER ROLE alice WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:x==$y=:z=';
CREATE ROLE bob;
ALTER ROLE bob WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE bob IS 'it''s bob';
CREATE ROLE "we""ird; x";
ALTER ROLE "we""ird; x" WITH NOLOGIN CONNECTION LIMIT 3 VALID UNTIL '2030-01-01 00:00:00+00';
ALTER ROLE alice SET search_path TO 'a', 'public';
ALTER ROLE bob SET "TimeZone" = 'UTC';
GRANT bob TO alice WITH ADMIN OPTION GRANTED BY postgres;
CREATE TABLESPACE fast OWNER alice LOCATION '/srv/fast';
SECURITY LABEL FOR selinux ON ROLE bob IS 'x';
ALTER ROLE bob WITH EVIL;
GRANT bob TO alice; DROP ROLE postgres;

\\unrestrict abc123
"""  # noqa: E501

DATABASE = """
CREATE DATABASE billing WITH TEMPLATE = template0 ENCODING = 'SQL_ASCII' LOCALE_PROVIDER = libc LOCALE = 'C';
ALTER DATABASE billing OWNER TO billing_owner;
\\connect billing
SELECT pg_catalog.set_config('search_path', '', false);
ALTER DATABASE billing SET "TimeZone" TO 'UTC';
ALTER ROLE bob IN DATABASE billing SET work_mem TO '1MB';
GRANT CONNECT, TEMPORARY ON DATABASE billing TO bob WITH GRANT OPTION;
REVOKE ALL ON DATABASE billing FROM PUBLIC;
ALTER DATABASE billing IS_TEMPLATE = true;
"""


def render(statement):
    """psycopg2.sql rendered without a connection: identifiers and literals as PostgreSQL quotes them."""

    def part(item):
        if isinstance(item, sql.Composed):
            return "".join(part(p) for p in item)
        if isinstance(item, sql.Identifier):
            return ".".join('"%s"' % s.replace('"', '""') for s in item.strings)
        if isinstance(item, sql.Literal):
            value = item.wrapped
            return str(value) if isinstance(value, int) else "'%s'" % str(value).replace("'", "''")
        return item.string

    return part(statement)


def test_globals_are_parsed_into_roles_memberships_and_tablespaces():
    parsed = G.parse_globals(GLOBALS)
    assert sorted(parsed["roles"]) == ["alice", "bob", 'we"ird; x']
    alice = parsed["roles"]["alice"]
    assert "LOGIN" in alice["flags"] and alice["password"].startswith("SCRAM-SHA-256$")
    assert alice["settings"] == [(["search_path"], ["a", "public"])]
    assert parsed["roles"]["bob"]["comment"] == "it's bob"
    assert parsed["roles"]["bob"]["settings"] == [(["TimeZone"], ["UTC"])]
    weird = parsed["roles"]['we"ird; x']
    assert weird["connection_limit"] == 3 and weird["valid_until"] == "2030-01-01 00:00:00+00"
    assert parsed["memberships"] == [
        {"role": "bob", "member": "alice", "admin": True, "inherit": None, "set": None},
        {"role": "bob", "member": "alice", "admin": False, "inherit": None, "set": None},
    ]
    assert parsed["tablespaces"] == {"fast": {"owner": "alice", "location": "/srv/fast"}}


def test_statements_of_unknown_shape_are_skipped_never_run():
    skipped = G.parse_globals(GLOBALS)["skipped"]
    assert skipped == ["SECURITY LABEL FOR selinux ON ROLE bob IS x", "ALTER ROLE bob WITH EVIL", "DROP ROLE postgres"]


def test_role_statements_are_rebuilt_quoted_and_the_password_redacted_in_what_is_shown():
    parsed = G.parse_globals(GLOBALS)
    statement, shown = G.create_role_sql("alice", parsed["roles"]["alice"])
    assert render(statement).startswith('CREATE ROLE "alice" WITH NOSUPERUSER INHERIT')
    assert render(statement).endswith("PASSWORD 'SCRAM-SHA-256$4096:x==$y=:z='")
    assert render(shown).endswith("PASSWORD '<redacted>'") and "SCRAM" not in render(shown)
    weird, shown = G.create_role_sql('we"ird; x', parsed["roles"]['we"ird; x'])
    assert render(weird) == (
        """CREATE ROLE "we""ird; x" WITH NOLOGIN CONNECTION LIMIT 3 VALID UNTIL '2030-01-01 00:00:00+00'"""
    )
    assert shown is weird
    assert render(G.role_setting_sql("alice", ["search_path"], ["a", "public"])) == (
        """ALTER ROLE "alice" SET "search_path" TO 'a', 'public'"""
    )
    assert render(G.comment_role_sql("bob", "it's bob")) == """COMMENT ON ROLE "bob" IS 'it''s bob'"""
    assert render(G.membership_sql(parsed["memberships"][0])) == 'GRANT "bob" TO "alice" WITH ADMIN OPTION'
    assert render(G.create_tablespace_sql("fast", parsed["tablespaces"]["fast"])) == (
        """CREATE TABLESPACE "fast" OWNER "alice" LOCATION '/srv/fast'"""
    )


def test_database_entries_give_owner_encoding_locale_settings_and_grants():
    info = G.parse_database(DATABASE)
    assert info["name"] == "billing" and info["owner"] == "billing_owner"
    assert info["options"] == {"ENCODING": "SQL_ASCII", "LOCALE_PROVIDER": "libc", "LOCALE": "C"}
    assert info["settings"] == [(["TimeZone"], ["UTC"])]
    assert info["role_settings"] == [("bob", ["work_mem"], ["1MB"])]
    assert info["grants"] == [
        {"verb": "GRANT", "privileges": ["CONNECT", "TEMPORARY"], "grantee": "bob", "grant_option": True},
        {"verb": "REVOKE", "privileges": ["ALL"], "grantee": "PUBLIC", "grant_option": False},
    ]
    assert info["skipped"] == ["ALTER DATABASE billing IS_TEMPLATE = true"]
    created = G.create_database_sql("drill_billing_1a2b3c", "billing_owner", info["options"])
    assert render(created) == (
        """CREATE DATABASE "drill_billing_1a2b3c" WITH TEMPLATE template0 ENCODING 'SQL_ASCII' """
        """LOCALE_PROVIDER libc LOCALE 'C' OWNER "billing_owner\""""
    )
    assert render(G.database_grant_sql("b", info["grants"][0])) == (
        'GRANT CONNECT, TEMPORARY ON DATABASE "b" TO "bob" WITH GRANT OPTION'
    )
    assert render(G.database_grant_sql("b", info["grants"][1])) == 'REVOKE ALL ON DATABASE "b" FROM PUBLIC'
    assert (
        render(G.database_setting_sql("b", ["TimeZone"], ["UTC"])) == """ALTER DATABASE "b" SET "TimeZone" TO 'UTC'"""
    )
    assert render(G.role_setting_sql("bob", ["work_mem"], ["1MB"], "b")) == (
        """ALTER ROLE "bob" IN DATABASE "b" SET "work_mem" TO '1MB'"""
    )


def test_an_unknown_locale_provider_is_refused():
    with pytest.raises(G.GlobalsError, match="unknown LOCALE_PROVIDER 'x; DROP'"):
        G.create_database_sql("b", None, {"LOCALE_PROVIDER": "x; DROP"})


@pytest.mark.parametrize(
    "payload",
    ["public'; DROP TABLE users; --", 'app"; DROP DATABASE postgres; --', "a\\b", "tab\there", ""],
)
def test_injection_payloads_in_database_names_are_refused(payload):
    with pytest.raises(G.GlobalsError, match="from the backup"):
        G.safe_name(payload, "database", strict=True)


def test_role_names_may_hold_quotes_but_not_control_characters_or_too_many_bytes():
    assert G.safe_name('we"ird; x', "role") == 'we"ird; x'
    with pytest.raises(G.GlobalsError, match="control characters"):
        G.safe_name("bad\nrole", "role")
    with pytest.raises(G.GlobalsError, match="1 to 63 bytes"):
        G.safe_name("x" * 64, "role")
    with pytest.raises(G.GlobalsError, match="control characters"):
        G.parse_globals('CREATE ROLE "a\x01b";')


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../b", "", "a//b"])
def test_artefact_paths_that_leave_the_work_directory_are_refused(name):
    with pytest.raises(RestoreError, match="not a plain relative name"):
        R.safe_relpath(name, "artefact name")
    assert R.safe_relpath("app.dir/toc.dat", "artefact name") == "app.dir/toc.dat"


def test_confirmation_names_the_databases_or_all_databases():
    assert RC.all_databases_confirm([]) == "I understand this overwrites all-databases"
    assert RC.all_databases_confirm(["billing", "app"]) == "I understand this overwrites billing, app"


def test_only_the_database_entries_of_a_listing_are_kept():
    listing = (
        ";\n; Archive created\n;\n3339; 1262 16387 DATABASE - app alice\n3340; 0 0 ACL - DATABASE app alice\n"
        "3341; 0 0 DATABASE PROPERTIES - app alice\n215; 1259 16423 TABLE public users postgres\n"
        "3342; 0 0 COMMENT - DATABASE app alice\n"
    )
    assert [line.split(";")[0] for line in RC.database_list_entries(listing)] == ["3339", "3340", "3341", "3342"]


def test_a_drill_role_cannot_log_in_and_has_no_password():
    role = G.parse_globals(GLOBALS)["roles"]["alice"]
    drilled = RC.drill_role(role)
    assert drilled["password"] is None and "LOGIN" not in drilled["flags"] and "NOLOGIN" in drilled["flags"]
    assert role["password"] and "LOGIN" in role["flags"]
    assert RC.drill_role({"flags": [], "password": None})["flags"] == ["NOLOGIN"]


# pg_dumpall of PostgreSQL 16 and later writes each membership's INHERIT, SET FALSE when it is limited, and
# the grantor; 15 writes ADMIN OPTION and the grantor only.
GLOBALS_16 = """
CREATE ROLE app;
CREATE ROLE ops;
CREATE ROLE lead;
ALTER ROLE lead WITH NOSUPERUSER NOINHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE audit;
GRANT app TO ops WITH INHERIT TRUE GRANTED BY postgres;
GRANT app TO lead WITH ADMIN OPTION, INHERIT FALSE, SET FALSE GRANTED BY postgres;
GRANT app TO audit WITH SET FALSE GRANTED BY lead;
GRANT ops TO lead WITH ADMIN OPTION, INHERIT TRUE GRANTED BY postgres;
GRANT audit TO ops WITH ADMIN TRUE, INHERIT OPTION, SET TRUE;
GRANT lead TO audit GRANTED BY postgres;
GRANT audit TO lead WITH INHERIT FALSE GRANTED BY postgres;
"""


def _membership(role, member, **options):
    return dict({"role": role, "member": member, "admin": False, "inherit": None, "set": None}, **options)


def test_memberships_of_postgresql_16_and_later_are_parsed_with_their_options():
    parsed = G.parse_globals(GLOBALS_16)
    assert parsed["skipped"] == []
    assert parsed["memberships"] == [
        _membership("app", "ops", inherit=True),
        _membership("app", "lead", admin=True, inherit=False, set=False),
        _membership("app", "audit", set=False),
        _membership("ops", "lead", admin=True, inherit=True),
        _membership("audit", "ops", admin=True, inherit=True, set=True),
        _membership("lead", "audit"),
        _membership("audit", "lead", inherit=False),
    ]
    limited = parsed["memberships"][1]
    assert render(G.membership_sql(limited)) == 'GRANT "app" TO "lead" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE'
    assert render(G.membership_sql(limited, grant_options=False)) == 'GRANT "app" TO "lead" WITH ADMIN OPTION'
    assert render(G.membership_sql(parsed["memberships"][0])) == 'GRANT "app" TO "ops" WITH INHERIT TRUE'
    assert render(G.membership_sql(parsed["memberships"][0], grant_options=False)) == 'GRANT "app" TO "ops"'


class _Catalog:
    """The restore server as the globals plan reads it: its roles, the bootstrap and login role, its version."""

    def __init__(self, roles, version):
        self.roles, self.version = roles, version

    def run(self, dbname, statement, args=None, rows=False):
        if "oid = 10" in statement:
            return [{"me": "postgres", "bootstrap": "postgres"}]
        if "FROM pg_roles" in statement:
            return [{"rolname": name} for name in self.roles]
        if "pg_tablespace" in statement:
            return []
        assert "server_version_num" in statement, statement
        return [{"v": self.version}]


def _applied(text, roles=("postgres",), version=150018):
    """(plan, warnings, GRANT statements run) of the globals of ``text`` restored onto a server holding ``roles``."""
    job = object.__new__(RC.ClusterRestoreJob)
    job.mode, job.warnings, job.globals = "recover", [], G.parse_globals(text)
    job.server = _Catalog(roles, version)
    job.prediction = job._predict_globals()
    job.created_roles, job.target_touched, executed = [], False, []
    job._exec = lambda dbname, statement, shown=None, what=None: executed.append(render(statement))
    job._apply_globals()
    return job.prediction, job.warnings, [s for s in executed if s.startswith("GRANT")]


def test_memberships_from_postgresql_16_are_granted_on_15_without_widening_them():
    plan, warnings, grants = _applied(GLOBALS_16)
    # INHERIT TRUE and ADMIN OPTION are what 15 grants anyway; INHERIT or SET FALSE it cannot keep: left out,
    # but for INHERIT FALSE to a NOINHERIT member (lead), which inherits nothing on 15 either.
    assert grants == [
        'GRANT "app" TO "ops"',
        'GRANT "ops" TO "lead" WITH ADMIN OPTION',
        'GRANT "audit" TO "ops" WITH ADMIN OPTION',
        'GRANT "lead" TO "audit"',
        'GRANT "audit" TO "lead"',
    ]
    assert plan["memberships_granted"] == [
        "app TO ops",
        "ops TO lead",
        "audit TO ops",
        "lead TO audit",
        "audit TO lead",
    ]
    assert plan["memberships_skipped"] == [
        "app TO lead (WITH SET FALSE: not kept by PostgreSQL 15, not granted)",  # lead is NOINHERIT anyway
        "app TO audit (WITH SET FALSE: not kept by PostgreSQL 15, not granted)",
    ]
    assert [w.split(" has ")[0] for w in warnings] == [
        "membership app TO lead",
        "membership app TO audit",
        "membership ops TO lead",  # granted, but lead is NOINHERIT on 15
    ]
    assert "restore onto PostgreSQL 16 or later" in warnings[0] and "NOINHERIT" in warnings[2]


def test_memberships_keep_inherit_and_set_on_a_16_server():
    plan, warnings, grants = _applied(GLOBALS_16, version=160004)
    assert grants[:3] == [
        'GRANT "app" TO "ops" WITH INHERIT TRUE',
        'GRANT "app" TO "lead" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE',
        'GRANT "app" TO "audit" WITH SET FALSE',
    ]
    assert len(grants) == 7 and plan["memberships_skipped"] == [] and warnings == []


def test_memberships_are_matched_by_role_and_member_not_by_their_joined_text():
    # Both pairs read "a TO b TO c"; only the first has a member this restore creates.
    text = 'CREATE ROLE "a TO b";\nCREATE ROLE c;\nCREATE ROLE a;\nGRANT "a TO b" TO c;\nGRANT a TO "b TO c";\n'
    plan, _warnings, grants = _applied(text, roles=("postgres", "b TO c"))
    assert plan["memberships_granted"] == ["a TO b TO c"] and plan["memberships_skipped"] == ["a TO b TO c"]
    # The existing role "b TO c" is left as it was.
    assert grants == ['GRANT "a TO b" TO "c"']


def test_a_skipped_statement_never_shows_a_password_hash():
    text = "CREATE ROLE bob;\nALTER ROLE bob WITH LOGIN EVIL PASSWORD 'md5a3556571e93b0d20722ba62be61e8c2d';\n"
    assert G.parse_globals(text)["skipped"] == ["ALTER ROLE bob WITH LOGIN EVIL PASSWORD '<redacted>'"]
