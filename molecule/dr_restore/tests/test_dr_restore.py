"""Behaviour of role dr_restore on the converged host: drill report, metrics and clean-up, and a corrupt backup."""

import json
from datetime import datetime

import pytest

DATABASE = "app"
DESTINATION = "/var/backups/postgresql"
REPORT_DIR = "/var/lib/locksmith/drills"
METRICS_FILE = f"/var/lib/prometheus/node-exporter/locksmith_drill_{DATABASE}.prom"
WORK_DIR = "/var/tmp"  # noqa: S108 - the role's default dr_restore_work_dir on the container
SAVED_ARTEFACT_DIR = "/root/dr-restore-molecule"
PHASES = ("fetch", "decrypt", "restore", "verify")
RTO_TARGET, RPO_TARGET = 900, 7200  # molecule.yml
ROWS = {"public.customers": 3000, "public.orders": 4000}  # prepare.yml
KEY = "0123456789abcdef" * 4  # the throwaway container's test key (molecule.yml)
LABEL = f'{{database="{DATABASE}"}}'


def _psql(host, sql):
    return host.check_output("runuser -u postgres -- psql -XAtc %s", sql)


def _databases(host):
    return set(_psql(host, "SELECT datname FROM pg_database").split())


def _reports(host):
    """JSON reports of drills of DATABASE, oldest first (the names carry the UTC start)."""
    return sorted(host.check_output("find %s -maxdepth 1 -name %s", REPORT_DIR, f"{DATABASE}-drill-*.json").split())


def _read_json(host, path):
    return json.loads(host.file(path).content_string)


def _backup(host):
    """(directory, manifest) of the one backup prepare.yml took."""
    out = host.check_output("find %s/%s -mindepth 1 -maxdepth 1 -type d -not -name '.*'", DESTINATION, DATABASE)
    directories = out.split()
    assert len(directories) == 1, directories
    return directories[0], _read_json(host, f"{directories[0]}/manifest.json")


def _metrics(host):
    values = {}
    for line in host.file(METRICS_FILE).content_string.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def _epoch(iso):
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def newest(host):
    """The report of the newest drill (the idempotence run's; --check writes none)."""
    return _read_json(host, _reports(host)[-1])


def test_every_converge_drilled_the_backup_and_passed(host):
    _directory, manifest = _backup(host)
    reports = [_read_json(host, path) for path in _reports(host)]
    # converge and idempotence each ran a drill.
    assert len(reports) >= 2, reports
    for report in reports:
        assert (report["mode"], report["database"], report["backup_id"]) == ("drill", DATABASE, manifest["id"])
        assert report["verified"] is True and report["passed"] is True, report["errors"]
        assert report["errors"] == [] and report["skipped_backups"] == []


def test_drill_checked_checksums_exact_row_counts_and_the_assertion(host, newest):
    _directory, manifest = _backup(host)
    checks = {(c["check"], c["subject"]): c for c in newest["checks"]}
    assert all(c["ok"] for c in newest["checks"]), newest["checks"]
    for artefact in manifest["artefacts"]:
        assert checks[("checksum", artefact["name"])]["ok"]
    for table, rows in ROWS.items():
        assert checks[("row_count", table)]["actual"] == rows
        assert checks[("row_count", table)]["note"] == "manifest exact"
    assert checks[("assertion", "orders present")]["actual"] == ROWS["public.orders"]


def test_rto_is_measured_per_phase_against_its_target(newest):
    assert set(newest["phases"]) == set(PHASES), newest["phases"]
    # Timed to the millisecond: the local fetch and the decryption of this small dump may round to 0.0.
    assert all(newest["phases"][phase] >= 0 for phase in PHASES), newest["phases"]
    assert newest["phases"]["restore"] > 0 and newest["phases"]["verify"] > 0, newest["phases"]
    assert 0 < newest["rto_seconds"] < RTO_TARGET
    # The phases are parts of the RTO, which also covers choosing the backup and writing nothing else.
    assert sum(newest["phases"][phase] for phase in PHASES) <= newest["rto_seconds"] + 0.01
    assert (newest["rto_target_seconds"], newest["rto_met"]) == (RTO_TARGET, True)


def test_rpo_is_the_age_of_the_restored_backup(host, newest):
    _directory, manifest = _backup(host)
    ended = _epoch(manifest["ended_at"])
    assert _epoch(newest["backup_ended_at"]) == pytest.approx(ended, abs=1)
    assert newest["rpo_seconds"] > 0
    assert newest["rpo_seconds"] == pytest.approx(newest["started_epoch"] - ended, abs=1)
    assert (newest["rpo_target_seconds"], newest["rpo_met"]) == (RPO_TARGET, True)


def test_scratch_database_and_work_files_are_gone(host, newest):
    scratch = newest["target_database"]
    assert scratch.startswith(f"drill_{DATABASE}_"), scratch
    assert newest["cleanup"].get("dropped") == scratch and "left" not in newest["cleanup"], newest["cleanup"]
    assert _databases(host) == {"postgres", "template0", "template1", DATABASE}
    assert host.run("find %s -maxdepth 1 -name '.locksmith-restore-*'", WORK_DIR).stdout.strip() == ""


def test_markdown_report_beside_the_json_says_passed(host):
    markdown = host.file(_reports(host)[-1][: -len(".json")] + ".md")
    assert "PASSED" in markdown.content_string
    assert markdown.mode == 0o640
    assert host.file(REPORT_DIR).mode == 0o750


def test_metrics_carry_the_newest_drill(host, newest):
    metrics = _metrics(host)
    assert metrics[f"locksmith_drill_last_status{LABEL}"] == 1
    assert metrics[f"locksmith_drill_rto_seconds{LABEL}"] == newest["rto_seconds"]
    assert metrics[f"locksmith_drill_rto_target_seconds{LABEL}"] == RTO_TARGET
    assert metrics[f"locksmith_drill_rpo_seconds{LABEL}"] == newest["rpo_seconds"]
    assert metrics[f"locksmith_drill_max_age_seconds{LABEL}"] == 1296000  # the role's default
    ended = metrics[f"locksmith_drill_last_run_timestamp_seconds{LABEL}"]
    assert newest["started_epoch"] + newest["rto_seconds"] - 0.01 <= ended < newest["started_epoch"] + 300
    for phase in PHASES:
        sample = f'locksmith_drill_phase_seconds{{database="{DATABASE}",phase="{phase}"}}'
        assert metrics[sample] == newest["phases"][phase], phase


@pytest.fixture(scope="module")
def corrupt_run(host, run_role):
    """Run the role once with one byte of the encrypted artefact flipped, then put the saved original back."""
    directory, manifest = _backup(host)
    artefact = manifest["artefacts"][0]
    path = f"{directory}/{artefact['name']}"
    saved = f"{SAVED_ARTEFACT_DIR}/{artefact['name']}"
    host.check_output("install -d -m 0700 %s && cp -p %s %s", SAVED_ARTEFACT_DIR, path, saved)
    flip = "import sys; f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(-1, 1); "
    flip += "f.write(bytes([b[0] ^ 0xFF])); f.close()"
    host.check_output("python3 -c %s %s %s", flip, path, str(artefact["size_bytes"] // 2))
    reports, databases = _reports(host), _databases(host)
    try:
        assert host.file(path).sha256sum != artefact["sha256"], "the artefact was not changed"
        rc, output = run_role()
    finally:
        host.check_output("cp -p %s %s", saved, path)
    new_reports = [p for p in _reports(host) if p not in reports]
    return artefact, path, rc, output, new_reports, databases


def test_corrupt_backup_fails_the_run_and_restores_nothing(host, corrupt_run):
    artefact, _path, rc, output, new_reports, databases = corrupt_run
    assert rc != 0, output[-3000:]
    assert "is corrupt" in output and artefact["name"] in output and "nothing was restored" in output, output[-3000:]
    assert KEY not in output
    assert len(new_reports) == 1, new_reports
    report = _read_json(host, new_reports[0])
    assert report["verified"] is False and report["passed"] is False
    checksum = [c for c in report["checks"] if c["check"] == "checksum" and c["subject"] == artefact["name"]]
    assert checksum and checksum[0]["ok"] is False, report["checks"]
    assert any("is corrupt" in error for error in report["errors"]), report["errors"]
    assert report["phases"].get("restore", 0) == 0
    assert _databases(host) == databases == {"postgres", "template0", "template1", DATABASE}
    metrics = _metrics(host)
    assert metrics[f"locksmith_drill_last_status{LABEL}"] == 0
    # Nothing verified, so no RTO: the passed drill's figure does not stand for this one.
    assert f"locksmith_drill_rto_seconds{LABEL}" not in metrics


def test_restored_artefact_drills_green_again(host, corrupt_run, run_role):
    artefact, path = corrupt_run[:2]
    assert host.file(path).sha256sum == artefact["sha256"]
    rc, output = run_role()
    assert rc == 0, output[-3000:]
    newest = _read_json(host, _reports(host)[-1])
    assert newest["passed"] is True and newest["backup_id"] in path
    assert _metrics(host)[f"locksmith_drill_last_status{LABEL}"] == 1
    assert _databases(host) == {"postgres", "template0", "template1", DATABASE}
