"""roles/audit/files/locksmith-audit-metrics: the same file as the module audit_trigger writes, what psql answers, and
the atomic write, with a fake psql."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _audit, _metrics
from tests.harness.ansible import load_script as harness_load_script

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "audit" / "files" / "locksmith-audit-metrics"


def load_script():
    return harness_load_script(SCRIPT, "locksmith_audit_metrics")


@pytest.fixture(scope="module")
def script():
    return load_script()


def fake_psql(tmp_path, answer="1767225600|24576", code=0):
    """A psql that prints answer (or fails with code) and logs its argv."""
    psql = tmp_path / "psql"
    psql.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/argv\n'
        f"cat >> {tmp_path}/stdin\n"
        f'[ {code} -eq 0 ] || {{ echo "psql: error: connection to server failed" >&2; exit {code}; }}\n'
        f"echo '{answer}'\n"
    )
    psql.chmod(0o755)
    return psql


def run_script(tmp_path, psql, *extra, directory=None):
    out = directory or tmp_path / "textfile"
    out.mkdir(exist_ok=True)
    argv = [sys.executable, str(SCRIPT), "--dir", str(out), "--database", "shop", "--psql", str(psql), *extra]
    return subprocess.run(argv, capture_output=True, text=True, check=False), out


@pytest.mark.parametrize(
    "last_run,max_age",
    [(1767225600, 176400), (None, 176400), (1767225600, None)],
    ids=["recorded", "never-ran", "no-target"],
)
def test_render_equals_the_module_s_file(script, last_run, max_age):
    """Two programs write locksmith_audit_<database>.prom (the module, this one): for one state, the same bytes."""
    status = {"last_run_timestamp": last_run, "log_size_bytes": 24576}
    assert script.render("shop", last_run, 24576, max_age) == _metrics.render(
        _audit.retention_families("shop", status, max_age)
    )
    assert _metrics.textfile_name("audit", "shop") == "locksmith_audit_shop.prom"


def test_names_are_in_the_metrics_contract(script):
    contract = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()
    for name, _help in (script.LOG_BYTES, script.LAST_RUN, script.MAX_AGE):
        assert f"| {name} | database |" in contract


def test_parse_status(script):
    assert script.parse_status("1767225600|24576\n") == (1767225600, 24576)
    assert script.parse_status("|8192\n") == (None, 8192)  # no run recorded yet
    with pytest.raises(ValueError, match="unexpected answer"):
        script.parse_status("ERROR:  function audit.retention_status() does not exist\n")


def test_run_publishes_what_the_database_recorded(tmp_path):
    run, out = run_script(tmp_path, fake_psql(tmp_path), "--max-age-seconds", "176400", "--login-user", "admin")
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(out)) == ["locksmith_audit_shop.prom"]
    prom = out / "locksmith_audit_shop.prom"
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    samples = _metrics.parse(prom.read_text())
    label = (("database", "shop"),)
    assert samples[("locksmith_audit_retention_last_run_timestamp_seconds", label)] == 1767225600
    assert samples[("locksmith_audit_log_bytes", label)] == 24576
    assert samples[("locksmith_audit_retention_max_age_seconds", label)] == 176400
    argv = (tmp_path / "argv").read_text()
    assert "-U admin -d shop -v schema=audit -f -" in argv
    assert ':"schema".retention_status()' in (tmp_path / "stdin").read_text()


def test_an_unanswered_query_keeps_the_previous_file(tmp_path):
    out = tmp_path / "textfile"
    out.mkdir()
    (out / "locksmith_audit_shop.prom").write_text("previous\n")
    run, out = run_script(tmp_path, fake_psql(tmp_path, code=2), directory=out)
    assert run.returncode == 1
    assert "reading audit.retention_status() in database shop" in run.stderr
    assert "connection to server failed" in run.stderr and "the previous file is kept" in run.stderr
    assert sorted(os.listdir(out)) == ["locksmith_audit_shop.prom"]
    assert (out / "locksmith_audit_shop.prom").read_text() == "previous\n"


@pytest.mark.parametrize("option,value", [("--schema", 'audit"; DROP TABLE x; --'), ("--database", "../shop")])
def test_names_that_are_not_plain_are_refused_before_psql_runs(tmp_path, option, value):
    psql = fake_psql(tmp_path)
    run, out = run_script(tmp_path, psql, option, value)
    assert run.returncode == 2 and "is not a plain name" in run.stderr
    assert not (tmp_path / "argv").exists() and os.listdir(out) == []


def test_missing_directory_is_named(tmp_path):
    argv = [sys.executable, str(SCRIPT), "--dir", str(tmp_path / "gone"), "--database", "shop"]
    missing = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert missing.returncode == 2
    assert f"directory '{tmp_path / 'gone'}' does not exist" in missing.stderr


@pytest.mark.parametrize("database", ["shop", "Shop_2024", "_x", "d" * 63])
def test_the_file_has_the_name_the_collection_s_writer_gives(tmp_path, database):
    """The role removes the file of a database it no longer publishes by the name _metrics.textfile_name gives: the
    script writes that very name for every database it accepts."""
    run, out = run_script(tmp_path, fake_psql(tmp_path), "--database", database)
    assert run.returncode == 0, run.stderr
    assert os.listdir(out) == [_metrics.textfile_name("audit", database)]
