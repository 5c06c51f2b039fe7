# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Audit triggers: check the options, plan the change, apply it in one transaction.

Planning only reads (through _audit_catalog). The plan is a list of psycopg2.sql statements plus a
human-readable action for each, so check mode and --diff show exactly what a real run does; apply() runs them in one
transaction and rolls back in check mode.
"""

from __future__ import annotations

import re

from ansible_collections.locksmith.ops.plugins.module_utils._audit_catalog import (
    TRIGGER_PREFIX,
    AuditError,
    describe_trigger,
    pg_array_literal,
    read_schema,
    read_triggers,
    resolve_tables,
)
from ansible_collections.locksmith.ops.plugins.module_utils._audit_schema import LATEST_VERSION, MIGRATIONS, WRITER_ROLE
from ansible_collections.locksmith.ops.plugins.module_utils._metrics import Family
from ansible_collections.locksmith.ops.plugins.module_utils._postgres import (
    InvalidIdentifier,
    fetch_all,
    psycopg2,
    rendered,
    split_qualified,
    sql,
    validate_identifier,
)

OPERATIONS = ("insert", "update", "delete", "truncate")
# Statement-level triggers on the partitions of an audited partitioned table: locksmith_audit_partition_<op>.
PARTITION_INFIX = "partition_"
_EVENTS = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE", "truncate": "TRUNCATE"}
# Privilege names read from the catalog are mapped through this set, never formatted into SQL as read.
_PRIVILEGES = frozenset(
    ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "USAGE", "CREATE")
)
# Lower-case, no $: the name is written into dollar-quoted function bodies.
_AUDIT_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")
MAX_RETENTION_DAYS = 36500
MAX_PARTITIONS_AHEAD = 60
_SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")


def validate_options(params: dict) -> None:
    """Cross-field and format checks that need no server; raise InvalidIdentifier/AuditError naming the option."""
    if not _AUDIT_SCHEMA.match(params["audit_schema"] or ""):
        raise InvalidIdentifier(
            "audit_schema %r is not valid: use lower-case letters, digits and _, starting with a letter or _; "
            "nothing was sent to the server" % (params["audit_schema"],),
            option="audit_schema",
        )
    if not _SETTING.match(params["app_user_setting"] or ""):
        raise InvalidIdentifier(
            "app_user_setting %r is not a custom setting name such as 'app.user_id'; nothing was sent to the server"
            % (params["app_user_setting"],),
            option="app_user_setting",
        )
    # Names that need quoting are given quoted ('"first name"'); from here on params hold the names themselves.
    params["exclude_columns"] = [
        validate_identifier(column, "exclude_columns[%d]" % index, quoted=True)
        for index, column in enumerate(params.get("exclude_columns") or [])
    ]
    for option in ("auditor_role", "schema"):
        if params.get(option):
            params[option] = validate_identifier(params[option], option, quoted=True)
    if params.get("schema"):
        if params["schema"] == params["audit_schema"]:
            raise AuditError("schema %r is the audit schema itself; audit another schema" % params["schema"])
    if params["capture"] == "statement" and (params["diff_only"] or params.get("exclude_columns")):
        raise AuditError(
            "diff_only and exclude_columns apply to capture=row only (statement capture stores no row data); "
            "remove them or set capture=row"
        )
    # Upper bounds: maintain() takes integers, and each partition ahead is a table made on every run.
    for option, most in (("retention_days", MAX_RETENTION_DAYS), ("partitions_ahead", MAX_PARTITIONS_AHEAD)):
        if not 0 <= params[option] <= most:
            raise AuditError("%s %d must be between 0 and %d" % (option, params[option], most), option=option)
    max_age = params.get("retention_max_age_seconds")
    if max_age is not None and max_age <= 0:
        raise AuditError(
            "retention_max_age_seconds %d must be above 0: twice the retention schedule's interval plus some slack, "
            "for example 176400 for a daily timer, or leave it unset" % max_age,
            option="retention_max_age_seconds",
        )


def parse_tables(tables: list, audit_schema: str) -> list:
    """Validate every 'schema.table' of the tables option; return [(schema, table)] without duplicates."""
    out = []
    for index, value in enumerate(tables or []):
        option = "tables[%d]" % index
        schema, table = split_qualified(value, option, quoted=True)
        if schema == audit_schema:
            raise AuditError("%s %r is in the audit schema; the log cannot audit itself" % (option, value))
        if (schema, table) not in out:
            out.append((schema, table))
    return out


def desired_triggers(params: dict, key_columns: list, columns=(), partition=False) -> dict:
    """{trigger name: spec} for one table; a spec is what pg_trigger shows of the trigger.

    A partition gets only the statement-level ones (its parent's row triggers are cloned onto it), under
    their own names so that they never clash with those clones when capture changes.
    """
    specs = {}
    setting = params["app_user_setting"]
    for operation in params["operations"]:
        row = params["capture"] == "row" and operation != "truncate"
        if row:
            excluded = sorted(params.get("exclude_columns") or [])
            flag = "true" if params["diff_only"] else "false"
            # diff_only compares the known columns one by one (fast); others are still caught, slower.
            compared = (
                [c for c in columns if c not in excluded] if params["diff_only"] and operation == "update" else []
            )
            # An excluded key column stays out of record_key too: the log never holds its value.
            key = [c for c in key_columns if c not in excluded]
            args = (flag, setting, pg_array_literal(excluded), pg_array_literal(compared), *key)
            # Updates of excluded columns only are kept out by the trigger's WHEN clause (row_changed).
            when = operation == "update" and bool(excluded)
        elif params.get("exclude_columns"):
            # The statement text may carry excluded values (the client's whole query string): not stored.
            args, when = (setting, "false"), False
        else:
            args, when = (setting,), False
        if partition and row:
            continue
        specs[TRIGGER_PREFIX + (PARTITION_INFIX if partition else "") + operation] = {
            "operation": operation,
            "level": "row" if row else "statement",
            "function": "%s.%s" % (params["audit_schema"], "log_row" if row else "log_statement"),
            "args": list(args),
            "when": when,
            "enabled": True,
        }
    return specs


# ---- planning -------------------------------------------------------------------------------------
def _migration_steps(audit_schema: str, from_version: int) -> list:
    ident, lit = sql.Identifier(audit_schema), sql.Literal(audit_schema)
    steps = []
    for version, description, statements in MIGRATIONS:
        if version <= from_version:
            continue
        action = "migrate audit schema %s to version %d (%s)" % (audit_schema, version, description)
        # Label the first statement only: actions list each migration once.
        steps.extend(
            (None if index else action, sql.SQL(text).format(s=ident, s_lit=lit))
            for index, text in enumerate(statements)
        )
        steps.append(
            (
                None,
                sql.SQL("INSERT INTO {}.schema_version (version, description) VALUES ({}, {})").format(
                    ident, sql.Literal(version), sql.Literal(description)
                ),
            )
        )
    return steps


def _partition_actions(conn, params: dict, schema_state: dict) -> list:
    """[(action, partition name)] that maintain() would run now."""
    audit_schema = params["audit_schema"]
    # partition_plan() exists since version 1; an upgrade reads it before the migration runs.
    if schema_state["version"] >= 1:
        rows = fetch_all(
            conn,
            sql.SQL("SELECT action, partition_name FROM {}.partition_plan(%(ahead)s, %(days)s)").format(
                sql.Identifier(audit_schema)
            ),
            {"ahead": params["partitions_ahead"], "days": params["retention_days"]},
        )
        return [(r["action"], r["partition_name"]) for r in rows]
    # A new schema: its log is empty, so only the months ahead are created.
    month = fetch_all(conn, "SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date AS m")[0]["m"]
    out = []
    for offset in range(params["partitions_ahead"] + 1):
        year, index = divmod(month.month - 1 + offset, 12)
        out.append(("create", "log_p%04d%02d" % (month.year + year, index + 1)))
    return out


def _grant_steps(params: dict, current: list) -> tuple:
    """(steps, desired grants) so that only the auditor role can read the log, and nobody else has rights."""
    ident = sql.Identifier(params["audit_schema"])
    auditor = params.get("auditor_role")
    # The trigger functions' owner (migration 3) writes the log; it needs nothing else.
    desired = [("log", WRITER_ROLE, "INSERT"), ("schema", WRITER_ROLE, "USAGE")]
    if auditor:
        desired += [("log", auditor, "SELECT"), ("schema", auditor, "USAGE"), ("schema_version", auditor, "SELECT")]
    desired.sort()
    steps = []
    for obj, grantee, privilege in current:
        if (obj, grantee, privilege) in desired:
            continue
        target = (
            sql.SQL("SCHEMA {}").format(ident)
            if obj == "schema"
            else sql.SQL("TABLE {}").format(sql.Identifier(params["audit_schema"], obj))
        )
        who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        steps.append(
            (
                "revoke %s on %s %s from %s" % (privilege, params["audit_schema"], obj, grantee),
                sql.SQL("REVOKE {} ON {} FROM {}").format(
                    sql.SQL(privilege if privilege in _PRIVILEGES else "ALL"), target, who
                ),
            )
        )
    for obj, grantee, privilege in desired:
        if (obj, grantee, privilege) in current:
            continue
        target = (
            sql.SQL("SCHEMA {}").format(ident)
            if obj == "schema"
            else sql.SQL("TABLE {}").format(sql.Identifier(params["audit_schema"], obj))
        )
        steps.append(
            (
                "grant %s on %s %s to %s" % (privilege, params["audit_schema"], obj, grantee),
                sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), target, sql.Identifier(grantee)),
            )
        )
    return steps, desired


def create_trigger_sql(table: dict, name: str, spec: dict):
    """CREATE TRIGGER for one spec; every name and argument is quoted by psycopg2.sql."""
    fn_schema, fn_name = spec["function"].split(".")
    when = sql.SQL("")
    if spec["when"]:
        # The rows go whole to row_changed, which compares them at full precision (schema version 5).
        when = sql.SQL(" WHEN ({}(OLD.*, NEW.*, {}::text[]))").format(
            sql.Identifier(fn_schema, "row_changed"), sql.Literal(spec["args"][2])
        )
    return sql.SQL("CREATE TRIGGER {} AFTER {} ON {} FOR EACH {}{} EXECUTE FUNCTION {}({})").format(
        sql.Identifier(name),
        sql.SQL(_EVENTS[spec["operation"]]),
        sql.Identifier(table["schema"], table["table"]),
        sql.SQL("ROW" if spec["level"] == "row" else "STATEMENT"),
        when,
        sql.Identifier(fn_schema, fn_name),
        sql.SQL(", ").join(sql.Literal(arg) for arg in spec["args"]),
    )


def _drop_trigger_sql(table: dict, name: str):
    return sql.SQL("DROP TRIGGER {} ON {}").format(
        sql.Identifier(name), sql.Identifier(table["schema"], table["table"])
    )


def _detached(conn, audit_schema: str, tables: list) -> list:
    """[{schema, table, tgname}] of our partition triggers on tables, not among ``tables``, that are no partition."""
    return fetch_all(
        conn,
        "SELECT n.nspname AS schema, c.relname AS table, t.tgname FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE t.tgname LIKE %(prefix)s AND NOT c.relispartition AND NOT t.tgisinternal AND t.tgparentid = 0 "
        "AND p.pronamespace = to_regnamespace(%(s)s) AND NOT (t.tgrelid = ANY(%(known)s::oid[])) ORDER BY 1, 2, 3",
        {
            "prefix": (TRIGGER_PREFIX + PARTITION_INFIX).replace("_", "\\_") + "%",
            "s": audit_schema,
            "known": [t["oid"] for t in tables],
        },
    )


def _described(triggers: dict) -> dict:
    return {name: describe_trigger(spec) for name, spec in sorted(triggers.items())}


def plan_audit(conn, params: dict) -> dict:
    """Read the state and return {steps, before, after, warnings, tables}; writes nothing."""
    parsed = parse_tables(params.get("tables"), params["audit_schema"])
    schema_state = read_schema(conn, params["audit_schema"])
    tables = resolve_tables(conn, params, parsed)
    current = read_triggers(conn, [t["oid"] for t in tables])
    steps, warnings = [], []
    after_schema = {"version": schema_state["version"], "partitions": [p["name"] for p in schema_state["partitions"]]}
    after_schema["grants"] = list(schema_state["grants"])
    after_tables = {}
    present = params["state"] == "present"

    if present:
        if params.get("auditor_role") and not fetch_all(
            conn, "SELECT 1 AS x FROM pg_roles WHERE rolname = %(r)s", {"r": params["auditor_role"]}
        ):
            raise AuditError(
                "auditor_role %r does not exist; create the role first or leave auditor_role unset"
                % params["auditor_role"],
                option="auditor_role",
            )
        excluded = params.get("exclude_columns") or []
        known = {c for t in tables for c in t["columns"]}
        for index, column in enumerate(excluded):
            if tables and column not in known:
                raise AuditError(
                    "exclude_columns[%d] %r is a column of none of the audited tables; check the spelling, "
                    "or the column's data would be logged" % (index, column),
                    option="exclude_columns[%d]" % index,
                )
        if schema_state["version"] < LATEST_VERSION:
            steps.extend(_migration_steps(params["audit_schema"], schema_state["version"]))
            if not schema_state["exists"]:
                after_schema["partitions"].append("log_default")
            after_schema["version"] = LATEST_VERSION
        parts = _partition_actions(conn, params, schema_state)
        maintain = sql.SQL("SELECT * FROM {}.maintain({}, {})").format(
            sql.Identifier(params["audit_schema"]),
            sql.Literal(params["retention_days"]),
            sql.Literal(params["partitions_ahead"]),
        )
        for action, name in parts:
            label = "retention_days=%d" % params["retention_days"] if action == "drop" else "partitions_ahead"
            steps.append(("%s partition %s.%s (%s)" % (action, params["audit_schema"], name, label), None))
            if action == "create" and name not in after_schema["partitions"]:
                after_schema["partitions"].append(name)
            if action == "drop" and name in after_schema["partitions"]:
                after_schema["partitions"].remove(name)
        # Every run applies the retention, so maintain() runs (and records the run, schema version 6) even with
        # nothing to create or drop; then it is no action and no change (step_actions()), but still named when it
        # fails: an unlabelled step would be reported as the step before it (a migration) or as None.
        label = "run %s.maintain()" % params["audit_schema"]
        steps.append((label if parts else _RecordOnly(label), maintain))
        after_schema["partitions"].sort()
        grant_steps, after_schema["grants"] = _grant_steps(params, schema_state["grants"])
        steps.extend(grant_steps)

    audited = {t["name"] for t in tables}
    for table in tables:
        have = current.get(table["name"], {})
        if present:
            if params["capture"] == "row" and not table["key_columns"] and not table.get("partition_of"):
                warnings.append(
                    "table %s has no primary key: its log entries have no record_key, so their history "
                    "cannot be followed row by row" % table["name"]
                )
            hidden = [c for c in table["key_columns"] if c in (params.get("exclude_columns") or [])]
            if params["capture"] == "row" and hidden:
                warnings.append(
                    "table %s: primary key column(s) %s are in exclude_columns, so record_key leaves them out and "
                    "may not tell rows apart" % (table["name"], ", ".join(hidden))
                )
            # Row triggers fire only for rows of the table itself; an inheritance child's rows are its own.
            unaudited = [c for c in table.get("children", []) if c not in audited]
            if unaudited:
                warnings.append(
                    "table %s has inheritance children that are not audited: %s; their rows are not logged, even "
                    "when written through %s; add them to tables" % (table["name"], ", ".join(unaudited), table["name"])
                )
            want = desired_triggers(params, table["key_columns"], table["columns"], bool(table.get("partition_of")))
        else:
            want = {}
        for name in sorted(set(have) | set(want)):
            if name in want and have.get(name) == want[name]:
                continue
            if name in have:
                verb = "replace" if name in want else "drop"
                steps.append(("%s trigger %s on %s" % (verb, name, table["name"]), _drop_trigger_sql(table, name)))
            if name in want:
                if name not in have:
                    steps.append(("create trigger %s on %s" % (name, table["name"]), None))
                steps.append((None, create_trigger_sql(table, name, want[name])))
        if have or want:
            after_tables[table["name"]] = _described(want)

    # A partition detached since keeps its statement-level triggers (PostgreSQL drops only the row clones): no run
    # would name it again, and it would go on logging TRUNCATEs of a table nobody audits.
    detached = set()
    for row in _detached(conn, params["audit_schema"], tables):
        name = "%s.%s" % (row["schema"], row["table"])
        detached.add(name)
        steps.append(
            (
                "drop trigger %s on %s (no longer a partition)" % (row["tgname"], name),
                _drop_trigger_sql(row, row["tgname"]),
            )
        )

    if not present and params["drop_log"] and schema_state["exists"]:
        targets = {t["name"] for t in tables}
        others = sorted(
            name
            for name, triggers in read_triggers(conn).items()
            if name not in targets
            and name not in detached
            and any(s["function"].split(".")[0] == params["audit_schema"] for s in triggers.values())
        )
        if others:
            raise AuditError(
                "drop_log=true would drop the audit triggers of tables not listed here too: %s; "
                "remove their audit first, or leave drop_log=false" % ", ".join(others),
                tables=others,
            )
        steps.append(
            (
                "drop audit schema %s with its log" % params["audit_schema"],
                sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(params["audit_schema"])),
            )
        )
        after_schema = {"version": 0, "partitions": [], "grants": []}

    before = {
        "audit_schema": {
            "version": schema_state["version"],
            "partitions": [p["name"] for p in schema_state["partitions"]],
            "grants": ["%s: %s on %s" % (g[1], g[2], g[0]) for g in schema_state["grants"]],
        },
        "tables": {name: _described(current.get(name, {})) for name in after_tables},
    }
    after_schema["grants"] = ["%s: %s on %s" % (g[1], g[2], g[0]) for g in after_schema["grants"]]
    after = {"audit_schema": after_schema, "tables": after_tables}
    return {"steps": steps, "before": before, "after": after, "warnings": warnings}


def retention_families(database: str, status: dict, max_age_seconds) -> list:
    """The metric families of locksmith_audit_<database>.prom for a retention status (read_retention_status).

    roles/audit/files/locksmith-audit-metrics writes the same file after each timer run; a unit test compares the two.
    """
    families = [
        Family("locksmith_audit_log_bytes", "Size of the audit log, all partitions").add(
            status["log_size_bytes"], database=database
        )
    ]
    # The time maintain() recorded, never a writer's clock: a run that failed or never happened must not look fresh.
    if status["last_run_timestamp"] is not None:
        families.append(
            Family(
                "locksmith_audit_retention_last_run_timestamp_seconds",
                "End of the newest completed audit retention run",
            ).add(status["last_run_timestamp"], database=database)
        )
    if max_age_seconds is not None:
        families.append(
            Family(
                "locksmith_audit_retention_max_age_seconds", "Age past which the audit retention run is overdue"
            ).add(max_age_seconds, database=database)
        )
    return families


class _RecordOnly(str):
    """The label of a step that is no action (the maintain() of a run with nothing to create or drop records the run
    only): it names the step when it fails, and is left out of the actions."""


def step_actions(steps: list) -> list:
    """The labels of the steps that change something, as the module reports them in ``actions``."""
    return [label for label, _statement in steps if label and not isinstance(label, _RecordOnly)]


def changed_steps(steps: list) -> bool:
    """Whether a plan changes anything: a step with an action. The bare maintain() of every run records it only."""
    return bool(step_actions(steps))


def apply_plan(conn, steps: list, check_mode: bool) -> list:
    """Run every statement in one transaction; roll back in check mode or on error. Returns executed_queries."""
    executed, action = [], None
    try:
        with conn.cursor() as cur:
            # Trigger DDL waits for the table's lock; fail rather than queue every writer behind us.
            cur.execute("SET LOCAL lock_timeout = '30s'")
            for label, statement in steps:
                action = label or action
                if statement is None:
                    continue
                cur.execute(statement)
                executed.append(rendered(conn, statement))
    except psycopg2.Error as err:
        conn.rollback()
        cause = (getattr(err, "pgerror", None) or str(err)).strip().splitlines()[0]
        raise AuditError(
            "%s failed: %s; nothing was changed (the transaction was rolled back)" % (action, cause),
            executed_queries=executed,
        ) from err
    if check_mode:
        conn.rollback()
    else:
        conn.commit()
    return executed
