"""module_utils/_audit.py pure helpers: option checks, identifiers, trigger specs and their SQL."""

from __future__ import annotations

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _audit, _audit_catalog
from ansible_collections.locksmith.ops.plugins.module_utils._audit_schema import LATEST_VERSION, MIGRATIONS
from ansible_collections.locksmith.ops.plugins.module_utils._postgres import InvalidIdentifier


def params(**over):
    base = {
        "database": "shop",
        "tables": ["users"],
        "schema": None,
        "state": "present",
        "capture": "row",
        "operations": ["insert", "update", "delete", "truncate"],
        "exclude_columns": [],
        "diff_only": False,
        "audit_schema": "audit",
        "app_user_setting": "app.user_id",
        "retention_days": 90,
        "partitions_ahead": 2,
        "auditor_role": None,
        "drop_log": False,
    }
    base.update(over)
    return base


INJECTIONS = ["users'; DROP TABLE --", "../../../etc/passwd", 'a"b', "x; SELECT 1", "", "tab\tle"]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_table_payloads_are_refused_naming_the_option(payload):
    with pytest.raises(InvalidIdentifier, match=r"tables\[1\] .*nothing was sent to the server"):
        _audit.parse_tables(["users", payload], "audit")


@pytest.mark.parametrize(
    "option,value,match",
    [
        ("audit_schema", "Audit", "audit_schema 'Audit' is not valid"),
        ("audit_schema", "au$dit", "audit_schema 'au\\$dit' is not valid"),
        ("app_user_setting", "user_id", "app_user_setting 'user_id' is not a custom setting name"),
        ("app_user_setting", "app.user'--", "app_user_setting .* is not a custom setting name"),
        # A trailing newline passed the old '$' anchor: the log then never held the app user id.
        ("app_user_setting", "app.user_id\n", "app_user_setting .* is not a custom setting name"),
        ("audit_schema", "audit\n", "audit_schema .* is not valid"),
        ("exclude_columns", ["ok", "bad col"], r"exclude_columns\[1\] 'bad col' is not a valid identifier"),
        ("auditor_role", "x'y", "auditor_role .* is not a valid identifier"),
        ("schema", "pub lic", "schema 'pub lic' is not a valid identifier"),
    ],
)
def test_option_formats_are_checked_before_any_connection(option, value, match):
    with pytest.raises(InvalidIdentifier, match=match):
        _audit.validate_options(params(**{option: value}))


def test_cross_field_rules():
    with pytest.raises(_audit.AuditError, match="capture=row"):
        _audit.validate_options(params(capture="statement", diff_only=True))
    with pytest.raises(_audit.AuditError, match="capture=row"):
        _audit.validate_options(params(capture="statement", exclude_columns=["pw"]))
    with pytest.raises(_audit.AuditError, match="is the audit schema itself"):
        _audit.validate_options(params(schema="audit", tables=None))
    with pytest.raises(_audit.AuditError, match="retention_days -1 must be between 0 and 36500"):
        _audit.validate_options(params(retention_days=-1))
    with pytest.raises(_audit.AuditError, match="retention_days 1000000000000 must be between 0 and 36500"):
        _audit.validate_options(params(retention_days=10**12))
    with pytest.raises(_audit.AuditError, match="partitions_ahead 2000 must be between 0 and 60"):
        _audit.validate_options(params(partitions_ahead=2000))
    with pytest.raises(_audit.AuditError, match="retention_max_age_seconds 0 must be above 0"):
        _audit.validate_options(params(retention_max_age_seconds=0))
    _audit.validate_options(params(retention_max_age_seconds=176400))
    with pytest.raises(_audit.AuditError, match="the log cannot audit itself"):
        _audit.parse_tables(["audit.log"], "audit")
    _audit.validate_options(params(auditor_role="auditor", schema="public", tables=None))


def test_tables_default_to_public_and_are_deduplicated():
    assert _audit.parse_tables(["users", "public.users", "sales.orders"], "audit") == [
        ("public", "users"),
        ("sales", "orders"),
    ]
    assert _audit.parse_tables(None, "audit") == []


@pytest.mark.parametrize("values", [[], ["id"], ["a", "b"], ['we"ird', "back\\slash", "com,ma", "sp ace", "{}"]])
def test_array_literal_round_trips(values):
    assert _audit_catalog.parse_array_literal(_audit_catalog.pg_array_literal(values)) == values


def test_unquoted_array_literal_parses():
    assert _audit_catalog.parse_array_literal("{a,b}") == ["a", "b"]


def test_row_specs_carry_options_in_arguments():
    specs = _audit.desired_triggers(
        params(diff_only=True, exclude_columns=["pw"]), ["tenant", "id"], ["tenant", "id", "name", "pw"]
    )
    assert sorted(specs) == ["locksmith_audit_" + op for op in ("delete", "insert", "truncate", "update")]
    update = specs["locksmith_audit_update"]
    assert update["level"] == "row" and update["when"] is True and update["function"] == "audit.log_row"
    assert update["args"] == ["true", "app.user_id", '{"pw"}', '{"tenant","id","name"}', "tenant", "id"]
    assert specs["locksmith_audit_insert"]["when"] is False
    assert specs["locksmith_audit_truncate"] == {
        "operation": "truncate",
        "level": "statement",
        "function": "audit.log_statement",
        "args": ["app.user_id", "false"],  # with excluded columns: no statement text
        "when": False,
        "enabled": True,
    }
    assert _audit_catalog.describe_trigger(update) == {
        "operation": "update",
        "level": "row",
        "function": "audit.log_row",
        "diff_only": True,
        "app_user_setting": "app.user_id",
        "exclude_columns": ["pw"],
        "primary_key": ["tenant", "id"],
        "enabled": True,
    }


def test_statement_specs_and_foreign_arguments_are_described():
    specs = _audit.desired_triggers(params(capture="statement", operations=["update"]), ["id"])
    assert _audit_catalog.describe_trigger(specs["locksmith_audit_update"]) == {
        "operation": "update",
        "level": "statement",
        "function": "audit.log_statement",
        "app_user_setting": "app.user_id",
        "query_text": True,
        "enabled": True,
    }
    odd = {"operation": "insert", "level": "row", "function": "x.f", "args": ["1"], "when": False, "enabled": False}
    assert _audit_catalog.describe_trigger(odd)["args"] == ["1"]


def test_partition_range_of_monthly_and_default_partitions():
    assert _audit_catalog.partition_range("log_p202612") == ("2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
    assert _audit_catalog.partition_range("log_default") == (None, None)


def test_migrations_are_numbered_and_only_format_the_schema():
    assert [m[0] for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))
    for _version, _description, statements in MIGRATIONS:
        for text in statements:
            # Only {s}/{s_lit} placeholders; every other brace is doubled.
            stripped = text.replace("{s}", "").replace("{s_lit}", "").replace("{{", "").replace("}}", "")
            assert "{" not in stripped and "}" not in stripped, text[:80]
            assert "search_path" not in text or "SET search_path = ''" in text


# ---- the maintain() every run makes (schema version 6): no action, but a failure names it --------------------------
class _FailingCursor:
    """Executes every statement but maintain(), which fails as a server error would."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, statement):
        # The call, not the migration that creates the function.
        if str(statement).startswith("Composed([SQL('SELECT * FROM '), Identifier('audit'), SQL('.maintain(')"):
            raise _audit.psycopg2.errors.InsufficientPrivilege("permission denied for table retention_run\n")


class _FailingConn:
    def __init__(self):
        self.rolled_back = False

    def cursor(self):
        return _FailingCursor()

    def rollback(self):
        self.rolled_back = True

    def commit(self):
        raise AssertionError("a failed plan must not commit")


@pytest.mark.parametrize("version", [LATEST_VERSION, LATEST_VERSION - 1])
def test_a_failing_maintain_with_nothing_to_create_or_drop_is_named_in_the_error(monkeypatch, version):
    """Every run calls maintain() (it records the run); with nothing to create or drop that step is no action. When it
    fails, the message must still say that maintain() failed: not 'None failed', nor the migration before it."""
    schema = {"version": version, "exists": True, "partitions": [{"name": "log_default"}], "grants": []}
    monkeypatch.setattr(_audit, "read_schema", lambda conn, audit_schema: schema)
    monkeypatch.setattr(_audit, "resolve_tables", lambda conn, params, parsed: [])
    monkeypatch.setattr(_audit, "read_triggers", lambda conn, oids=None: {})
    monkeypatch.setattr(_audit, "_partition_actions", lambda conn, params, state: [])
    monkeypatch.setattr(_audit, "_detached", lambda conn, audit_schema, tables: [])
    monkeypatch.setattr(_audit, "_grant_steps", lambda params, current: ([], []))
    monkeypatch.setattr(_audit, "rendered", lambda conn, statement: str(statement))
    plan = _audit.plan_audit(None, params())
    migrations = ["migrate audit schema audit to version %d (%s)" % (v, d) for v, d, _sql in MIGRATIONS[version:]]
    assert _audit.step_actions(plan["steps"]) == migrations
    assert _audit.changed_steps(plan["steps"]) is (version < LATEST_VERSION)
    conn = _FailingConn()
    with pytest.raises(_audit.AuditError) as failure:
        _audit.apply_plan(conn, plan["steps"], check_mode=False)
    assert str(failure.value).startswith("run audit.maintain() failed: permission denied for table retention_run;")
    assert conn.rolled_back
