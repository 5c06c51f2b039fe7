"""audit_trigger and audit_trigger_info against a real PostgreSQL 15: what is logged, by whom, and who can touch it."""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid

import psycopg2
import pytest
from psycopg2 import errors, sql

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics
from ansible_collections.locksmith.ops.plugins.module_utils._audit_schema import LATEST_VERSION, MIGRATIONS, WRITER_ROLE
from tests.harness.ansible import run_module_inprocess

MODULE = "audit_trigger"


def _login(cluster):
    return {"login_host": cluster.host, "login_port": cluster.port, "ssl_mode": "disable", "connect_timeout": 5}


def run(cluster, database, check=False, diff=False, **args):
    return run_module_inprocess(MODULE, dict(_login(cluster), database=database, **args), check=check, diff=diff)


def info(cluster, database, **args):
    return run_module_inprocess("audit_trigger_info", dict(_login(cluster), database=database, **args))


def q(cluster, database, statement, params=None):
    return cluster.query(statement, params, dbname=database)


@pytest.fixture
def roles(pg_cluster, pg_database):
    """Make LOGIN roles with unique names; all dropped (with what they own in the test database) after."""
    made = []

    def make(prefix):
        name = "%s_%s" % (prefix, uuid.uuid4().hex[:8])
        pg_cluster.query('CREATE ROLE "%s" LOGIN' % name)
        made.append(name)
        return name

    yield make
    for name in made:
        q(pg_cluster, pg_database, 'REASSIGN OWNED BY "%s" TO postgres; DROP OWNED BY "%s"' % (name, name))
        pg_cluster.query('DROP ROLE "%s"' % name)


@pytest.fixture
def shop(pg_cluster, pg_database, roles):
    """A users table owned by a LOGIN application role (the role that writes it)."""
    app = roles("app")
    q(
        pg_cluster,
        pg_database,
        'CREATE TABLE users (id int PRIMARY KEY, name text, password_hash text);ALTER TABLE users OWNER TO "%s"' % app,
    )
    return {"db": pg_database, "app": app}


def as_role(cluster, database, role, statements, app_user=None):
    """Run statements in one session as role (autocommit), with the app user id set when given."""
    conn = cluster.connect(database, user=role)
    try:
        with conn.cursor() as cur:
            if app_user is not None:
                cur.execute("SELECT set_config('app.user_id', %s, false)", (app_user,))
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def log_rows(cluster, database, where="operation <> 'RETENTION'"):
    query = sql.SQL(
        "SELECT operation, capture, schema_name, table_name, record_key, old_data, new_data, db_role, "
        "app_user_id, transaction_id, logged_at, statement_at, application_name, client_addr::text, query "
        "FROM audit.log WHERE {} ORDER BY id"
    ).format(sql.SQL(where))
    return q(cluster, database, query)


def triggers(cluster, database, table="users"):
    return q(
        cluster,
        database,
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY 1",
        (table,),
    )


def schema_exists(cluster, database, name="audit"):
    return bool(q(cluster, database, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)))


def test_sequence_through_ansible_playbook(pg_cluster, shop, ansible):
    args = dict(_login(pg_cluster), database=shop["db"], tables=["users"], exclude_columns=["password_hash"])
    task = "locksmith.ops.audit_trigger"
    first = ansible.run_task(task, args, check=True, diff=True)
    assert first["changed"] is True, first
    assert "create trigger locksmith_audit_update on public.users" in first["actions"]
    assert not schema_exists(pg_cluster, shop["db"]) and triggers(pg_cluster, shop["db"]) == []

    real = ansible.run_task(task, args)
    assert real["changed"] is True and real["actions"] == first["actions"]
    again = ansible.run_task(task, args)
    # Only the retention, which every run applies (and which records its run): no action, no change.
    assert again["changed"] is False and again["actions"] == []
    assert again["executed_queries"] == ['SELECT * FROM "audit".maintain(90, 2)']
    check = ansible.run_task(task, args, check=True, diff=True)
    assert check["changed"] is False
    assert check["diff"]["before"] == check["diff"]["after"]

    names = [r[0] for r in triggers(pg_cluster, shop["db"])]
    assert names == ["locksmith_audit_" + op for op in ("delete", "insert", "truncate", "update")]
    assert q(pg_cluster, shop["db"], "SELECT max(version) FROM audit.schema_version") == [(LATEST_VERSION,)]
    secdef = q(
        pg_cluster,
        shop["db"],
        "SELECT proname, prosecdef, proconfig FROM pg_proc WHERE pronamespace = 'audit'::regnamespace "
        "AND proname LIKE 'log_%%' ORDER BY 1",
    )
    assert secdef == [
        ("log_row", True, ['search_path=""', "extra_float_digits=1"]),
        ("log_statement", True, ['search_path=""']),
    ]


def test_every_operation_is_logged_with_old_new_and_app_user(pg_cluster, shop):
    db, app = shop["db"], shop["app"]
    result = run(pg_cluster, db, tables=["users"], exclude_columns=["password_hash"])
    assert result["changed"] is True, result
    as_role(
        pg_cluster,
        db,
        app,
        [
            "INSERT INTO users VALUES (1, 'ann', 'hash-1')",
            "UPDATE users SET name = 'anna' WHERE id = 1",
            "UPDATE users SET password_hash = 'hash-2' WHERE id = 1",  # only an excluded column: not logged
            "DELETE FROM users WHERE id = 1",
            "INSERT INTO users VALUES (2, 'bob', 'hash-3')",
            "TRUNCATE users",
        ],
        app_user="user-42",
    )
    rows = log_rows(pg_cluster, db)
    assert [(r[0], r[1]) for r in rows] == [
        ("INSERT", "row"),
        ("UPDATE", "row"),
        ("DELETE", "row"),
        ("INSERT", "row"),
        ("TRUNCATE", "statement"),
    ]
    ins, upd, dele, _ins2, trunc = rows
    assert ins[4:7] == ({"id": 1}, None, {"id": 1, "name": "ann"})
    assert upd[4:7] == ({"id": 1}, {"id": 1, "name": "ann"}, {"id": 1, "name": "anna"})
    assert dele[4:7] == ({"id": 1}, {"id": 1, "name": "anna"}, None)
    # With excluded columns no statement text: it is the client's whole query string (test_audit_trigger_leaks.py).
    assert trunc[14] is None and trunc[5] is None and trunc[6] is None
    for row in rows:
        assert row[2:4] == ("public", "users")
        assert row[7] == app and row[8] == "user-42"
        assert row[9] > 0 and row[10] is not None and row[11] is not None
        assert row[13] == "127.0.0.1/32"
    # The excluded column never reaches the log, in any form.
    assert q(pg_cluster, db, "SELECT count(*) FROM audit.log WHERE log::text LIKE '%%hash-%%'") == [(0,)]
    # Without the setting, the app user id is null, not an error.
    as_role(pg_cluster, db, app, ["INSERT INTO users VALUES (3, 'cy', 'h')"])
    assert log_rows(pg_cluster, db)[-1][8] is None


def test_diff_only_stores_changed_fields_and_the_key(pg_cluster, shop):
    db = shop["db"]
    q(pg_cluster, db, "CREATE TABLE orders (tenant int, id int, total numeric, note text, PRIMARY KEY (tenant, id))")
    assert run(pg_cluster, db, tables=["users", "public.orders"], diff_only=True)["changed"] is True
    q(pg_cluster, db, "INSERT INTO orders VALUES (7, 1, 10, 'x'); UPDATE orders SET total = 12 WHERE id = 1")
    q(pg_cluster, db, "INSERT INTO users VALUES (1, 'ann', 'h'); UPDATE users SET name = 'anna', password_hash = 'i'")
    rows = log_rows(pg_cluster, db, "operation = 'UPDATE'")
    assert [(r[3], r[4], r[5], r[6]) for r in rows] == [
        ("orders", {"tenant": 7, "id": 1}, {"total": 10}, {"total": 12}),
        ("users", {"id": 1}, {"name": "ann", "password_hash": "h"}, {"name": "anna", "password_hash": "i"}),
    ]
    # A column added after the trigger was made is still compared (the slow path), and the run reports drift.
    q(pg_cluster, db, "ALTER TABLE orders ADD COLUMN extra int; UPDATE orders SET extra = 5, note = 'y'")
    last = log_rows(pg_cluster, db, "operation = 'UPDATE'")[-1]
    assert (last[5], last[6]) == ({"note": "x", "extra": None}, {"note": "y", "extra": 5})
    drift = run(pg_cluster, db, tables=["users", "public.orders"], diff_only=True)
    assert drift["actions"] == ["replace trigger locksmith_audit_update on public.orders"]
    # Inserts stay whole.
    assert log_rows(pg_cluster, db, "operation = 'INSERT' AND table_name = 'orders'")[0][6] == {
        "tenant": 7,
        "id": 1,
        "total": 10,
        "note": "x",
    }


def test_statement_capture_logs_one_entry_per_statement(pg_cluster, shop):
    db = shop["db"]
    assert run(pg_cluster, db, tables=["users"], capture="statement", operations=["insert", "update"])["changed"]
    q(pg_cluster, db, "INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 50) g")
    q(pg_cluster, db, "UPDATE users SET name = 'x' WHERE id <= 10")
    q(pg_cluster, db, "DELETE FROM users")  # not among the operations
    rows = log_rows(pg_cluster, db)
    assert [(r[0], r[1], r[4], r[5], r[6]) for r in rows] == [
        ("INSERT", "statement", None, None, None),
        ("UPDATE", "statement", None, None, None),
    ]
    assert rows[1][14] == "UPDATE users SET name = 'x' WHERE id <= 10"


def test_check_mode_predicts_and_changes_nothing(pg_cluster, shop):
    db = shop["db"]
    predicted = run(pg_cluster, db, check=True, diff=True, tables=["users"])
    assert predicted["changed"] is True
    assert not schema_exists(pg_cluster, db) and triggers(pg_cluster, db) == []
    assert predicted["diff"]["before"]["audit_schema"]["version"] == 0
    assert predicted["diff"]["after"]["audit_schema"]["version"] == LATEST_VERSION
    assert set(predicted["diff"]["after"]["tables"]["public.users"]) == {
        "locksmith_audit_" + op for op in ("insert", "update", "delete", "truncate")
    }
    real = run(pg_cluster, db, diff=True, tables=["users"])
    assert real["actions"] == predicted["actions"]
    assert real["executed_queries"] == predicted["executed_queries"]
    assert real["diff"]["after"] == predicted["diff"]["after"]

    # An option change is predicted as a replacement and not applied in check mode.
    change = run(pg_cluster, db, check=True, diff=True, tables=["users"], diff_only=True, operations=["update"])
    assert change["changed"] is True
    assert "replace trigger locksmith_audit_update on public.users" in change["actions"]
    assert "drop trigger locksmith_audit_insert on public.users" in change["actions"]
    assert len(triggers(pg_cluster, db)) == 4
    assert q(pg_cluster, db, "SELECT count(*) FROM pg_trigger WHERE tgargs::text LIKE '%%true%%'") == [(0,)]
    applied = run(pg_cluster, db, tables=["users"], diff_only=True, operations=["update"])
    assert applied["actions"] == change["actions"]
    assert [r[0] for r in triggers(pg_cluster, db)] == ["locksmith_audit_update"]
    assert run(pg_cluster, db, tables=["users"], diff_only=True, operations=["update"])["changed"] is False


def _month(day):
    return datetime.date(day.year, day.month, 1)


def _next_month(first):
    return datetime.date(first.year + first.month // 12, first.month % 12 + 1, 1)


def test_retention_drops_old_partitions_and_only_those(pg_cluster, shop):
    db = shop["db"]
    assert run(pg_cluster, db, tables=["users"], retention_days=0)["changed"] is True
    now = q(pg_cluster, db, "SELECT now() AT TIME ZONE 'UTC'")[0][0]
    # Real monthly partitions in the past (the test-only clock of maintain), and rows waiting in the default one.
    q(pg_cluster, db, "SELECT * FROM audit.maintain(0, 1, now() - interval '300 days')")
    ages = [400, 300, 200, 100, 60]
    for age in ages:
        q(
            pg_cluster,
            db,
            "INSERT INTO audit.log (logged_at, operation, schema_name, table_name, record_key) "
            "VALUES (now() - make_interval(days => %s), 'INSERT', 'public', 'users', %s)",
            (age, '{"age": %d}' % age),
        )
    cutoff = now - datetime.timedelta(days=90)
    months = {_month(now - datetime.timedelta(days=a)) for a in ages}
    months |= {_month(now - datetime.timedelta(days=300)), _next_month(_month(now - datetime.timedelta(days=300)))}
    expected = sorted(
        "log_p%04d%02d" % (m.year, m.month)
        for m in months
        if datetime.datetime.combine(_next_month(m), datetime.time()) <= cutoff
    )
    assert expected, "the test must drop something"

    predicted = run(pg_cluster, db, check=True, tables=["users"], retention_days=90)
    assert sorted(a.split()[2].split(".")[1] for a in predicted["actions"] if a.startswith("drop partition")) == (
        expected
    )
    assert q(pg_cluster, db, "SELECT count(*) FROM audit.log WHERE operation = 'RETENTION'") == [(0,)]
    assert q(pg_cluster, db, "SELECT count(*) FROM audit.log") == [(len(ages),)]

    assert run(pg_cluster, db, tables=["users"], retention_days=90)["changed"] is True
    parts = {p["name"] for p in info(pg_cluster, db)["partitions"]}
    assert not parts & set(expected)
    this_month = "log_p%04d%02d" % (now.year, now.month)
    assert {this_month, "log_default"} <= parts
    kept = sorted(r[0]["age"] for r in q(pg_cluster, db, "SELECT record_key FROM audit.log WHERE record_key ? 'age'"))
    assert kept == sorted(
        a
        for a in ages
        if datetime.datetime.combine(_next_month(_month(now - datetime.timedelta(days=a))), datetime.time()) > cutoff
    )
    assert 60 in kept and 400 not in kept
    logged = q(pg_cluster, db, "SELECT new_data FROM audit.log WHERE operation = 'RETENTION'")
    assert len(logged) == 1 and sorted(logged[0][0]["dropped_partitions"]) == expected
    assert logged[0][0]["retention_days"] == 90
    assert run(pg_cluster, db, tables=["users"], retention_days=90)["changed"] is False


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("tables", ["users'; DROP TABLE --"], r"tables\[0\] .* is not a valid identifier"),
        (
            "tables",
            ["../../../etc/passwd"],
            r"tables\[0\] '\.\./\.\./\.\./etc/passwd' must be 'table' or 'schema\.table'",
        ),
        ("tables", ["users", "public.users; DROP SCHEMA public"], r"tables\[1\] .* is not a valid identifier"),
        ("exclude_columns", ["x'); DROP TABLE users; --"], r"exclude_columns\[0\] .* is not a valid identifier"),
        ("audit_schema", "audit; DROP TABLE users", r"audit_schema .* is not valid"),
        ("auditor_role", "../../etc/passwd", r"auditor_role .* is not a valid identifier"),
        ("app_user_setting", "x') OR 1=1 --", r"app_user_setting .* is not a custom setting name"),
    ],
)
def test_injection_payloads_fail_cleanly_and_nothing_runs(pg_cluster, shop, option, value, message):
    db = shop["db"]
    args = {"tables": ["users"], option: value}
    result = run(pg_cluster, db, **args)
    assert result.get("failed") is True
    assert result["msg"].startswith(option) or option in result["msg"]
    assert "nothing was sent to the server" in result["msg"]
    assert re.search(message, result["msg"]), result["msg"]
    assert result["executed_queries"] == []
    assert not schema_exists(pg_cluster, db) and not schema_exists(pg_cluster, db, "audit; DROP TABLE users")
    assert q(pg_cluster, db, "SELECT to_regclass('public.users') IS NOT NULL") == [(True,)]
    assert triggers(pg_cluster, db) == []


def test_application_role_cannot_modify_the_log(pg_cluster, shop, roles):
    db, app = shop["db"], shop["app"]
    auditor = roles("auditor")
    assert run(pg_cluster, db, tables=["users"], auditor_role=auditor)["changed"] is True
    as_role(pg_cluster, db, app, ["INSERT INTO users VALUES (1, 'ann', 'h')"], app_user="u1")
    for statement in (
        "UPDATE audit.log SET app_user_id = 'someone else'",
        "DELETE FROM audit.log",
        "TRUNCATE audit.log",
        "TRUNCATE audit.log_default",
        "DROP TABLE audit.log",
        "SELECT * FROM audit.log",
        "INSERT INTO audit.log (operation, schema_name, table_name) VALUES ('INSERT', 'x', 'y')",
        "SELECT audit.maintain(0, 0)",
    ):
        with pytest.raises((errors.InsufficientPrivilege, errors.UndefinedTable)):
            as_role(pg_cluster, db, app, [statement])
    # Nor can it manage the audit: the module, run as the app role, fails with the cause and a fix.
    denied = run(pg_cluster, db, tables=["users"], login_user=app)
    assert denied["failed"] and "reading the audit state in database" in denied["msg"]
    assert "permission denied" in denied["msg"] and "login_user" in denied["msg"]
    assert info(pg_cluster, db, login_user=app)["failed"] is True
    # The auditor reads and cannot write either.
    as_role(pg_cluster, db, auditor, ["SELECT count(*) FROM audit.log"])
    for statement in ("UPDATE audit.log SET app_user_id = 'x'", "DELETE FROM audit.log", "TRUNCATE audit.log"):
        with pytest.raises(errors.InsufficientPrivilege):
            as_role(pg_cluster, db, auditor, [statement])
    assert q(pg_cluster, db, "SELECT count(*), min(app_user_id) FROM audit.log") == [(1, "u1")]
    # A grant made by hand is revoked on the next run; the auditor's stays.
    q(pg_cluster, db, 'GRANT USAGE ON SCHEMA audit TO "%s"; GRANT DELETE ON audit.log TO "%s"' % (app, app))
    fixed = run(pg_cluster, db, tables=["users"], auditor_role=auditor)
    assert fixed["changed"] is True
    assert sorted(fixed["actions"]) == [
        "revoke DELETE on audit log from %s" % app,
        "revoke USAGE on audit schema from %s" % app,
    ]
    grants = info(pg_cluster, db)["grants"]
    assert {(g["object"], g["grantee"], g["privilege"]) for g in grants} == {
        ("log", auditor, "SELECT"),
        ("schema", auditor, "USAGE"),
        ("schema_version", auditor, "SELECT"),
        # The trigger functions' owner (migration 3) writes the log, and may do nothing else.
        ("log", WRITER_ROLE, "INSERT"),
        ("schema", WRITER_ROLE, "USAGE"),
    }


def test_absent_removes_triggers_and_keeps_the_log(pg_cluster, shop):
    db = shop["db"]
    q(pg_cluster, db, "CREATE TABLE notes (id int PRIMARY KEY, body text)")
    run(pg_cluster, db, tables=["users", "notes"])
    q(pg_cluster, db, "INSERT INTO users VALUES (1, 'ann', 'h')")
    removed = run(pg_cluster, db, tables=["users", "missing_table"], state="absent")
    assert removed["changed"] is True
    assert all(a.startswith("drop trigger") and "public.users" in a for a in removed["actions"])
    assert triggers(pg_cluster, db) == [] and len(triggers(pg_cluster, db, "notes")) == 4
    assert q(pg_cluster, db, "SELECT count(*) FROM audit.log") == [(1,)]
    assert run(pg_cluster, db, tables=["users"], state="absent")["changed"] is False
    refused = run(pg_cluster, db, tables=["users"], state="absent", drop_log=True)
    assert refused["failed"] is True and "public.notes" in refused["msg"]
    assert schema_exists(pg_cluster, db)
    dropped = run(pg_cluster, db, tables=["notes"], state="absent", drop_log=True)
    assert dropped["changed"] is True and not schema_exists(pg_cluster, db)
    assert run(pg_cluster, db, tables=["notes"], state="absent", drop_log=True)["changed"] is False


def test_schema_mode_drift_and_info(pg_cluster, shop, tmp_path):
    db = shop["db"]
    q(pg_cluster, db, "CREATE TABLE events (at timestamptz, kind text) PARTITION BY RANGE (at)")
    q(pg_cluster, db, "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    first = run(pg_cluster, db, schema="public", operations=["insert", "update"], metrics_dir=str(tmp_path))
    assert first["changed"] is True
    assert set(first["trigger"]["tables"]) == {"public.events", "public.users"}
    assert "public.events has no primary key" in json.dumps(first.get("warnings"))
    q(pg_cluster, db, "INSERT INTO events VALUES ('2026-05-01', 'x')")
    assert log_rows(pg_cluster, db)[0][3] == "events_2026"

    # A disabled trigger is drift: the next run re-enables it, and a new table is picked up.
    q(
        pg_cluster,
        db,
        "ALTER TABLE users DISABLE TRIGGER locksmith_audit_insert; CREATE TABLE extra (id int PRIMARY KEY)",
    )
    fixed = run(pg_cluster, db, schema="public", operations=["insert", "update"])
    assert sorted(fixed["actions"]) == [
        "create trigger locksmith_audit_insert on public.extra",
        "create trigger locksmith_audit_update on public.extra",
        "replace trigger locksmith_audit_insert on public.users",
    ]
    assert ("locksmith_audit_insert", "O") in triggers(pg_cluster, db)

    seen = info(pg_cluster, db)
    assert seen["changed"] is False and seen["exists"] is True and seen["schema_version"] == LATEST_VERSION
    assert set(seen["tables"]) == {"public.events", "public.users", "public.extra"}
    assert seen["tables"]["public.users"]["locksmith_audit_update"]["primary_key"] == ["id"]
    assert seen["log_size_bytes"] > 0
    ranged = [p for p in seen["partitions"] if p["range_from"]]
    assert len(ranged) == 3 and all(p["range_from"] < p["range_to"] for p in ranged)
    prom = (tmp_path / ("locksmith_audit_%s.prom" % db)).read_text()
    assert 'locksmith_audit_log_bytes{database="%s"}' % db in prom
    assert "locksmith_audit_retention_last_run_timestamp_seconds" in prom
    assert info(pg_cluster, db, audit_schema="nothing_here")["exists"] is False


def test_failures_name_the_input(pg_cluster, shop):
    db = shop["db"]
    missing = run(pg_cluster, db, tables=["users", "nope"])
    assert missing["failed"] and missing["msg"].startswith("tables[1] 'public.nope' does not exist")
    typo = run(pg_cluster, db, tables=["users"], exclude_columns=["pasword_hash"])
    assert typo["failed"] and "exclude_columns[0] 'pasword_hash'" in typo["msg"]
    role = run(pg_cluster, db, tables=["users"], auditor_role="no_such_role_x")
    assert role["failed"] and "auditor_role 'no_such_role_x' does not exist" in role["msg"]
    mixed = run(pg_cluster, db, tables=["users"], capture="statement", diff_only=True)
    assert mixed["failed"] and "capture=row" in mixed["msg"]
    q(pg_cluster, db, "CREATE SCHEMA audit; CREATE VIEW v AS SELECT 1 AS x")
    foreign = run(pg_cluster, db, tables=["users"])
    assert foreign["failed"] and "was not created by locksmith.ops" in foreign["msg"]
    view = run(pg_cluster, db, tables=["v"], audit_schema="audit2")
    assert view["failed"] and "is not a table" in view["msg"]
    assert not schema_exists(pg_cluster, db, "audit2")
    bad_login = run_module_inprocess(
        MODULE, dict(_login(pg_cluster), login_port=1, database=db, tables=["users"], connect_timeout=2)
    )
    assert bad_login["failed"] and "check login_host and login_port" in bad_login["msg"]
    with pytest.raises(psycopg2.Error):
        q(pg_cluster, db, "SELECT * FROM audit.log")
    bad_info = info(pg_cluster, db, audit_schema="audit; DROP TABLE users")
    assert bad_info["failed"] and bad_info["msg"].startswith("audit_schema ")
    foreign_info = info(pg_cluster, db)
    assert foreign_info["failed"] and "was not created by locksmith.ops" in foreign_info["msg"]


def _install_version(cluster, database, version=1):
    """The audit schema exactly as a release whose newest migration was `version` left it."""
    conn = cluster.connect(database)
    try:
        with conn.cursor() as cur:
            for number, description, statements in MIGRATIONS[:version]:
                for text in statements:
                    cur.execute(sql.SQL(text).format(s=sql.Identifier("audit"), s_lit=sql.Literal("audit")))
                cur.execute(
                    "INSERT INTO audit.schema_version (version, description) VALUES (%s, %s)", (number, description)
                )
    finally:
        conn.close()


def test_upgrade_from_version_1_is_one_idempotent_migration(pg_cluster, shop):
    db = shop["db"]
    assert LATEST_VERSION >= 2
    _install_version(pg_cluster, db)
    # A version 1 module run: partitions (with their CHECK copies), triggers and an entry with old rows.
    q(pg_cluster, db, "SELECT * FROM audit.maintain(90, 1)")
    trigger = "CREATE TRIGGER {} AFTER {} ON users FOR EACH {} EXECUTE FUNCTION audit.{}"
    for name, event in (("insert", "INSERT"), ("update", "UPDATE"), ("delete", "DELETE")):
        call = "log_row('false', 'app.user_id', '{}', '{}', 'id')"
        q(pg_cluster, db, trigger.format("locksmith_audit_" + name, event, "ROW", call))
    q(
        pg_cluster,
        db,
        trigger.format("locksmith_audit_truncate", "TRUNCATE", "STATEMENT", "log_statement('app.user_id')"),
    )
    q(pg_cluster, db, "INSERT INTO users VALUES (1, 'ann', 'h')")
    checks = "SELECT count(*) FROM pg_constraint WHERE contype = 'c' AND connamespace = 'audit'::regnamespace"
    assert q(pg_cluster, db, checks)[0][0] >= 4  # the log, its default and monthly partitions

    args = {"tables": ["users"], "operations": ["insert", "update", "delete", "truncate"], "partitions_ahead": 1}
    predicted = run(pg_cluster, db, check=True, diff=True, **args)
    assert predicted["changed"] is True
    assert predicted["actions"] == [
        *("migrate audit schema audit to version %d (%s)" % (v, d) for v, d, _sql in MIGRATIONS[1:]),
        "grant INSERT on audit log to %s" % WRITER_ROLE,
        "grant USAGE on audit schema to %s" % WRITER_ROLE,
    ]
    assert predicted["diff"]["before"]["audit_schema"]["version"] == 1
    assert predicted["diff"]["after"]["audit_schema"]["version"] == LATEST_VERSION
    # Existing partitions are neither predicted as created nor touched.
    assert (
        predicted["diff"]["after"]["audit_schema"]["partitions"]
        == predicted["diff"]["before"]["audit_schema"]["partitions"]
    )
    assert q(pg_cluster, db, "SELECT max(version) FROM audit.schema_version") == [(1,)]

    upgraded = run(pg_cluster, db, **args)
    assert upgraded["changed"] is True and upgraded["actions"] == predicted["actions"]
    assert q(pg_cluster, db, "SELECT max(version) FROM audit.schema_version") == [(LATEST_VERSION,)]
    assert q(pg_cluster, db, checks) == [(0,)]
    again = run(pg_cluster, db, **args)
    assert again["changed"] is False and again["executed_queries"] == ['SELECT * FROM "audit".maintain(90, 1)']

    # The triggers made by version 1 were kept (same arguments) and now run the new function.
    q(pg_cluster, db, "UPDATE users SET name = 'anna'; DELETE FROM users")
    rows = log_rows(pg_cluster, db)
    assert [(r[0], r[4], r[5], r[6]) for r in rows] == [
        ("INSERT", {"id": 1}, None, {"id": 1, "name": "ann", "password_hash": "h"}),
        (
            "UPDATE",
            {"id": 1},
            {"id": 1, "name": "ann", "password_hash": "h"},
            {"id": 1, "name": "anna", "password_hash": "h"},
        ),
        ("DELETE", {"id": 1}, {"id": 1, "name": "anna", "password_hash": "h"}, None),
    ]
    # A partition created after the upgrade has no CHECK copy either.
    q(pg_cluster, db, "SELECT audit.create_partition('2020-01-01')")
    assert q(pg_cluster, db, checks) == [(0,)]


# ---- what code inside the triggers can do -----------------------------------------------------------
# to_jsonb(NEW) calls any cast to json that the owner of a column's type created. The owner of an audited table
# can add a column of their own enum with such a cast, so the cast's function runs inside the trigger function
# with the rights of that function's owner: before migration 3 the role that ran the module, a superuser.
CAST = (
    "CREATE OR REPLACE FUNCTION mood_json(mood) RETURNS json LANGUAGE plpgsql AS $f$ "
    "BEGIN EXECUTE %s; RETURN to_json($1::text); END $f$"
)


def test_a_cast_in_the_trigger_runs_as_the_writer_and_cannot_escalate_or_drop(pg_cluster, shop):
    db, app = shop["db"], shop["app"]
    q(pg_cluster, db, 'GRANT CREATE ON SCHEMA public TO "%s"' % app)
    assert run(pg_cluster, db, tables=["users"])["changed"] is True
    assert q(
        pg_cluster,
        db,
        "SELECT proname::text, pg_get_userbyid(proowner)::text FROM pg_proc "
        "WHERE pronamespace = 'audit'::regnamespace AND prosecdef ORDER BY 1",
    ) == [("log_row", WRITER_ROLE), ("log_statement", WRITER_ROLE)]
    assert q(
        pg_cluster,
        db,
        "SELECT rolsuper, rolcanlogin, rolinherit, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
        "WHERE rolname = %s",
        (WRITER_ROLE,),
    ) == [(False, False, False, False, False, False)]
    before = triggers(pg_cluster, db)

    # The owner of users turns a column of its own type into code that runs inside the trigger.
    escalate = "'ALTER ROLE %s SUPERUSER'" % app
    as_role(
        pg_cluster,
        db,
        app,
        [
            "CREATE TYPE mood AS ENUM ('happy')",
            CAST % escalate,
            "CREATE CAST (mood AS json) WITH FUNCTION mood_json(mood)",
            "ALTER TABLE users ADD COLUMN m mood",
        ],
    )
    with pytest.raises(psycopg2.Error, match=r"permission denied|must be superuser"):
        as_role(pg_cluster, db, app, ["INSERT INTO users VALUES (1, 'ann', 'h', 'happy')"])
    assert q(pg_cluster, db, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (app,)) == [(False,)]

    # Nor can it take the audit away: dropping the trigger function would cascade to every audit trigger.
    as_role(pg_cluster, db, app, [CAST % "'DROP FUNCTION audit.log_row() CASCADE'"])
    with pytest.raises(psycopg2.Error, match="locksmith_audit_writer may not run DROP FUNCTION"):
        as_role(pg_cluster, db, app, ["INSERT INTO users VALUES (2, 'bob', 'h', 'happy')"])
    assert triggers(pg_cluster, db) == before
    assert q(pg_cluster, db, "SELECT count(*) FROM users") == [(0,)]

    # What it may do is insert into the log, as the triggers do; a harmless cast keeps working.
    as_role(pg_cluster, db, app, [CAST % "'SELECT 1'", "INSERT INTO users VALUES (3, 'cy', 'h', 'happy')"])
    assert q(pg_cluster, db, "SELECT new_data->>'m' FROM audit.log WHERE operation = 'INSERT'") == [("happy",)]
    assert run(pg_cluster, db, tables=["users"])["changed"] is False


def test_upgrade_from_version_4_takes_the_when_clause_off_excluded_column_triggers(pg_cluster, shop):
    """Version 4 put the excluded-only test in a WHEN clause, run with the caller's extra_float_digits."""
    db = shop["db"]
    _install_version(pg_cluster, db, 4)
    q(pg_cluster, db, "GRANT USAGE ON SCHEMA audit TO %s; GRANT INSERT ON audit.log TO %s" % (WRITER_ROLE, WRITER_ROLE))
    q(pg_cluster, db, "SELECT * FROM audit.maintain(90, 1)")
    q(
        pg_cluster,
        db,
        "CREATE TRIGGER locksmith_audit_update AFTER UPDATE ON users FOR EACH ROW WHEN ("
        "(to_jsonb(OLD.*) - '{password_hash}'::text[]) IS DISTINCT FROM (to_jsonb(NEW.*) - '{password_hash}'::text[])) "
        "EXECUTE FUNCTION audit.log_row('false', 'app.user_id', '{password_hash}', '{}', 'id')",
    )
    args = {"tables": ["users"], "operations": ["update"], "exclude_columns": ["password_hash"], "partitions_ahead": 1}
    upgraded = run(pg_cluster, db, **args)
    assert upgraded["actions"] == [
        *("migrate audit schema audit to version %d (%s)" % (v, d) for v, d, _sql in MIGRATIONS[4:]),
        "replace trigger locksmith_audit_update on public.users",
    ], upgraded
    assert run(pg_cluster, db, **args)["changed"] is False
    q(pg_cluster, db, "INSERT INTO users VALUES (1, 'ann', 'h')")
    q(pg_cluster, db, "UPDATE users SET password_hash = 'h2'; UPDATE users SET name = 'anna'")
    rows = log_rows(pg_cluster, db)
    assert [(r[0], r[5], r[6]) for r in rows] == [("UPDATE", {"id": 1, "name": "ann"}, {"id": 1, "name": "anna"})]


# ---- the retention run the metrics publish --------------------------------------------------------------------------
def _recorded_run(cluster, database):
    """The newest completed maintain() as the audit schema recorded it (Unix seconds)."""
    return q(cluster, database, "SELECT floor(extract(epoch FROM ran_at))::bigint FROM audit.retention_run")[0][0]


def _age_the_record(cluster, database, days=3):
    """Move the recorded run back, so that a run which records itself shows as a jump of days."""
    q(cluster, database, "UPDATE audit.retention_run SET ran_at = ran_at - make_interval(days => %s)", (days,))
    return _recorded_run(cluster, database)


def _published(path, database):
    return {
        name: value
        for (name, labels), value in _metrics.parse(path.read_text()).items()
        if labels == (("database", database),)
    }


def test_the_published_retention_run_is_the_recorded_one_and_a_failed_run_records_nothing(pg_cluster, shop, tmp_path):
    """The metric said when Ansible ran: a retention that stopped or failed looked fresh after every run. Now every
    completed maintain() (the module's, the timer's, pg_cron's) records its end in the audit schema, a failing one
    rolls back with its record, and the module publishes the record."""
    db = shop["db"]
    args = {"tables": ["users"], "metrics_dir": str(tmp_path), "retention_max_age_seconds": 176400}
    prom = tmp_path / _metrics.textfile_name("audit", db)
    first = run(pg_cluster, db, **args)
    assert first["changed"] is True and first["metrics_file"] == str(prom)
    ran = _recorded_run(pg_cluster, db)
    assert abs(ran - time.time()) < 60
    published = _published(prom, db)
    assert published["locksmith_audit_retention_last_run_timestamp_seconds"] == ran
    assert published["locksmith_audit_retention_max_age_seconds"] == 176400
    assert published["locksmith_audit_log_bytes"] == info(pg_cluster, db)["log_size_bytes"] > 0

    # A run of maintain() from elsewhere (the timer's psql, pg_cron) records itself.
    old = _age_the_record(pg_cluster, db)
    q(pg_cluster, db, "SELECT * FROM audit.maintain(90, 2)")
    assert _recorded_run(pg_cluster, db) >= old + 3 * 86400 - 5

    # A failing one records nothing: a view on a partition past the retention keeps maintain() from dropping it.
    stale = _age_the_record(pg_cluster, db)
    q(
        pg_cluster,
        db,
        "SELECT audit.create_partition('2020-01-01'); CREATE VIEW keeps_2020 AS SELECT * FROM audit.log_p202001",
    )
    with pytest.raises(psycopg2.Error, match="depend"):
        q(pg_cluster, db, "SELECT * FROM audit.maintain(90, 2)")
    assert _recorded_run(pg_cluster, db) == stale
    # Nor does the module's failing run publish a fresh time: the file keeps the run it last published.
    failed = run(pg_cluster, db, **args)
    assert failed["failed"] is True and "run audit.maintain() failed" in failed["msg"], failed
    assert _recorded_run(pg_cluster, db) == stale
    assert _published(prom, db)["locksmith_audit_retention_last_run_timestamp_seconds"] == ran

    # Fixed, the module's run drops the partition and publishes its own, recorded, run.
    q(pg_cluster, db, "DROP VIEW keeps_2020")
    fixed = run(pg_cluster, db, **args)
    assert fixed["changed"] is True and "drop partition audit.log_p202001 (retention_days=90)" in fixed["actions"]
    ran = _recorded_run(pg_cluster, db)
    assert abs(ran - time.time()) < 60
    assert _published(prom, db)["locksmith_audit_retention_last_run_timestamp_seconds"] == ran

    # With nothing to create or drop, a run still applies the retention and records it, and reports no change.
    old = _age_the_record(pg_cluster, db)
    predicted = run(pg_cluster, db, check=True, **args)
    assert predicted["changed"] is False and predicted["actions"] == []
    assert _recorded_run(pg_cluster, db) == old
    again = run(pg_cluster, db, **args)
    assert again["changed"] is False and again["actions"] == [], again
    assert again["executed_queries"] == predicted["executed_queries"] == ['SELECT * FROM "audit".maintain(90, 2)']
    assert _recorded_run(pg_cluster, db) >= old + 3 * 86400 - 5
    assert _published(prom, db)["locksmith_audit_retention_last_run_timestamp_seconds"] == _recorded_run(pg_cluster, db)
