# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""After a restore: row counts against the manifest, SQL assertions, extensions and roles; the report and metrics."""

from __future__ import annotations

import json
import os
import time

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres
from ansible_collections.locksmith.ops.plugins.module_utils._atomic import write_atomic
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._restore import COMPARISONS, PHASES, StatementRefused

# An estimate (pg_class.reltuples) of a small table is off by a few rows at most once analyzed.
ESTIMATE_SLACK_ROWS = 10


class ReportError(LocksmithError):
    """The drill report could not be written."""


def manifest_counts(manifest, database):
    """({'schema.table': rows}, 'exact'|'estimate'): exact counts when pg_backup recorded them (keys joined as
    pg_backup writes them: compare with "%s.%s" % (schema, table), never split one)."""
    exact = (manifest.get("row_counts") or {}).get(database)
    if exact:
        return exact, "exact"
    return (manifest.get("row_estimates") or {}).get(database) or {}, "estimate"


def count_matches(expected, actual, kind, tolerance):
    """Exact counts must be equal; an estimate may differ by ``tolerance`` (a fraction) or a few rows."""
    if expected is None:
        return True
    if kind == "exact":
        return actual == expected
    return abs(actual - expected) <= max(expected * tolerance, ESTIMATE_SLACK_ROWS)


def check_row_counts(server, target, manifest, database, table_map, tolerance):
    """One check per table: exact count(*) in the restored database against the manifest.

    ``table_map`` is {(schema, table) backed up: (schema, table) restored}. The manifest's keys are pg_backup's
    "schema.table" strings: looked up as built from the pair, never split, since either name may hold a dot.
    """
    counts, kind = manifest_counts(manifest, database)
    checks = []
    for source, restored in sorted(table_map.items()):
        key = "%s.%s" % source
        if key not in counts:
            continue
        subject = "%s.%s" % restored
        # Names come from the archive's own table of contents: any name PostgreSQL allows ("order-items",
        # "Café"), quoted by sql.Identifier, never checked against the plain-identifier rule for user input.
        statement = _sql().SQL("SELECT count(*) AS n FROM {}").format(_sql().Identifier(*restored))
        try:
            actual = server.run(target, statement, rows=True)[0]["n"]
        except StatementRefused as err:  # the table is missing or unreadable: this check fails, the others run
            checks.append(_check("row_count", subject, counts[key], None, False, err.msg))
            continue
        ok = count_matches(counts[key], actual, kind, tolerance)
        note = "manifest %s%s" % (kind, " (never analyzed: not compared)" if counts[key] is None else "")
        checks.append(_check("row_count", subject, counts[key], actual, ok, note))
    return checks


def _sql():
    from psycopg2 import sql

    return sql


def _check(check, subject, expected, actual, ok, note=""):
    item = {"check": check, "subject": subject, "expected": expected, "actual": actual, "ok": ok}
    if note:
        item["note"] = note
    return item


def compare_values(actual, expected, how):
    """Numbers compare as numbers, everything else as text."""
    try:
        left, right = float(actual), float(expected)
    except (TypeError, ValueError):
        left, right = ("" if actual is None else str(actual)), str(expected)
    return COMPARISONS[how](left, right)


QUERY_KEYWORDS = ("select", "with", "values", "table")


def _code_of(sql):
    """``sql`` with comments, string literals, quoted identifiers and dollar-quoted bodies blanked out, so that
    what remains shows the statement's own keywords and semicolons."""
    out, i, n = [], 0, len(sql)
    while i < n:
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif sql[i] in "'\"":
            quote = sql[i]
            # E'...' strings take backslash escapes; standard strings and identifiers only doubled quotes.
            backslash = quote == "'" and i > 0 and sql[i - 1] in "eE" and (i < 2 or not _word(sql[i - 2]))
            i += 1
            while i < n:
                if backslash and sql[i] == "\\":
                    i += 2
                elif sql[i] == quote and sql.startswith(quote * 2, i):
                    i += 2
                elif sql[i] == quote:
                    break
                else:
                    i += 1
            i += 1
        elif sql[i] == "$" and (i == 0 or not _word(sql[i - 1])):
            close = sql.find("$", i + 1)
            tag = sql[i : close + 1] if close > 0 else ""
            if tag and all(_word(char) for char in tag[1:-1]) and not tag[1:2].isdigit():
                end = sql.find(tag, close + 1)
                i = n if end < 0 else end + len(tag)
            else:
                out.append(sql[i])
                i += 1
            continue
        else:
            out.append(sql[i])
            i += 1
            continue
        out.append(" ")
    return "".join(out)


def _word(char):
    return char.isalnum() or char == "_"


def check_assertions(assertions):
    """Each assertion is one query (SELECT, WITH, VALUES or TABLE); raise LocksmithError naming it otherwise.

    The read-only transaction alone does not hold a string such as 'COMMIT; ALTER ROLE ...' (the COMMIT ends it),
    nor COPY ... TO PROGRAM, which a read-only transaction allows.
    """
    for index, item in enumerate(assertions):
        code = _code_of(item["sql"]).strip().rstrip(";").strip()
        words = code.lstrip("( \t\r\n").split(None, 1)
        if ";" in code or not words or words[0].lower() not in QUERY_KEYWORDS:
            raise LocksmithError(
                "assertions[%d] (%s): sql must be one query starting with SELECT, WITH, VALUES or TABLE, with no "
                "other statement after it; nothing was restored" % (index, item["name"]),
                option="assertions",
            )


def run_assertions(params, target, assertions, queries):
    """Each assertion's SQL runs in a read-only transaction; the first column of the first row is compared."""
    checks = []
    for item in assertions:
        conn = _postgres.connect(params, target)
        try:
            conn.set_session(readonly=True)
            queries.append(item["sql"])
            with conn.cursor() as cur:
                # The assertion is the operator's own read-only SQL, run as written (like psql -c).
                cur.execute(item["sql"])
                row = cur.fetchone() if cur.description else None
            actual = row[0] if row else None
            if hasattr(actual, "is_integer") or type(actual).__name__ == "Decimal":
                actual = float(actual) if float(actual) != int(actual) else int(actual)
            ok = compare_values(actual, item["expected"], item["compare"])
            checks.append(
                _check(
                    "assertion", item["name"], "%s %s" % (item["compare"], item["expected"]), actual, ok, item["sql"]
                )
            )
        except LocksmithError:
            raise
        except Exception as err:  # noqa: BLE001 - psycopg2 errors in the operator's SQL fail this check only
            checks.append(_check("assertion", item["name"], item["expected"], None, False, str(err).strip()))
        finally:
            if not conn.closed:  # an assertion can end its own session (pg_terminate_backend)
                conn.rollback()
            conn.close()
    return checks


def check_present(server, target, extensions, roles):
    """Extensions in the restored database and roles in the cluster."""
    found_ext = {r["extname"] for r in server.run(target, "SELECT extname FROM pg_extension", rows=True)}
    found_roles = {r["rolname"] for r in server.run(target, "SELECT rolname FROM pg_roles", rows=True)}
    checks = [_check("extension", name, "present", name in found_ext, name in found_ext) for name in extensions]
    checks += [_check("role", name, "present", name in found_roles, name in found_roles) for name in roles]
    return checks


# ---- report -------------------------------------------------------------------------------------
def render_markdown(report):
    """A human-readable page for one restore; plain substitution of the report's values."""
    lines = [
        "# %s of `%s`: %s"
        % (report["mode"].capitalize(), report["database"], "PASSED" if report["passed"] else "FAILED"),
        "",
        "| | |",
        "|---|---|",
        "| backup | %s |"
        % ("`%s` from %s" % (report["backup_id"], report["source"]) if report["backup_id"] else "none chosen"),
        "| backup ended | %s |" % (report["backup_ended_at"] or "-"),
        "| restored into | `%s` (%s) |" % (report["target_database"] or "-", report["target_fate"]),
        "| started | %s |" % report["started_at"],
        "| RTO | %s (target %d s: %s) |"
        % (
            "%.1f s" % report["rto_seconds"] if report["rto_seconds"] is not None else "not measured",
            report["rto_target_seconds"],
            "met" if report["rto_met"] else "MISSED",
        ),
        "| RPO | %s (target %d s: %s) |"
        % (
            "%.0f s" % report["rpo_seconds"] if report["rpo_seconds"] is not None else "not measured",
            report["rpo_target_seconds"],
            "met" if report["rpo_met"] else "MISSED",
        ),
        "",
        "## Phases",
        "",
        "| phase | seconds |",
        "|---|---|",
    ]
    # A run that stopped before it restored anything has no phases: "-", not a measured 0.
    lines += [
        "| %s | %s |" % (name, "%.3f" % report["phases"][name] if name in report["phases"] else "-") for name in PHASES
    ]
    lines += ["", "## Checks", "", "| check | subject | expected | actual | result |", "|---|---|---|---|---|"]
    for item in report["checks"]:
        lines.append(
            "| %s | %s | %s | %s | %s |"
            % (
                item["check"],
                _cell(item["subject"]),
                _cell(item["expected"]),
                _cell(item["actual"]),
                "ok" if item["ok"] else "**FAIL**",
            )
        )
    if report.get("errors"):
        lines += ["", "## Errors", ""] + ["- %s" % _cell(e) for e in report["errors"]]
    return "\n".join(lines) + "\n"


def _cell(value):
    text = str(value)
    if len(text) > 80:
        text = text[:32] + "..." + text[-32:]
    return text.replace("|", "\\|").replace("\n", " ")


def write_report(directory, report):
    """<database>-<mode>-<UTC time>.json and .md in ``directory``, written atomically; returns both paths."""
    if not os.path.isdir(directory):
        raise ReportError(
            "report_dir '%s' does not exist; create it or set report_dir to an existing directory" % directory,
            option="report_dir",
        )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(report["started_epoch"]))
    base = os.path.join(directory, "%s-%s-%s" % (report["database"], report["mode"], stamp))
    write_atomic(base + ".json", json.dumps(report, indent=2, sort_keys=True, default=str) + "\n", mode=0o640)
    write_atomic(base + ".md", render_markdown(report), mode=0o640)
    return {"json": base + ".json", "markdown": base + ".md"}


def write_metrics(directory, report, now, max_age_seconds, passed=None):
    """locksmith_drill_* for one database (docs/metrics.md); ``passed`` overrides the report's verdict.

    Only what the drill measured is published: the RTO of a verified restore, the RPO and phases once a backup was
    chosen. A drill that stopped before (no backup found, storage or server unreachable, a key or an input refused)
    publishes its run time, status 0 and the targets; its RTO, RPO and phase series vanish, rather than the previous
    drill's figures standing for it.
    """
    from ansible_collections.locksmith.ops.plugins.module_utils import _metrics

    label = report["database"]
    passed = report["passed"] if passed is None else passed
    families = [
        _metrics.Family("locksmith_drill_last_run_timestamp_seconds", "End of the newest DR drill.").add(
            round(now, 3), database=label
        ),
        _metrics.Family("locksmith_drill_last_status", "1 if the newest drill verified and met its targets.").add(
            1 if passed else 0, database=label
        ),
        _metrics.Family("locksmith_drill_rto_target_seconds", "RTO target.").add(
            report["rto_target_seconds"], database=label
        ),
    ]
    if max_age_seconds and max_age_seconds > 0:
        families.append(
            _metrics.Family("locksmith_drill_max_age_seconds", "A drill is overdue past this age.").add(
                max_age_seconds, database=label
            )
        )
    # RTO is the time to a verified restore: a drill that did not verify has none (its report keeps the time taken).
    if report["verified"] and report.get("rto_seconds") is not None:
        families.append(
            _metrics.Family("locksmith_drill_rto_seconds", "Measured RTO of the newest drill.").add(
                report["rto_seconds"], database=label
            )
        )
    if report.get("rpo_seconds") is not None:
        families.append(
            _metrics.Family("locksmith_drill_rpo_seconds", "Age of the restored backup at drill time.").add(
                report["rpo_seconds"], database=label
            )
        )
    phases = report.get("phases") or {}
    if phases:
        phase = _metrics.Family("locksmith_drill_phase_seconds", "Wall time of each phase of the newest drill.")
        for name in PHASES:
            phase.add(phases.get(name, 0.0), database=label, phase=name)
        families.append(phase)
    return _metrics.write_textfile(directory, "drill", label, families)[1]
