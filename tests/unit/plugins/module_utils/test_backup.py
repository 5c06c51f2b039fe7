from __future__ import annotations

import sys

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import (
    _backup,
    _backup_flows,
    _backup_verify,
    _metrics,
    _pg_dump,
)
from ansible_collections.locksmith.ops.plugins.module_utils._postgres import InvalidIdentifier
from ansible_collections.locksmith.ops.plugins.module_utils._storage import parse_backup_id
from tests.unit.plugins.module_utils import _manifests

PG_BIN = "/usr/lib/postgresql/15/bin"


def params(**over):
    spec = _backup.backup_argument_spec()
    values = {k: v.get("default") for k, v in spec.items()}
    values.update(database="app", pg_bin_dir=PG_BIN, destinations=[{"type": "local", "path": "/srv/backups"}])
    values.update(over)
    return values


def job(**over):
    return _backup.BackupJob(params(**over), [])


def test_dump_args_quote_every_name_and_pass_no_secret():
    j = job(schemas=["Sales"], exclude_schemas=["tmp"], tables=["public.users", "orders"], exclude_tables=["x.y"])
    args = j._dump_args("custom")
    assert '--schema="Sales"' in args and '--exclude-schema="tmp"' in args
    assert '--table="public"."users"' in args and '--table="public"."orders"' in args
    assert '--exclude-table="x"."y"' in args and "--strict-names" in args and "-Z" in args
    env = _pg_dump.dump_env(dict(params(), login_password="s3cret", login_host="db"), "app")
    assert env["PGPASSWORD"] == "s3cret" and env["PGDATABASE"] == "app" and env["PGHOST"] == "db"
    assert not any("s3cret" in a for a in args)


def test_quoted_filter_names_reach_pg_dump_as_exact_names():
    j = job(schemas=['"Shop Data"'], tables=['"Shop Data"."a""b*?"'], exclude_tables=['x."y z"'])
    args = j._dump_args("custom")
    assert '--schema="Shop Data"' in args and '--table="Shop Data"."a""b*?"' in args
    assert '--exclude-table="x"."y z"' in args


@pytest.mark.parametrize(
    "filters, taken",
    [
        ({}, {"public.users", "sales.orders", "sales.big"}),
        ({"schemas": ["sales"]}, {"sales.orders", "sales.big"}),
        ({"exclude_schemas": ["sales"]}, {"public.users"}),
        ({"schemas": ["sales"], "exclude_tables": ["sales.big"]}, {"sales.orders"}),
        # As in pg_dump: --table selects regardless of --schema/--exclude-schema; --exclude-table wins.
        ({"tables": ["users"], "schemas": ["sales"], "exclude_schemas": ["public"]}, {"public.users"}),
        ({"tables": ["users", "sales.big"], "exclude_tables": ["sales.big"]}, {"public.users"}),
    ],
)
def test_only_the_tables_pg_dump_takes_are_counted(filters, taken):
    j = job(**filters)
    tables = [("public", "users"), ("sales", "orders"), ("sales", "big")]
    assert {"%s.%s" % t for t in tables if j._dumped(*t)} == taken


def test_the_filter_rule_is_one_function_of_the_parsed_filters():
    # pg_backup_restore judges a partial backup's manifest filters by the same rule the dump used.
    filters = _backup.parse_filters({"schemas": ['"v1.2"'], "exclude_tables": ['"v1.2"."a.b"'], "tables": None})
    assert filters == {
        "schemas": [("v1.2",)],
        "exclude_schemas": [],
        "tables": [],
        "exclude_tables": [("v1.2", "a.b")],
    }
    assert _backup.filters_take(filters, "v1.2", "orders") and not _backup.filters_take(filters, "v1.2", "a.b")
    assert not _backup.filters_take(filters, "v1", "2.orders")
    with pytest.raises(InvalidIdentifier, match=r"tables\[0\]"):
        _backup.parse_filters({"tables": ["a.b.c"]})


def test_dump_env_keeps_what_the_options_leave_to_libpq(monkeypatch):
    # An AWX credential injects PGPASSWORD; the module's own connection honours it, so pg_dump must too.
    monkeypatch.setenv("PGPASSWORD", "from-awx")
    monkeypatch.setenv("PGHOST", "elsewhere")
    env = _pg_dump.dump_env(dict(params(), login_host="db"), "app")
    assert env["PGPASSWORD"] == "from-awx" and env["PGHOST"] == "db"


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"database": "public'; DROP TABLE users; --"}, "database .* is not a valid identifier"),
        ({"schemas": ["../../../etc/passwd"]}, r"schemas\[0\]"),
        ({"tables": ["a.b.c"]}, r"tables\[0\] 'a.b.c' must be"),
    ],
)
def test_identifiers_are_validated_first(over, match):
    with pytest.raises(InvalidIdentifier, match=match):
        job(**over)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"jobs": 0}, "jobs must be 1 or more"),
        ({"jobs": 2}, "needs format=directory"),
        ({"compression_threads": -1}, "compression_threads must be 0 .* to 32 \\(it is -1\\)"),
        ({"compression_threads": 33}, "compression_threads must be 0 .* to 32 \\(it is 33\\)"),
        ({"pg_bin_dir": "/nonexistent"}, "pg_dump not found in pg_bin_dir '/nonexistent'"),
        ({"compression": "lz4"}, "needs pg_dump 16"),
        ({"encryption_key": "nope"}, "256-bit key"),
    ],
)
def test_option_errors_name_the_fix(over, match):
    with pytest.raises(_backup.LocksmithError, match=match):
        job(**over)


def test_find_tool_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(_pg_dump.PgToolError, match="not found on PATH; install the PostgreSQL client"):
        _pg_dump.find_tool("pg_dump", None)


def test_tool_version_reads_the_pg_dump_banner():
    version, major = _pg_dump.tool_version(PG_BIN + "/pg_dump")
    assert major == 15 and version.startswith("15.")
    with pytest.raises(_pg_dump.PgToolError, match="is it a PostgreSQL client program"):
        _pg_dump.tool_version("/bin/true")


def _sh(script):
    return [sys.executable, "-c", script]


def test_stream_command_passes_stdout_and_keeps_warnings():
    seen = []
    warnings = _pg_dump.stream_command(
        _sh("import sys; sys.stdout.write('data'); sys.stderr.write('pg_dump: warning: old\\n')"),
        None,
        seen.append,
        "fake",
    )
    assert b"".join(seen) == b"data" and warnings == ["pg_dump: warning: old"]


def test_stream_command_keeps_a_warnings_detail_and_hint_with_it():
    # What libpq prints for the server's WARNING at connect (a collation version mismatch), then pg_dump's own.
    lines = ["WARNING:  mismatch", "DETAIL:  created with 0.1", "HINT:  refresh", "pg_dump: warning: x"]
    lines.append("pg_dump: hint: y")
    script = "import sys; sys.stderr.write(%r)" % "\n".join(lines)
    assert _pg_dump.stream_command(_sh(script), None, bool, "fake") == lines
    with pytest.raises(_pg_dump.PgToolError, match="Query was"):
        _pg_dump.stream_command(
            _sh("import sys; sys.stderr.write('pg_dump: error: bad\\npg_dump: detail: Query was: x\\n')"),
            None,
            bool,
            "fake",
        )


@pytest.mark.parametrize(
    ("script", "match"),
    [
        ("import sys; sys.exit(3)", r"fake failed \(exit 3\): no message"),
        ("import sys; sys.stderr.write('pg_dump: error: permission denied for table t')", "grant login_user read"),
        ("import sys; sys.stderr.write('password authentication failed')", "check login_user and login_password"),
        ("import sys; sys.stderr.write('aborting because of server version mismatch')", "set pg_bin_dir"),
    ],
)
def test_stream_command_fails_on_exit_code_or_error_output(script, match):
    with pytest.raises(_pg_dump.PgToolError, match=match):
        _pg_dump.stream_command(_sh(script), None, lambda d: True, "fake")


def test_stream_command_stops_the_producer_when_every_sink_failed():
    script = "import sys\nwhile True: sys.stdout.write('x' * 65536)"
    assert _pg_dump.stream_command(_sh(script), None, lambda d: False, "fake") == []


def test_stream_command_kills_the_producer_when_a_stage_raises():
    def boom(data):
        raise RuntimeError("stage failed")

    with pytest.raises(RuntimeError):
        _pg_dump.stream_command(_sh("import sys\nwhile True: sys.stdout.write('x' * 65536)"), None, boom, "fake")


def test_artefact_suffixes():
    assert _backup_verify.artefact_suffixes({"name": "a.dump.zst.aes", "plain_name": "a.dump"}) == [".zst", ".aes"]
    assert _backup_verify.artefact_suffixes({"name": "g.sql.gz", "plain_name": "g.sql"}) == [".gz"]
    assert _backup_verify.artefact_suffixes({"name": "a.dump", "plain_name": "a.dump"}) == []


def test_metrics_keep_the_last_success_of_a_destination_that_failed(tmp_path):
    ok = [
        {"destination": "destinations[0] local:/a", "status": "verified", "size_bytes": 10},
        {"destination": "destinations[1] s3://b/", "status": "verified", "size_bytes": 11},
    ]
    _backup_flows.write_metrics(str(tmp_path), "app", 1000, 5, ok, True, 90000)
    partial = [ok[0], {"destination": "destinations[1] s3://b/", "status": "failed", "error": "x"}]
    changed, path = _backup_flows.write_metrics(str(tmp_path), "app", 2000, 6, partial, False, 90000)
    samples = _metrics.parse(open(path).read())
    success = "locksmith_backup_last_success_timestamp_seconds"
    assert samples[(success, (("database", "app"), ("destination", "local:/a")))] == 2000
    assert samples[(success, (("database", "app"), ("destination", "s3://b/")))] == 1000
    assert samples[("locksmith_backup_failures_total", (("database", "app"),))] == 1
    assert samples[("locksmith_backup_last_status", (("database", "app"),))] == 0 and changed


def test_a_missing_work_dir_is_named(tmp_path):
    j = job(format="directory", work_dir=str(tmp_path / "absent"))
    with pytest.raises(_backup.BackupError, match=r"work_dir .*absent.* create it or choose another"):
        j._dump_database("app", {})


def test_stream_command_error_output_is_one_string_as_ansible_requires():
    # Ansible's action plugin calls stderr.splitlines(): a list there crashed the controller, losing the message.
    script = "import sys; sys.stderr.write('pg_dump: error: no matching tables were found\\n'); sys.exit(1)"
    with pytest.raises(_pg_dump.PgToolError, match="no matching tables were found") as err:
        _pg_dump.stream_command(_sh(script), None, lambda d: True, "fake")
    assert err.value.details["stderr"] == "pg_dump: error: no matching tables were found"


def test_retention_leaves_a_backup_with_a_damaged_manifest_alone_and_says_so(tmp_path):
    # Its manifest (written last) is there, so it is no leftover of a killed run: it was deleted as one a day
    # later (or, with a damaged row_counts, kept as the newest good backup, which restores could not use).
    j = job(destinations=[{"type": "local", "path": str(tmp_path), "retention": {"keep_last": 1}}])
    _manifests.store(tmp_path, "20261120T020000Z-0001", lambda m: m["artefacts"][0].update(sha256=None))
    _manifests.store(tmp_path, "20261121T020000Z-0002", lambda m: m.update(row_counts=[5]))
    _manifests.store(tmp_path, "20261122T020000Z-0003")
    j.inspect_destinations(write=False)
    keep, prune = j.retention_plan(j.destinations[0], now=parse_backup_id(_manifests.NEWER))
    assert keep == [("20261122T020000Z-0003", "keep_last,newest")] and prune == []
    first, second = j.warnings
    assert "retention left backup 20261120T020000Z-0001 alone: manifest.json is malformed: artefacts[0]" in first
    assert "backup 20261121T020000Z-0002 alone: manifest.json is malformed: row_counts is not" in second


@pytest.mark.parametrize("plain_name", [5, None, ["app.dump"]])
def test_verifying_a_backup_whose_plain_name_is_no_string_names_the_field(tmp_path, plain_name):
    # artefact_suffixes measured it with len(): "cannot be decoded (object of type 'int' has no len())".
    _manifests.store(tmp_path, _manifests.NEWER, lambda m: m["artefacts"][0].update(plain_name=plain_name))
    j = job(destinations=[{"type": "local", "path": str(tmp_path)}])
    with pytest.raises(_backup.BackupError, match=r"artefacts\[0\]\.plain_name is missing or not a string") as err:
        _backup_flows.apply_verified(j, _manifests.NEWER)
    assert err.value.details["verification"][0]["valid"] is False


def test_a_damaged_metrics_file_is_replaced_with_a_warning(tmp_path):
    from ansible_collections.locksmith.ops.plugins.modules import pg_backup

    # Read as absent, it silently dropped the failure counter and the last success of other destinations.
    name = _metrics.textfile_name("backup", "app")
    copies = [{"destination": "destinations[0] local:/a", "status": "verified", "size_bytes": 10}]
    for damage, why in ((b'x{database="app"} 1\ngarbage {\n', "holds lines that are not metrics"), (b"\xff", "UTF-8")):
        (tmp_path / name).write_bytes(damage)
        warnings = []
        _backup_flows.write_metrics(str(tmp_path), "app", 1000, 5, copies, True, 90000, warnings)
        [warning] = warnings
        assert "metrics file '%s' " % (tmp_path / name) in warning and why in warning
        assert "unreadable content was replaced" in warning
        assert "garbage" not in warning
        # The module hands its warnings down, so the run reports it.
        (tmp_path / name).write_bytes(damage)
        warnings = []
        params = {"metrics_dir": str(tmp_path), "state": "present", "rpo_target_seconds": 90000}
        assert pg_backup.record_attempt(params, "app", 0, None, False, warnings) == str(tmp_path / name)
        assert len(warnings) == 1 and str(tmp_path / name) in warnings[0]
    # A whole file gives no warning.
    warnings = []
    _backup_flows.write_metrics(str(tmp_path), "app", 1000, 5, copies, True, 90000, warnings)
    assert warnings == []


def test_filters_written_differently_but_taking_the_same_are_one_kind():
    j = job(tables=["users"], exclude_schemas=["tmp"])
    same = {"tables": ["public.users", 'public."users"'], "exclude_schemas": ['"tmp"'], "schemas": []}
    assert _backup.filter_key(same) == j.filter_key
    assert _backup.filter_key({"tables": ["public.orders"], "exclude_schemas": ["tmp"]}) != j.filter_key
    assert _backup.filter_key(None) == job().filter_key  # a manifest from before filters were recorded
    assert _backup.filter_key({"tables": "users"})[0] == "unreadable"


def test_only_include_filters_make_a_backup_partial():
    # Leaving a cache schema or a log table out is still the database's backup (the role's README suggests it).
    assert _backup.partial_filters({"filters": {"exclude_schemas": ["cache"], "exclude_tables": ["log"]}}) == {}
    assert _backup.partial_filters({"filters": {"tables": ["users"], "exclude_tables": []}}) == {"tables": ["users"]}
    assert _backup.partial_filters({"filters": "damaged"}) == {}
