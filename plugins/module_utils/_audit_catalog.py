# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Reading the audit state from the catalog: the audit schema, its partitions and grants, the audit triggers.

Shared by audit_trigger (to plan) and audit_trigger_info (to report); only reads.
"""

from __future__ import annotations

import contextlib
import datetime
import re

from ansible_collections.locksmith.ops.plugins.module_utils._audit_schema import LATEST_VERSION
from ansible_collections.locksmith.ops.plugins.module_utils._postgres import PostgresError, fetch_all, psycopg2, sql

TRIGGER_PREFIX = "locksmith_audit_"
# pg_trigger.tgtype bits (src/include/catalog/pg_trigger.h).
_TYPE_ROW, _TYPE_BEFORE, _TYPE_INSTEAD = 1, 2, 64
_TYPE_EVENT = {"insert": 4, "delete": 8, "update": 16, "truncate": 32}


class AuditError(PostgresError):
    """The audit schema or a trigger cannot be managed as asked; the message names the option to change."""


def pg_array_literal(values) -> str:
    """A text[] literal with every element double-quoted, so any catalog name round-trips."""
    return "{%s}" % ",".join('"%s"' % str(v).replace("\\", "\\\\").replace('"', '\\"') for v in values)


def parse_array_literal(text: str) -> list:
    """Inverse of pg_array_literal (also accepts unquoted elements)."""
    body = text.strip()[1:-1] if text.strip().startswith("{") else text
    items, current, quoted, escaped, in_item = [], [], False, False, False
    for char in body:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted, in_item = not quoted, True
        elif char == "," and not quoted:
            items.append("".join(current))
            current, in_item = [], False
        else:
            current.append(char)
            in_item = True
    if in_item or current:
        items.append("".join(current))
    return items


@contextlib.contextmanager
def server_errors(conn, database: str, doing: str):
    """Turn a psycopg2 error while ``doing`` into an AuditError that names the database and a fix."""
    try:
        yield
    except psycopg2.Error as err:
        conn.rollback()
        cause = (getattr(err, "pgerror", None) or str(err)).strip().splitlines()[0]
        raise AuditError(
            "%s in database %r failed: %s; check that login_user may read the catalog and owns the audit schema"
            % (doing, database, cause)
        ) from err


def describe_trigger(spec: dict) -> dict:
    """The trigger's options as a user reads them (info module, --diff)."""
    out = {"operation": spec["operation"], "level": spec["level"], "function": spec["function"]}
    args = spec["args"]
    if spec["function"].endswith(".log_row") and len(args) >= 4:
        out.update(
            diff_only=args[0] == "true",
            app_user_setting=args[1],
            exclude_columns=parse_array_literal(args[2]),
            primary_key=list(args[4:]),
        )
    elif spec["function"].endswith(".log_statement") and len(args) in (1, 2):
        out["app_user_setting"] = args[0]
        out["query_text"] = args[1:] != ["false"]
    else:
        out["args"] = args
    out["enabled"] = spec["enabled"]
    return out


# ---- reading --------------------------------------------------------------------------------------
def read_schema(conn, audit_schema: str) -> dict:
    """Whether the audit schema exists, its version, partitions, log size and non-owner grants."""
    rows = fetch_all(
        conn,
        "SELECT n.oid, to_regclass(format('%%I.schema_version', n.nspname)) IS NOT NULL AS versioned "
        "FROM pg_namespace n WHERE n.nspname = %(s)s",
        {"s": audit_schema},
    )
    state = {"name": audit_schema, "exists": bool(rows), "version": 0, "partitions": [], "log_size_bytes": 0}
    state["grants"] = []
    if not rows:
        return state
    if not rows[0]["versioned"]:
        raise AuditError(
            "audit_schema %r exists but was not created by locksmith.ops (it has no schema_version table); "
            "choose another audit_schema" % audit_schema,
            option="audit_schema",
        )
    ident = sql.Identifier(audit_schema)
    version = fetch_all(conn, sql.SQL("SELECT max(version) AS v FROM {}.schema_version").format(ident))[0]["v"]
    state["version"] = version or 0
    if state["version"] > LATEST_VERSION:
        raise AuditError(
            "audit_schema %r is at version %d, newer than this collection knows (%d); upgrade locksmith.ops"
            % (audit_schema, state["version"], LATEST_VERSION),
            option="audit_schema",
        )
    state["partitions"] = fetch_all(
        conn,
        "SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound, "
        "pg_total_relation_size(c.oid) AS size_bytes, c.reltuples::bigint AS rows_estimate "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(format('%%I.log', %(s)s::text)) ORDER BY c.relname",
        {"s": audit_schema},
    )
    for part in state["partitions"]:
        part["range_from"], part["range_to"] = partition_range(part["name"])
        part["rows_estimate"] = max(part["rows_estimate"], 0)
    state["log_size_bytes"] = sum(p["size_bytes"] for p in state["partitions"])
    state["grants"] = read_grants(conn, audit_schema)
    return state


def read_retention_status(conn, audit_schema: str, version: int) -> dict:
    """{last_run_timestamp, log_size_bytes}: the newest completed maintain() (None before schema version 6 or the
    first run) as a Unix time, and the log's size."""
    if version < 6:
        return {"last_run_timestamp": None, "log_size_bytes": read_schema(conn, audit_schema)["log_size_bytes"]}
    row = fetch_all(
        conn,
        sql.SQL(
            "SELECT floor(extract(epoch FROM last_run_at))::bigint AS ran, log_size_bytes FROM {}.retention_status()"
        ).format(sql.Identifier(audit_schema)),
    )[0]
    ran = None if row["ran"] is None else int(row["ran"])
    return {"last_run_timestamp": ran, "log_size_bytes": int(row["log_size_bytes"])}


def partition_range(name: str) -> tuple:
    """[from, to) of a monthly partition as ISO timestamps (UTC); (None, None) for the default partition."""
    match = re.match(r"^log_p(\d{4})(\d{2})$", name)
    if not match:
        return None, None
    year, month = int(match.group(1)), int(match.group(2))
    start = datetime.datetime(year, month, 1, tzinfo=datetime.timezone.utc)
    end = datetime.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=datetime.timezone.utc)
    return start.isoformat(), end.isoformat()


def read_grants(conn, audit_schema: str) -> list:
    """Privileges on the audit schema, log and schema_version held by anyone but the owner."""
    rows = fetch_all(
        conn,
        "SELECT 'schema' AS object, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END "
        "AS grantee, a.privilege_type AS privilege "
        "FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = %(s)s AND a.grantee <> n.nspowner "
        "UNION ALL "
        "SELECT c.relname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
        "a.privilege_type FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
        "WHERE n.nspname = %(s)s AND c.relname IN ('log', 'schema_version') AND a.grantee <> c.relowner",
        {"s": audit_schema},
    )
    return sorted((r["object"], r["grantee"], r["privilege"]) for r in rows)


def read_triggers(conn, table_oids=None) -> dict:
    """{'schema.table': {trigger name: spec}} of our triggers (all tables, or only the given oids)."""
    query = (
        "SELECT n.nspname AS schema, c.relname AS table, t.tgname, t.tgtype, t.tgenabled, t.tgnargs, t.tgargs, "
        "pn.nspname AS fschema, p.proname, t.tgqual IS NOT NULL AS has_when, "
        # Our WHEN clause calls row_changed of the audit schema; any other (WHEN (false) would switch auditing
        # off with the trigger in place, a version 4 clause compared with the caller's float precision) is drift.
        "EXISTS (SELECT 1 FROM pg_depend d JOIN pg_proc w ON w.oid = d.refobjid WHERE d.classid = "
        "'pg_trigger'::regclass AND d.objid = t.oid AND d.refclassid = 'pg_proc'::regclass "
        "AND w.proname = 'row_changed' AND w.pronamespace = p.pronamespace) AS when_ours, "
        # A row trigger's clone on a partition can be switched off there alone; that is drift of this trigger.
        "EXISTS (SELECT 1 FROM pg_partition_tree(t.tgrelid) pt JOIN pg_trigger ct ON ct.tgrelid = pt.relid "
        "AND ct.tgname = t.tgname AND ct.tgparentid <> 0 WHERE pt.level > 0 AND ct.tgenabled NOT IN ('O', 'A')) "
        "AS clone_off "
        "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace "
        "WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND t.tgname LIKE %(prefix)s"
    )
    params = {"prefix": TRIGGER_PREFIX.replace("_", "\\_") + "%"}
    if table_oids is not None:
        query += " AND t.tgrelid = ANY(%(oids)s::oid[])"
        params["oids"] = list(table_oids)
    out = {}
    for row in fetch_all(conn, query + " ORDER BY 1, 2, 3", params):
        args = bytes(row["tgargs"]).split(b"\0")[: row["tgnargs"]]
        tgtype = row["tgtype"]
        operations = [op for op, bit in _TYPE_EVENT.items() if tgtype & bit]
        timing_ok = not tgtype & (_TYPE_BEFORE | _TYPE_INSTEAD)
        out.setdefault("%s.%s" % (row["schema"], row["table"]), {})[row["tgname"]] = {
            "operation": operations[0] if len(operations) == 1 and timing_ok else "+".join(operations) or "?",
            "level": "row" if tgtype & _TYPE_ROW else "statement",
            "function": "%s.%s" % (row["fschema"], row["proname"]),
            "args": [a.decode("utf-8", "replace") for a in args],
            # True: our WHEN clause; "other": one we never make, so the spec differs from every desired one.
            "when": (True if row["when_ours"] else "other") if row["has_when"] else False,
            # 'D' never fires, 'R' only in replica sessions; 'O' (the default) and 'A' fire in ordinary ones.
            "enabled": row["tgenabled"] in ("O", "A") and not row["clone_off"],
        }
    return out


def resolve_tables(conn, params: dict, parsed: list) -> list:
    """[{name, schema, table, oid, key_columns, columns[, partition_of]}] of the target tables; missing ones fail.

    The partitions of every partitioned table follow, with ``partition_of`` naming their audited ancestor.
    """
    if params.get("schema"):
        rows = fetch_all(
            conn,
            "SELECT c.oid, n.nspname AS schema, c.relname AS table, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %(s)s AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname",
            {"s": params["schema"]},
        )
        if (
            not rows
            and params["state"] == "present"
            and not fetch_all(conn, "SELECT 1 AS x FROM pg_namespace WHERE nspname = %(s)s", {"s": params["schema"]})
        ):
            # A typo would otherwise audit nothing and report success.
            raise AuditError(
                "schema %r does not exist in database %r; check the spelling or create it first"
                % (params["schema"], params["database"]),
                option="schema",
            )
    else:
        rows = []
        for index, (schema, table) in enumerate(parsed):
            found = fetch_all(
                conn,
                "SELECT c.oid, n.nspname AS schema, c.relname AS table, c.relkind, "
                "(SELECT pn.nspname || '.' || pc.relname FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent "
                "JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition) "
                "AS parent FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s AND c.relname = %(t)s",
                {"s": schema, "t": table},
            )
            name = "%s.%s" % (schema, table)
            if not found and params["state"] == "present":
                raise AuditError(
                    "tables[%d] %r does not exist in database %r; create it first or remove it from tables"
                    % (index, name, params["database"]),
                    option="tables[%d]" % index,
                )
            if found and found[0]["relkind"] not in ("r", "p"):
                raise AuditError(
                    "tables[%d] %r is not a table (relkind %s); audit the table a view reads instead"
                    % (index, name, found[0]["relkind"]),
                    option="tables[%d]" % index,
                )
            if found and found[0]["parent"] and params["state"] == "present":
                # Its parent's row triggers are cloned onto it: auditing both would clash or log twice.
                raise AuditError(
                    "tables[%d] %r is a partition of %s; list %s instead (a partitioned table's audit covers "
                    "all its partitions)" % (index, name, found[0]["parent"], found[0]["parent"]),
                    option="tables[%d]" % index,
                )
            rows.extend(found)
    for row in rows:
        row["name"] = "%s.%s" % (row["schema"], row["table"])
    # Row triggers of a partitioned table are cloned onto its partitions, statement-level ones are not: a
    # TRUNCATE of one partition (or, with capture=statement, any write naming it) needs its own trigger.
    seen = {row["oid"] for row in rows}
    for row in [r for r in rows if r["relkind"] == "p"]:
        for part in fetch_all(
            conn,
            "SELECT c.oid, n.nspname AS schema, c.relname AS table, c.relkind FROM pg_partition_tree(%(oid)s) t "
            "JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE t.level > 0 AND c.relkind IN ('r', 'p') ORDER BY t.level, n.nspname, c.relname",
            {"oid": row["oid"]},
        ):
            if part["oid"] not in seen:
                seen.add(part["oid"])
                part.update(name="%s.%s" % (part["schema"], part["table"]), partition_of=row["name"])
                rows.append(part)
    for row in rows:
        row["key_columns"] = [
            r["attname"]
            for r in fetch_all(
                conn,
                "SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord), pg_attribute a "
                "WHERE i.indrelid = %(oid)s AND i.indisprimary AND a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "ORDER BY k.ord",
                {"oid": row["oid"]},
            )
        ]
        # Inheritance (not partition) descendants: the parent's row triggers never fire for their rows.
        row["children"] = [
            r["name"]
            for r in fetch_all(
                conn,
                "WITH RECURSIVE d(oid) AS (SELECT inhrelid FROM pg_inherits WHERE inhparent = %(oid)s "
                "UNION SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.oid) "
                "SELECT n.nspname || '.' || c.relname AS name FROM d JOIN pg_class c ON c.oid = d.oid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT c.relispartition ORDER BY 1",
                {"oid": row["oid"]},
            )
        ]
        row["columns"] = [
            r["attname"]
            for r in fetch_all(
                conn,
                "SELECT attname FROM pg_attribute WHERE attrelid = %(oid)s AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum",
                {"oid": row["oid"]},
            )
        ]
    return rows
