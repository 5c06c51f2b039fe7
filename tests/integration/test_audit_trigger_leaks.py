"""audit_trigger: what must never reach the log or go unlogged (excluded values, keys, children, sessions)."""

from __future__ import annotations

import json
import re

from tests.integration.test_audit_trigger import info, log_rows, q, run


def test_a_truncate_does_not_log_excluded_values_sent_in_the_same_query(pg_cluster, pg_database):
    db = pg_database
    q(pg_cluster, db, "CREATE TABLE users (id int PRIMARY KEY, name text, password_hash text)")
    assert run(pg_cluster, db, tables=["users"], exclude_columns=["password_hash"])["changed"] is True
    # One simple-query message: current_query() is the whole string, the INSERT with the hash included.
    q(pg_cluster, db, "INSERT INTO users VALUES (1, 'ann', 'hash-secret'); TRUNCATE users")
    rows = log_rows(pg_cluster, db)
    assert [(r[0], r[1]) for r in rows] == [("INSERT", "row"), ("TRUNCATE", "statement")]
    assert q(pg_cluster, db, "SELECT count(*) FROM audit.log WHERE log::text LIKE '%%hash-secret%%'") == [(0,)]
    assert rows[1][14] is None
    seen = info(pg_cluster, db)["tables"]["public.users"]["locksmith_audit_truncate"]
    assert seen["query_text"] is False and seen["app_user_setting"] == "app.user_id"
    # Without excluded columns the statement text stays, and the trigger is changed back once.
    again = run(pg_cluster, db, tables=["users"])
    assert "replace trigger locksmith_audit_truncate on public.users" in again["actions"]
    q(pg_cluster, db, "TRUNCATE users")
    assert log_rows(pg_cluster, db)[-1][14] == "TRUNCATE users"
    assert run(pg_cluster, db, tables=["users"])["changed"] is False


def test_an_excluded_primary_key_column_stays_out_of_record_key(pg_cluster, pg_database):
    db = pg_database
    q(pg_cluster, db, "CREATE TABLE accounts (tenant int, email text, plan text, PRIMARY KEY (tenant, email))")
    result = run(pg_cluster, db, tables=["accounts"], exclude_columns=["email"])
    assert result["changed"] is True, result
    assert "email" in json.dumps(result.get("warnings")), result
    q(pg_cluster, db, "INSERT INTO accounts VALUES (7, 'ann@example.com', 'free')")
    q(pg_cluster, db, "UPDATE accounts SET plan = 'pro'")
    q(pg_cluster, db, "DELETE FROM accounts")
    rows = log_rows(pg_cluster, db)
    assert [r[0] for r in rows] == ["INSERT", "UPDATE", "DELETE"]
    assert [r[4] for r in rows] == [{"tenant": 7}] * 3
    assert q(pg_cluster, db, "SELECT count(*) FROM audit.log WHERE log::text LIKE '%%example.com%%'") == [(0,)]
    assert info(pg_cluster, db)["tables"]["public.accounts"]["locksmith_audit_insert"]["primary_key"] == ["tenant"]
    assert run(pg_cluster, db, tables=["accounts"], exclude_columns=["email"])["changed"] is False


def test_a_table_with_inheritance_children_warns_that_their_rows_are_not_logged(pg_cluster, pg_database):
    db = pg_database
    q(pg_cluster, db, "CREATE TABLE parent (id int PRIMARY KEY, v text); CREATE TABLE child (x int) INHERITS (parent)")
    result = run(pg_cluster, db, tables=["parent"])
    assert result["changed"] is True, result
    # Row triggers fire for the table a row is in: an UPDATE of parent that changes child's rows logs nothing.
    q(pg_cluster, db, "INSERT INTO child VALUES (1, 'a', 1); UPDATE parent SET v = 'b'")
    assert log_rows(pg_cluster, db) == []
    assert "public.child" in json.dumps(result.get("warnings")), result


def test_a_schema_that_does_not_exist_is_refused(pg_cluster, pg_database):
    result = run(pg_cluster, pg_database, schema="pubilc")
    assert result.get("failed") is True, result
    assert result["msg"].startswith("schema 'pubilc' does not exist")
    assert not q(pg_cluster, pg_database, "SELECT 1 FROM pg_namespace WHERE nspname = 'audit'")
    assert run(pg_cluster, pg_database, schema="pubilc", state="absent").get("failed") is None


def test_a_session_that_lowers_float_precision_neither_hides_nor_rounds_changes(pg_cluster, pg_database):
    db = pg_database
    q(pg_cluster, db, "CREATE TABLE meters (id int PRIMARY KEY, reading float8, secret text)")
    assert run(pg_cluster, db, tables=["meters"], exclude_columns=["secret"])["changed"] is True
    # Any role may lower the precision of float output for its own session (a user-settable setting).
    q(
        pg_cluster,
        db,
        "SET extra_float_digits = -15; INSERT INTO meters VALUES (1, 1.2, 's'); UPDATE meters SET reading = 1.3",
    )
    rows = log_rows(pg_cluster, db)
    assert [(r[0], r[5], r[6]) for r in rows] == [
        ("INSERT", None, {"id": 1, "reading": 1.2}),
        ("UPDATE", {"id": 1, "reading": 1.2}, {"id": 1, "reading": 1.3}),
    ]
    # diff_only compares at full precision too; an update of the excluded column alone is still not logged; the
    # session keeps the setting it chose (the function sets its own only for its run).
    assert run(pg_cluster, db, tables=["meters"], exclude_columns=["secret"], diff_only=True)["changed"] is True
    shown = q(
        pg_cluster,
        db,
        "SET extra_float_digits = -15; UPDATE meters SET reading = 1.4; UPDATE meters SET secret = 'excluded-2'; "
        "SELECT current_setting('extra_float_digits'), reading::text FROM meters",
    )
    assert shown == [("-15", "1")]
    rows = log_rows(pg_cluster, db)
    assert [(r[0], r[5], r[6]) for r in rows[2:]] == [("UPDATE", {"reading": 1.3}, {"reading": 1.4})]
    assert q(pg_cluster, db, "SELECT count(*) FROM audit.log WHERE log::text LIKE '%%excluded-2%%'") == [(0,)]


def test_a_when_clause_put_on_an_audit_trigger_is_drift(pg_cluster, pg_database):
    """WHEN (false) instead of ours, same name and arguments, would switch auditing off unseen."""
    db = pg_database
    q(pg_cluster, db, "CREATE TABLE users (id int PRIMARY KEY, name text, pw text)")
    audit = {"tables": ["users"], "operations": ["update"], "exclude_columns": ["pw"]}
    assert run(pg_cluster, db, **audit)["changed"] is True
    (definition,) = q(
        pg_cluster,
        db,
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'locksmith_audit_update'",
    )[0]
    assert "WHEN (audit.row_changed(old.*, new.*, " in definition, definition
    q(
        pg_cluster,
        db,
        "DROP TRIGGER locksmith_audit_update ON users; "
        + re.sub(r" WHEN \(.*\) EXECUTE ", " WHEN (false) EXECUTE ", definition),
    )
    again = run(pg_cluster, db, **audit)
    assert "replace trigger locksmith_audit_update on public.users" in again["actions"], again
    q(pg_cluster, db, "INSERT INTO users VALUES (1, 'ann', 'h'); UPDATE users SET name = 'anna'")
    assert [r[0] for r in log_rows(pg_cluster, db)] == ["UPDATE"]
    assert run(pg_cluster, db, **audit)["changed"] is False
    # The clause takes the rows whole and names no column: DROP COLUMN is neither blocked nor cascades to it.
    q(pg_cluster, db, "ALTER TABLE users DROP COLUMN name")
    assert run(pg_cluster, db, **audit)["changed"] is False
