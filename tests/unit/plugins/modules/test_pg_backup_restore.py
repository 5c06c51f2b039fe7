"""pg_backup_restore's main() on the paths that stop before any connection."""

from __future__ import annotations

import json
import time

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics, _restore
from tests.harness.ansible import run_module_inprocess
from tests.unit.plugins.module_utils import _manifests
from tests.unit.plugins.module_utils._manifests import DAMAGE


def test_a_restore_of_a_backup_with_a_damaged_manifest_fails_naming_the_backup_and_the_field(tmp_path):
    # The check runs before any connection: chosen, this backup failed the drill with an AttributeError.
    _manifests.store(tmp_path, _manifests.NEWER, DAMAGE["row_counts-list"][1])
    args = {
        "database": "app",
        "destinations": [{"type": "local", "path": str(tmp_path)}],
        "pg_bin_dir": "/usr/lib/postgresql/15/bin",
        "login_host": "127.0.0.1",
        "login_port": 1,
    }
    result = run_module_inprocess("pg_backup_restore", args)
    assert result["failed"] and "exception" not in result, result
    assert "%s: manifest.json is malformed: row_counts is not an object" % _manifests.NEWER in result["msg"]
    assert result["skipped"] == [
        {
            "id": _manifests.NEWER,
            "destination": "destinations[0] local:%s" % tmp_path,
            "reason": "manifest.json is malformed: row_counts is not an object",
        }
    ]


# ---- A drill that stops before it restores still publishes its failure ------------------------------------------
# Before, each of these failed without writing the metrics file: the previous drill's status 1 stayed and
# DrillFailed never fired.
PASSED_BEFORE = (
    'locksmith_drill_last_run_timestamp_seconds{database="app"} 100\n'
    'locksmith_drill_last_status{database="app"} 1\n'
    'locksmith_drill_rto_seconds{database="app"} 5\n'
    'locksmith_drill_rpo_seconds{database="app"} 60\n'
    'locksmith_drill_phase_seconds{database="app",phase="fetch"} 1\n'
)


def _drill_args(tmp_path, **changes):
    for name in ("backups", "metrics", "reports"):
        (tmp_path / name).mkdir(exist_ok=True)
    (tmp_path / "metrics" / "locksmith_drill_app.prom").write_text(PASSED_BEFORE)
    args = {
        "database": "app",
        "destinations": [{"type": "local", "path": str(tmp_path / "backups")}],
        "pg_bin_dir": "/usr/lib/postgresql/15/bin",
        "login_host": "127.0.0.1",
        "login_port": 1,
        "metrics_dir": str(tmp_path / "metrics"),
        "report_dir": str(tmp_path / "reports"),
    }
    args.update(changes)
    return args


def _samples(tmp_path):
    text = (tmp_path / "metrics" / "locksmith_drill_app.prom").read_text()
    return {name: value for (name, _labels), value in _metrics.parse(text).items()}


STOPPED = {
    "no backup at any destination": ({}, "no complete, intact backup of 'app'"),
    "the key file is missing": ({"encryption_key_file": "/nonexistent/key"}, "encryption_key_file '/nonexistent/key'"),
    "an assertion is refused": (
        {"assertions": [{"name": "x", "sql": "DROP TABLE x", "expected": 1}]},
        "assertions[0] (x): sql must be one query",
    ),
    "the server is unreachable": ("stored", "cannot connect to PostgreSQL at 127.0.0.1:1"),
}


@pytest.mark.parametrize("case", sorted(STOPPED))
def test_a_drill_that_stops_before_restoring_publishes_status_0_and_its_run_time(tmp_path, case):
    changes, message = STOPPED[case]
    if changes == "stored":  # a backup is chosen; the server it would restore into does not answer
        changes = {}
        _manifests.store(tmp_path / "backups", _manifests.NEWER)
    before = time.time()
    result = run_module_inprocess("pg_backup_restore", _drill_args(tmp_path, **changes))
    assert result["failed"] and message in result["msg"] and "exception" not in result, result
    samples = _samples(tmp_path)
    assert samples["locksmith_drill_last_status"] == 0
    assert before <= samples["locksmith_drill_last_run_timestamp_seconds"] <= time.time()
    assert samples["locksmith_drill_rto_target_seconds"] == 1800
    assert samples["locksmith_drill_max_age_seconds"] == 15 * 86400
    # Nothing was restored: no RTO and no phases stand for this drill (the previous drill's are gone too).
    assert "locksmith_drill_rto_seconds" not in samples and "locksmith_drill_phase_seconds" not in samples
    report = json.loads(open(result["report_files"]["json"], encoding="utf-8").read())
    assert report == result["report"]
    assert report["verified"] is False and report["passed"] is False and report["rto_seconds"] is None
    assert report["errors"] == [result["msg"]] and report["phases"] == {}
    if case == "the server is unreachable":  # the backup was chosen: its age is known
        assert report["backup_id"] == _manifests.NEWER and samples["locksmith_drill_rpo_seconds"] > 0
    else:
        assert report["backup_id"] is None and "locksmith_drill_rpo_seconds" not in samples
    markdown = open(result["report_files"]["markdown"], encoding="utf-8").read()
    assert "FAILED" in markdown and "| RTO | not measured" in markdown and "| restore | - |" in markdown
    assert result["metrics_file"] == str(tmp_path / "metrics" / "locksmith_drill_app.prom")


def test_an_unexpected_error_in_a_drill_is_published_and_reported_without_a_traceback(tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise KeyError("size_bytes")

    monkeypatch.setattr(_restore, "choose_backup", broken)
    result = run_module_inprocess("pg_backup_restore", _drill_args(tmp_path))
    assert result["failed"], result
    assert result["msg"].startswith("drill of 'app' stopped on an unexpected error (KeyError: 'size_bytes')")
    # The traceback goes to fail_json's exception= (shown with -vvv where tracebacks are enabled), never into msg.
    assert "Traceback" not in result["msg"] and "Traceback" not in json.dumps(result.get("report"))
    assert _samples(tmp_path)["locksmith_drill_last_status"] == 0
    assert result["report"]["target_fate"].startswith("unknown")


def test_a_drill_whose_report_dir_is_missing_still_publishes_its_failure(tmp_path):
    result = run_module_inprocess("pg_backup_restore", _drill_args(tmp_path, report_dir=str(tmp_path / "none")))
    assert result["failed"] and "report_dir '%s' does not exist" % (tmp_path / "none") in result["msg"], result
    assert _samples(tmp_path)["locksmith_drill_last_status"] == 0 and "report_files" not in result


def test_a_drill_max_age_that_is_not_positive_is_refused_naming_it(tmp_path):
    result = run_module_inprocess("pg_backup_restore", _drill_args(tmp_path, drill_max_age_seconds=0))
    assert result["failed"] and "drill_max_age_seconds is 0" in result["msg"], result
    samples = _samples(tmp_path)
    assert samples["locksmith_drill_last_status"] == 0 and "locksmith_drill_max_age_seconds" not in samples


@pytest.mark.parametrize("mode", ["recover", "tables"])
def test_a_failed_restore_that_is_no_drill_writes_no_drill_metrics(tmp_path, mode):
    args = _drill_args(tmp_path, mode=mode, confirm="I understand this overwrites app", tables=["public.t"])
    result = run_module_inprocess("pg_backup_restore", args)
    assert result["failed"] and "no complete, intact backup" in result["msg"], result
    assert (tmp_path / "metrics" / "locksmith_drill_app.prom").read_text() == PASSED_BEFORE
    assert "metrics_file" not in result and not list((tmp_path / "reports").iterdir())


def test_a_failed_drill_in_check_mode_writes_nothing(tmp_path):
    result = run_module_inprocess("pg_backup_restore", _drill_args(tmp_path), check=True)
    assert result["failed"] and "no complete, intact backup" in result["msg"], result
    assert (tmp_path / "metrics" / "locksmith_drill_app.prom").read_text() == PASSED_BEFORE
    assert "metrics_file" not in result and not list((tmp_path / "reports").iterdir())
