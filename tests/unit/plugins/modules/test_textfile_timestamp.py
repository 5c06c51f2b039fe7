"""textfile_timestamp: one run-time series per file, idempotent although its value moves, check mode, refusals."""

import os

import pytest

from tests.harness.ansible import run_module_inprocess

BASE = {
    "name": "locksmith_hardening_last_run_timestamp_seconds",
    "help": "Newest converge of a hardening role",
    "labels": {"role": "ssh_hardening"},
    "producer": "hardening",
    "subject": "ssh_hardening",
}


def run(tmp_path, check=False, diff=False, **over):
    args = dict(BASE, metrics_dir=str(tmp_path / "textfile"), **over)
    return run_module_inprocess("textfile_timestamp", args, check=check, diff=diff)


def samples(tmp_path):
    text = (tmp_path / "textfile" / "locksmith_hardening_ssh_hardening.prom").read_text()
    return [line for line in text.splitlines() if not line.startswith("#")], text


def test_first_run_creates_the_directory_and_publishes_a_second_only_moves_the_value(tmp_path, monkeypatch):
    first = run(tmp_path)
    assert first["changed"] is True and first["metrics_file"].endswith(
        "/textfile/locksmith_hardening_ssh_hardening.prom"
    )
    assert oct(os.stat(tmp_path / "textfile").st_mode & 0o777) == "0o755"
    assert samples(tmp_path)[0] == ['locksmith_hardening_last_run_timestamp_seconds{role="ssh_hardening"} %d'
                                    % first["timestamp"]]  # fmt: skip
    later = first["timestamp"] + 3600
    monkeypatch.setattr("time.time", lambda: float(later))
    second = run(tmp_path)
    # The value moved (the run time is the point of the file), which is not a change: a converge stays idempotent.
    assert second["changed"] is False and second["timestamp"] == later
    assert samples(tmp_path)[0][0].endswith(" %d" % later)


def test_check_mode_writes_nothing_and_says_whether_a_series_is_new(tmp_path):
    result = run(tmp_path, check=True, diff=True)
    assert result["changed"] is True and not (tmp_path / "textfile").exists()
    assert 'role="ssh_hardening"' in result["diff"]["after"] and result["diff"]["before"] == ""
    run(tmp_path)
    assert run(tmp_path, check=True)["changed"] is False


@pytest.mark.parametrize(
    "over",
    [
        {"labels": {"role": "firewall"}},
        {"help": "Another help text"},
        {"name": "locksmith_audit_retention_last_run_timestamp_seconds"},
    ],
)
def test_another_series_or_help_is_a_change_and_replaces_the_old_one(tmp_path, over):
    run(tmp_path)
    result = run(tmp_path, **over)
    assert result["changed"] is True
    lines, text = samples(tmp_path)
    # One series in the file, the new one: the old labels or name are gone.
    assert len(lines) == 1 and lines[0].startswith(over.get("name", BASE["name"]))
    assert ('role="firewall"' in lines[0]) == ("labels" in over)
    assert "# HELP %s %s" % (over.get("name", BASE["name"]), over.get("help", BASE["help"])) in text


def test_a_damaged_file_is_replaced_whole(tmp_path):
    run(tmp_path)
    path = tmp_path / "textfile" / "locksmith_hardening_ssh_hardening.prom"
    path.write_text("garbage {\n")
    assert run(tmp_path)["changed"] is True
    assert samples(tmp_path)[0][0].startswith('locksmith_hardening_last_run_timestamp_seconds{role="ssh_hardening"} ')


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"name": "node_boot_time_seconds"}, "name 'node_boot_time_seconds' is not a locksmith timestamp metric"),
        ({"name": "locksmith_backup_last_status"}, "ends with _timestamp_seconds"),
        ({"help": "two\nlines"}, "help must be one line"),
        ({"help": "  "}, "help must be one line"),
        ({"labels": {"Role": "x"}}, "labels Role: a label name is lower-case"),
        ({"labels": {"__name__": "x"}}, "labels __name__"),
        ({"producer": "Hardening"}, "metrics producer 'Hardening' must be lower-case"),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(tmp_path, over, message):
    result = run(tmp_path, **over)
    assert result["failed"] is True and message in result["msg"], result
    assert not (tmp_path / "textfile").exists() or not any((tmp_path / "textfile").iterdir())


def test_a_directory_that_cannot_be_created_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    result = run_module_inprocess("textfile_timestamp", dict(BASE, metrics_dir=str(tmp_path / "file" / "sub")))
    assert (
        result["failed"] is True and "metrics_dir '%s' cannot be created" % (tmp_path / "file" / "sub") in result["msg"]
    )
