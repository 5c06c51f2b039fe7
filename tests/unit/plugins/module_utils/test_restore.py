"""Pure helpers of pg_backup_restore: TOC parsing, comparisons, the report, interlock texts, phases."""

from __future__ import annotations

import errno
import json
import os
import re

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics
from ansible_collections.locksmith.ops.plugins.module_utils import _restore as R
from ansible_collections.locksmith.ops.plugins.module_utils import _restore_checks as C
from ansible_collections.locksmith.ops.plugins.module_utils import _restore_cluster as RC
from ansible_collections.locksmith.ops.plugins.module_utils import _restore_flows as F
from ansible_collections.locksmith.ops.plugins.module_utils._postgres import InvalidIdentifier
from tests.unit.plugins.module_utils import _manifests
from tests.unit.plugins.module_utils._manifests import DAMAGE

TOC = """;
; Archive created at 2026-11-27 04:55:07 UTC
;
2; 3079 16385 EXTENSION - pgcrypto
3466; 0 0 COMMENT - EXTENSION pgcrypto
7; 2615 16422 SCHEMA - sales app_owner
215; 1259 16423 TABLE public users postgres
216; 1259 16428 TABLE sales orders app_owner
3460; 0 16423 TABLE DATA public users postgres
3300; 2606 16427 CONSTRAINT public users users_pkey postgres
240; 1255 16440 FUNCTION audit log_row() locksmith_audit_writer
241; 1255 16441 FUNCTION audit maintain(integer, integer, timestamp with time zone) postgres
242; 1255 16442 PROCEDURE public archive(text) proc_owner
243; 1255 16443 AGGREGATE public total(numeric) agg_owner
"""


def test_parse_toc_reads_extensions_owners_and_tables():
    parsed = R.parse_toc(TOC)
    assert parsed == {
        "extensions": ["pgcrypto"],
        "owners": ["agg_owner", "app_owner", "locksmith_audit_writer", "postgres", "proc_owner"],
        "tables": [("public", "users"), ("sales", "orders")],
    }


def test_parse_toc_leaves_out_names_in_another_encoding(tmp_path):
    # A LATIN1 database's "café" is printed as the byte 0xE9: read with surrogateescape, left out, not a crash.
    script = tmp_path / "pg_restore"
    listing = b"215; 1259 16390 TABLE public caf\xe9 app_owner\n216; 1259 16391 TABLE public users app_owner\n"
    (tmp_path / "listing").write_bytes(listing)
    script.write_text("#!/bin/sh\ncat %s\n" % (tmp_path / "listing"))
    script.chmod(0o755)
    assert R.toc(str(script), "/unused")["tables"] == [("public", "users")]


def test_row_counts_quote_any_name_the_archive_holds():
    # "order-items" is a valid table name; checking it against the rule for user input failed a good drill.
    class Server:
        queries = []

        def run(self, target, statement, rows=False):
            self.queries.append(statement)
            return [{"n": 2}]

    server = Server()
    manifest = {"row_counts": {"app": {"public.order-items": 2}}}
    checks = C.check_row_counts(
        server, "t", manifest, "app", {("public", "order-items"): ("public", "order-items")}, 0.1
    )
    assert [c["ok"] for c in checks] == [True]


def test_row_counts_keep_names_with_a_dot_apart():
    # "v1.2".orders restored into "x.y": split at the first dot, it was counted as "v1"."2.orders".
    from psycopg2 import sql

    class Server:
        queries = []

        def run(self, target, statement, rows=False):
            self.queries.append(statement)
            return [{"n": 4}]

    server = Server()
    manifest = {"row_counts": {"app": {"v1.2.orders": 4, "shop.a.b": 9}}}
    table_map = {("v1.2", "orders"): ("x.y", "orders"), ("shop", "a.b"): ("shop", "a.b")}
    checks = C.check_row_counts(server, "t", manifest, "app", table_map, 0.1)
    assert [(c["subject"], c["expected"], c["actual"], c["ok"]) for c in checks] == [
        ("shop.a.b", 9, 4, False),
        ("x.y.orders", 4, 4, True),
    ]
    assert [q.seq[1] for q in server.queries] == [sql.Identifier("shop", "a.b"), sql.Identifier("x.y", "orders")]


@pytest.mark.parametrize(
    ("actual", "expected", "how", "ok"),
    [
        (3000, 3000, "eq", True),
        (3000, "3000", "eq", True),
        (2999, 3000, "ge", False),
        (3001, 3000, "gt", True),
        ("abc", "abc", "eq", True),
        ("abc", "abd", "ne", True),
        (None, "", "eq", True),
        (1, 2, "le", True),
        (2, 2, "lt", False),
    ],
)
def test_compare_values(actual, expected, how, ok):
    assert C.compare_values(actual, expected, how) is ok


def test_count_matches_exact_and_estimates():
    assert C.count_matches(100, 100, "exact", 0.1)
    assert not C.count_matches(100, 101, "exact", 0.5)
    assert C.count_matches(1000, 1090, "estimate", 0.1)
    assert not C.count_matches(1000, 1200, "estimate", 0.1)
    assert C.count_matches(0, 8, "estimate", 0.1)  # a few rows of slack on tiny tables
    assert C.count_matches(None, 5, "estimate", 0.1)  # never analyzed: not compared


def test_manifest_counts_prefers_exact_counts():
    manifest = {"row_estimates": {"app": {"public.a": 9}}, "row_counts": {"app": {"public.a": 10}}}
    assert C.manifest_counts(manifest, "app") == ({"public.a": 10}, "exact")
    assert C.manifest_counts({"row_estimates": {"app": {"public.a": 9}}}, "app") == ({"public.a": 9}, "estimate")
    assert C.manifest_counts({}, "app") == ({}, "estimate")


def test_confirm_text_and_scratch_names():
    assert R.confirm_text("app") == "I understand this overwrites app"
    name = R.scratch_name("a" * 63, "20261127T000000Z-abcd", "drill")
    assert name.startswith("drill_" + "a" * 40) and len(name.encode()) <= 63
    assert R.scratch_name("app", "x", "tables").startswith("restore_app_")


def test_tables_by_schema_validates_every_name():
    assert R.tables_by_schema(["users", "sales.orders", "sales.items"]) == {
        "public": ["users"],
        "sales": ["orders", "items"],
    }
    with pytest.raises(InvalidIdentifier, match=r"tables\[1\]"):
        R.tables_by_schema(["users", "x; DROP TABLE users"])
    with pytest.raises(InvalidIdentifier, match=r"must be 'table' or 'schema\.table'"):
        R.tables_by_schema(["a.b.c"])
    # A name with a dot is written quoted and kept whole.
    assert R.tables_by_schema(['"v1.2".orders', 'shop."a.b"', '"v1.2".orders']) == {
        "v1.2": ["orders"],
        "shop": ["a.b"],
    }


def test_pg_restore_argv():
    argv = R.pg_restore_argv("/bin/pg_restore", "t", "/w/app.dump", {"no_owner": True, "jobs": 2})
    assert argv == [
        "/bin/pg_restore",
        "--no-password",
        "--exit-on-error",
        "--dbname=dbname='t'",
        "--no-owner",
        "--no-acl",
        "--jobs=2",
        "/w/app.dump",
    ]
    argv = R.pg_restore_argv("/bin/pg_restore", "t", "/w/d", {"jobs": 2}, schema="sales", tables=["orders"])
    assert "--jobs=2" not in argv and argv[-3:] == ["--schema=sales", "--table=orders", "/w/d"]


def test_pg_restore_target_is_a_quoted_connection_string_value():
    # A database name libpq would read as a connection string ('=' in it) must stay a name.
    argv = R.pg_restore_argv("/bin/pg_restore", "port=5999 dbname=victim", "/w/d", {})
    assert argv[3] == "--dbname=dbname='port=5999 dbname=victim'"
    assert R.pg_restore_argv("/bin/pg_restore", "it's\\x", "/w/d", {})[3] == "--dbname=dbname='it\\'s\\\\x'"


def test_phases_accumulate():
    ticks = iter([0.0, 1.5, 2.0, 2.25])
    phases = R.Phases(clock=lambda: next(ticks))
    with phases.timed("fetch"):
        pass
    with phases.timed("fetch"):
        pass
    assert phases.seconds["fetch"] == 1.75 and phases.seconds["restore"] == 0.0


def _report(**changes):
    report = {
        "mode": "drill",
        "database": "app",
        "backup_id": "20261127T000000Z-abcd",
        "source": "destinations[0] local:/b",
        "backup_ended_at": "2026-11-27T00:00:00Z",
        "target_database": "drill_app_1",
        "target_fate": "dropped",
        "started_at": "2026-11-27T01:00:00Z",
        "started_epoch": 1795741200.0,
        "verified": True,
        "phases": {"fetch": 1.0, "decrypt": 0.5, "restore": 3.0, "verify": 0.2},
        "rto_seconds": 4.7,
        "rto_target_seconds": 1800,
        "rto_met": True,
        "rpo_seconds": 3600.0,
        "rpo_target_seconds": 86400,
        "rpo_met": True,
        "passed": True,
        "checks": [{"check": "assertion", "subject": "a|b", "expected": "x" * 100, "actual": 1, "ok": True}],
        "errors": [],
    }
    report.update(changes)
    return report


def test_markdown_report_escapes_cells_and_shows_the_verdict(tmp_path):
    text = C.render_markdown(_report())
    assert "PASSED" in text and "a\\|b" in text and "| restore | 3.000 |" in text and "..." in text
    failed = C.render_markdown(_report(passed=False, rto_met=False, errors=["boom"]))
    assert "FAILED" in failed and "MISSED" in failed and "- boom" in failed
    files = C.write_report(str(tmp_path), _report())
    assert json.loads(open(files["json"], encoding="utf-8").read())["passed"] is True
    assert files["markdown"].endswith("app-drill-20261127T010000Z.md")
    with pytest.raises(C.ReportError, match="report_dir '/nonexistent' does not exist"):
        C.write_report("/nonexistent", _report())


def _drill_samples(directory):
    text = (directory / "locksmith_drill_app.prom").read_text()
    return {(name, dict(labels).get("phase")): value for (name, labels), value in _metrics.parse(text).items()}


def test_drill_metrics_publish_only_what_the_drill_measured(tmp_path):
    C.write_metrics(str(tmp_path), _report(), 1795741300.5, 1296000)
    samples = _drill_samples(tmp_path)
    assert samples[("locksmith_drill_last_status", None)] == 1
    assert samples[("locksmith_drill_last_run_timestamp_seconds", None)] == 1795741300.5
    assert (
        samples[("locksmith_drill_rto_seconds", None)] == 4.7 and samples[("locksmith_drill_rpo_seconds", None)] == 3600
    )
    assert samples[("locksmith_drill_max_age_seconds", None)] == 1296000
    assert samples[("locksmith_drill_phase_seconds", "restore")] == 3.0
    # A drill that chose a backup but did not verify it (a corrupt artefact): its RPO and phases, no RTO, status 0.
    C.write_metrics(str(tmp_path), _report(verified=False, passed=False), 1795741400, 1296000)
    samples = _drill_samples(tmp_path)
    assert samples[("locksmith_drill_last_status", None)] == 0 and ("locksmith_drill_rto_seconds", None) not in samples
    assert (
        samples[("locksmith_drill_rpo_seconds", None)] == 3600 and samples[("locksmith_drill_phase_seconds", "fetch")]
    )
    # A verified drill whose run then failed (its report could not be written) is published as failed.
    C.write_metrics(str(tmp_path), _report(), 1795741500, 1296000, passed=False)
    assert _drill_samples(tmp_path)[("locksmith_drill_last_status", None)] == 0


def test_a_drill_that_stopped_before_restoring_reports_and_publishes_no_rto(tmp_path):
    params = {"mode": "drill", "database": "app", "rto_target_seconds": 900, "rpo_target_seconds": 3600}
    report = F.stopped_report(params, 1795741200.0, R.RestoreError("no complete, intact backup of 'app'"))
    assert report["verified"] is False and report["passed"] is False and report["backup_id"] is None
    assert report["rto_seconds"] is None and report["rpo_seconds"] is None and report["phases"] == {}
    assert report["errors"] == ["no complete, intact backup of 'app'"] and report["target_fate"].startswith("untouched")
    C.write_metrics(str(tmp_path), report, 1795741260, 1296000)
    assert sorted(name for name, _phase in _drill_samples(tmp_path)) == [
        "locksmith_drill_last_run_timestamp_seconds",
        "locksmith_drill_last_status",
        "locksmith_drill_max_age_seconds",
        "locksmith_drill_rto_target_seconds",
    ]
    markdown = C.render_markdown(report)
    assert "| backup | none chosen |" in markdown and "| RTO | not measured (target 900 s: MISSED) |" in markdown
    assert "| fetch | - |" in markdown


def test_outcome_error():
    assert F.outcome_error(_report(), True) is None
    err = F.outcome_error(_report(verified=False, errors=["row_count public.a: expected 1, got 2"]), True)
    assert "FAILED: row_count public.a" in str(err)
    missed = _report(rto_met=False, rpo_met=False, rto_seconds=9.0, rto_target_seconds=1)
    assert "RTO 9.0s > rto_target_seconds 1" in str(F.outcome_error(missed, True))
    assert "take backups more often" in str(F.outcome_error(missed, True))
    assert F.outcome_error(missed, False) is None


def test_all_databases_backups_are_refused_by_name():
    with pytest.raises(R.RestoreError, match="all-databases backup is not supported"):
        R.choose_backup([], "all-databases")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM t",
        "select 1;",
        "  -- a comment; with a semicolon\n SELECT ';'",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "(SELECT 1)",
        "VALUES (1)",
        "TABLE t",
        "SELECT $$a;b$$",
        "SELECT $q$ ; $q$",
        "SELECT E'it\\'s; x'",
        "SELECT 'a''; b'",
        'SELECT "we;ird" FROM t',
        "/* x; /* nested; */ */ SELECT 1",
    ],
)
def test_one_query_passes_the_assertion_check(sql):
    C.check_assertions([{"name": "n", "sql": sql}])


@pytest.mark.parametrize(
    "sql",
    [
        "COMMIT; ALTER ROLE postgres CONNECTION LIMIT 99; SELECT 1",
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "SELECT 1; SELECT 2",
        "ALTER ROLE x CONNECTION LIMIT 1",
        "",
        "SELECT 'x'; DROP TABLE t",
        "SELECT $$a$$; DROP TABLE t",
        "SELECT E'\\''; DROP TABLE t; --'",
        "select 1 /* */; delete from t",
        "DO $$ BEGIN END $$",
    ],
)
def test_anything_but_one_query_is_refused_naming_the_assertion(sql):
    with pytest.raises(C.LocksmithError, match=r"assertions\[1\] \(b\): sql must be one query"):
        C.check_assertions([{"name": "a", "sql": "SELECT 1"}, {"name": "b", "sql": sql}])


# ---- inputs checked before anything runs, and a full work_dir -------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("roles", "", "is empty"),
        ("roles", "a\x00b", "holds a control character"),
        ("roles", "a\nb", "holds a control character"),
        ("roles", "r" * 64, "is longer than 63 bytes"),
        ("extensions", "../../../etc/passwd", "holds '/' or '--'"),
        ("extensions", "x; --", "holds '/' or '--'"),
        ("databases", "users'; DROP TABLE x --", "holds quotes, ';' or a backslash"),
        ("databases", 'a"b', "holds quotes, ';' or a backslash"),
        ("databases", "", "is empty"),
    ],
)
def test_check_names_refuses_what_no_catalog_holds_naming_the_option(option, value, message):
    with pytest.raises(R.RestoreError, match=r"%s\[1\] .*%s.*nothing was restored" % (option, re.escape(message))):
        R.check_names(["fine", value], option)


def test_check_names_accepts_quoted_role_names():
    # A role may be called anything quoted; roles are compared with pg_roles as values, never put into SQL.
    assert R.check_names(["ops admin", 'a"b', "x'; y"], "roles") == ["ops admin", 'a"b', "x'; y"]


def test_check_work_dir(tmp_path):
    R.check_work_dir(None)
    R.check_work_dir(str(tmp_path))
    (tmp_path / "file").write_text("x")
    for value, problem in (
        ("relative", "is not an absolute path"),
        (str(tmp_path / "missing"), "does not exist"),
        (str(tmp_path / "file"), "is not a directory"),
    ):
        with pytest.raises(R.RestoreError, match="work_dir '%s' %s" % (re.escape(value), problem)) as err:
            R.check_work_dir(value)
        assert err.value.details["option"] == "work_dir"


class _Source:
    name = "destinations[0] local:/backups"

    def __init__(self, data):
        self.data = data

    def read_chunks(self, label, backup_id, name):
        yield self.data


def _entry(data, name, plain_name):
    import hashlib
    from types import SimpleNamespace

    artefact = {
        "kind": "dump",
        "name": name,
        "plain_name": plain_name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
    }
    return SimpleNamespace(label="app", backup_id="b1", destination=_Source(data), manifest={"artefacts": [artefact]})


def _disk_full(monkeypatch):
    def write(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(R.os, "write", write)


def test_fetch_into_a_full_work_dir_fails_naming_work_dir(tmp_path, monkeypatch):
    _disk_full(monkeypatch)
    with pytest.raises(R.RestoreError, match=r"app\.dump' failed \(No space left on device\); work_dir needs") as err:
        R.fetch(_entry(b"x" * 1000, "app.dump", "app.dump"), str(tmp_path))
    assert err.value.details["option"] == "work_dir"


def test_decrypt_into_a_full_work_dir_blames_work_dir_not_the_key(tmp_path, monkeypatch):
    import zstandard

    data = zstandard.ZstdCompressor().compress(b"plain dump " * 1000)
    entry = _entry(data, "app.dump.zst", "app.dump")
    fetched, plain = tmp_path / "fetched", tmp_path / "plain"
    fetched.mkdir()
    plain.mkdir()
    R.fetch(entry, str(fetched))
    assert oct(os.stat(fetched / "app.dump.zst").st_mode & 0o777) == "0o600"
    _disk_full(monkeypatch)
    with pytest.raises(R.RestoreError, match=r"app\.dump' failed \(No space left on device\); work_dir needs") as err:
        R.decrypt(entry, str(fetched), str(plain), None)
    assert err.value.details["option"] == "work_dir"


@pytest.mark.parametrize("plain_name", [5, ["app.dump"], None, {"a": 1}, "", "../../app.dump"])
def test_a_damaged_plain_name_fails_naming_the_backup_and_the_field(tmp_path, plain_name):
    entry = _entry(b"dump", "app.dump", plain_name)
    message = r"backup b1: artefacts\[0\]\.plain_name .* is not a plain relative name; the manifest was altered"
    # fetch and decrypt check it: it was a TypeError, or a file placed outside the work directory.
    fetched, plain = tmp_path / "fetched", tmp_path / "work" / "plain"
    fetched.mkdir()
    plain.mkdir(parents=True)
    for step in (lambda: R.fetch(entry, str(fetched)), lambda: R.decrypt(entry, str(fetched), str(plain), None)):
        with pytest.raises(R.RestoreError, match=message):
            step()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["fetched", "plain", "work"]
    # The all-databases plan reads every artefact of the manifest, the globals one too; so does the single one.
    job = object.__new__(RC.ClusterRestoreJob)
    job.selected, job.entry = [], entry
    entry.manifest.update(databases=["app"])
    with pytest.raises(R.RestoreError, match=message):
        job._manifest_databases()
    with pytest.raises(R.RestoreError, match=message):
        R.check_artefacts(entry)


def test_an_artefact_that_is_no_object_fails_naming_the_backup():
    entry = _entry(b"dump", "app.dump", "app.dump")
    entry.manifest.update(databases=["app"])
    entry.manifest["artefacts"].append(["globals.sql"])
    job = object.__new__(RC.ClusterRestoreJob)
    job.selected, job.entry = [], entry
    with pytest.raises(R.RestoreError, match=r"backup b1: artefacts\[1\] in the manifest is not an object"):
        job._manifest_databases()


def test_a_malformed_manifest_is_named_in_why_the_backup_was_passed_over(tmp_path):
    from ansible_collections.locksmith.ops.plugins.module_utils._storage import build_destinations

    backup = tmp_path / "app" / "20261127T020000Z-1a2b"
    backup.mkdir(parents=True)
    (backup / "manifest.json").write_text(json.dumps({"artefacts": [{"name": 5, "size_bytes": 1, "sha256": "x"}]}))
    destinations = build_destinations([{"type": "local", "path": str(tmp_path)}], [])
    with pytest.raises(
        R.RestoreError, match=r"20261127T020000Z-1a2b: manifest.json is malformed: artefacts\[0\]\.name"
    ):
        R.choose_backup(destinations, "app", "20261127T020000Z-1a2b")


@pytest.mark.parametrize(("message", "damage"), DAMAGE.values(), ids=DAMAGE.keys())
def test_a_backup_with_a_damaged_manifest_field_is_passed_over_naming_it(tmp_path, message, damage):
    from ansible_collections.locksmith.ops.plugins.module_utils._storage import build_destinations

    # Chosen, such a backup failed later with a traceback: row counts (.get on a list), a decryption error
    # (.get on encryption), the suffixes of a plain_name that is no string. The older whole one is restored.
    _manifests.store(tmp_path, _manifests.OLDER)
    _manifests.store(tmp_path, _manifests.NEWER, damage)
    destinations = build_destinations([{"type": "local", "path": str(tmp_path)}], [])
    entry, skipped = R.choose_backup(destinations, "app")
    assert entry.backup_id == _manifests.OLDER
    [passed_over] = skipped
    assert passed_over["id"] == _manifests.NEWER
    assert re.match("manifest.json is malformed: " + message, passed_over["reason"]), passed_over
    with pytest.raises(R.RestoreError, match="%s: manifest.json is malformed: %s" % (_manifests.NEWER, message)):
        R.choose_backup(destinations, "app", _manifests.NEWER)


def test_a_refusal_is_the_servers_message_without_the_statement_excerpt():
    from types import SimpleNamespace

    class Refused(Exception):
        diag = SimpleNamespace(message_primary="conflicting or redundant options", message_detail=None)

    err = Refused(
        'conflicting or redundant options\nLINE 1: CREATE ROLE "x" WITH LOGIN NOLOGIN PASSWORD \'SCRAM-SHA-256$4...'
    )
    assert R.refusal(err) == "conflicting or redundant options"
    assert R.refusal(ValueError("first line\nLINE 1: x")) == "first line"


class _FakeServer(R.Server):
    """A Server whose statements go to a list; pg_roles holds ``roles``."""

    def __init__(self, roles):
        super().__init__({})
        self.roles = set(roles)
        self.statements = []

    def run(self, dbname, statement, args=None, rows=False):
        if rows:
            return [{"one": 1}] if args[0] in self.roles else []
        self.statements.append(statement)
        return None


def test_restore_creates_only_the_collections_own_missing_roles():
    from ansible_collections.locksmith.ops.plugins.module_utils._audit_schema import WRITER_ROLE

    server = _FakeServer(roles={"postgres"})
    # The archive's owners: an application role (the restore host must have it) and the audit writer.
    assert server.create_own_roles(["app", WRITER_ROLE, "postgres"]) == [WRITER_ROLE]
    assert len(server.statements) == 1
    assert R.OWN_ROLES[WRITER_ROLE].split()[-3:] == ["NOLOGIN", "NOREPLICATION", "NOBYPASSRLS"]
    assert _FakeServer(roles={WRITER_ROLE}).create_own_roles([WRITER_ROLE]) == []


@pytest.mark.parametrize(
    ("filters", "wanted", "missing"),
    [
        ({"tables": ["sales.orders"]}, [("sales", "orders")], ""),
        ({"tables": ["sales.orders"]}, [("public", "t"), ("sales", "orders")], "public.t"),
        ({"schemas": ["sales"]}, [("sales", "orders"), ("public", "t")], "public.t"),
        ({"exclude_schemas": ["public"]}, [("public", "t")], "public.t"),
        ({"exclude_tables": ["t"]}, [("public", "t"), ("public", "u")], "public.t"),
        # --table selects regardless of --schema and --exclude-schema.
        ({"tables": ["t"], "exclude_schemas": ["public"]}, [("public", "t")], ""),
        # Names with a dot, written quoted, are the names they stand for.
        ({"tables": ['"v1.2".orders']}, [("v1.2", "orders")], ""),
        ({"tables": ['"v1.2".orders']}, [("v1", "2.orders")], 'v1."2.orders"'),
        ({"schemas": ['"Shop Data"']}, [("Shop Data", "a.b")], ""),
    ],
)
def test_a_tables_restore_takes_a_partial_backup_only_when_it_holds_the_tables(tmp_path, filters, wanted, missing):
    from ansible_collections.locksmith.ops.plugins.module_utils._storage import build_destinations

    _manifests.store(tmp_path, _manifests.OLDER)
    _manifests.store(tmp_path, _manifests.NEWER, lambda m: m.update(filters=filters))
    destinations = build_destinations([{"type": "local", "path": str(tmp_path)}], [])
    entry, skipped = R.choose_backup(destinations, "app", partial_ok=True, tables=wanted)
    if not missing:
        assert (entry.backup_id, skipped) == (_manifests.NEWER, [])
        return
    assert entry.backup_id == _manifests.OLDER
    [passed_over] = skipped
    assert passed_over["id"] == _manifests.NEWER
    assert passed_over["reason"].startswith("partial (taken with ")
    assert passed_over["reason"].endswith("): does not hold %s" % missing), passed_over
    # Named, it is refused before anything is restored, saying why.
    with pytest.raises(R.RestoreError, match=re.escape("does not hold %s" % missing)):
        R.choose_backup(destinations, "app", _manifests.NEWER, partial_ok=True, tables=wanted)


def test_a_partial_backup_whose_filters_cannot_be_read_is_passed_over_for_a_tables_restore(tmp_path):
    from ansible_collections.locksmith.ops.plugins.module_utils._storage import build_destinations

    _manifests.store(tmp_path, _manifests.OLDER)
    _manifests.store(tmp_path, _manifests.NEWER, lambda m: m.update(filters={"tables": ["a; DROP TABLE t"]}))
    destinations = build_destinations([{"type": "local", "path": str(tmp_path)}], [])
    entry, skipped = R.choose_backup(destinations, "app", partial_ok=True, tables=[("public", "t")])
    assert entry.backup_id == _manifests.OLDER
    assert "its filters cannot be read (tables[0] 'a; DROP TABLE t' is not a valid" in skipped[0]["reason"]
