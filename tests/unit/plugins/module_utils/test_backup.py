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
