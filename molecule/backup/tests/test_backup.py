"""Behaviour of role backup on the converged host: the timer's schedule, and a real backup run by its service."""

import json
import re

import pytest

DATABASE = "app"
DESTINATION = "/var/backups/postgresql"
SERVICE = f"locksmith-backup@{DATABASE}.service"
TIMER = f"locksmith-backup@{DATABASE}.timer"
JOB_FILE = f"/etc/locksmith/backup/{DATABASE}.json"
KEY_FILE = "/etc/locksmith/backup/encryption.key"
RUNNER = "/usr/local/lib/locksmith/pg_backup.pyz"
METRICS_DIR = "/var/lib/prometheus/node-exporter"
PASSWORD = "molecule-only-b4ckup-pw"  # noqa: S105 - the throwaway container's test password (molecule.yml)


def _show(host, unit, *properties):
    out = host.check_output("systemctl show %s --property=%s", unit, ",".join(properties))
    return dict(line.split("=", 1) for line in out.splitlines())


def _backups(host):
    """Complete backups of DATABASE at the local destination, oldest first (hidden temporary dirs excluded)."""
    out = host.check_output("find %s/%s -mindepth 1 -maxdepth 1 -type d -not -name '.*'", DESTINATION, DATABASE)
    return sorted(out.split())


def _metrics(host, database):
    values = {}
    for line in host.file(f"{METRICS_DIR}/locksmith_backup_{database}.prom").content_string.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


@pytest.fixture(scope="module")
def first_run(host):
    """Start the service once (a oneshot: systemctl returns when the backup is done)."""
    before = _backups(host) if host.file(f"{DESTINATION}/{DATABASE}").exists else []
    started = host.run("systemctl start %s", SERVICE)
    return before, started


def test_timer_is_enabled_daily_at_two_with_jitter_and_catch_up(host):
    timer = _show(host, TIMER, "UnitFileState", "ActiveState", "TimersCalendar", "RandomizedDelayUSec", "Persistent")
    assert timer["UnitFileState"] == "enabled"
    assert timer["ActiveState"] == "active"
    assert "OnCalendar=*-*-* 02:00:00" in timer["TimersCalendar"]
    assert timer["RandomizedDelayUSec"] == "30min"
    assert timer["Persistent"] == "yes"
    assert host.file("/etc/cron.d/locksmith-backup").exists is False


def test_service_runs_the_shipped_runner_as_root(host):
    service = _show(host, SERVICE, "ExecStart", "User", "Type")
    assert f"path=/usr/bin/python3 ; argv[]=/usr/bin/python3 {RUNNER} {JOB_FILE} " in service["ExecStart"]
    assert service["Type"] == "oneshot"
    assert not host.exists("ansible") and not host.exists("ansible-playbook")


def test_secrets_are_root_only(host):
    for path in (JOB_FILE, KEY_FILE):
        secret = host.file(path)
        assert (secret.user, secret.group, secret.mode) == ("root", "root", 0o600), path
    assert PASSWORD in host.file(JOB_FILE).content_string
    assert host.file("/etc/locksmith/backup").mode == 0o700


def test_service_produces_one_verified_backup(host, first_run):
    before, started = first_run
    assert started.rc == 0, started.stderr
    after = _backups(host)
    assert len(after) == len(before) + 1
    newest = after[-1]
    manifest = json.loads(host.file(f"{newest}/manifest.json").content_string)
    assert manifest["database"] == DATABASE
    assert manifest["encryption"]["algorithm"].startswith("AES-256-GCM")
    assert manifest["artefacts"]
    for artefact in manifest["artefacts"]:
        stored = host.file(f"{newest}/{artefact['name']}")
        assert stored.size == artefact["size_bytes"] > 0
        assert stored.sha256sum == artefact["sha256"]


def test_backup_restores_its_rows_through_the_module(host, first_run):
    """state=verified with the same job file re-reads the checksums and runs pg_restore --list on the decrypted dump."""
    job = json.loads(host.file(JOB_FILE).content_string)
    job["ANSIBLE_MODULE_ARGS"]["state"] = "verified"
    args = json.dumps(job)
    result = host.run("python3 %s %s", RUNNER, args)
    assert result.rc == 0, result.stdout
    verification = json.loads(result.stdout)["verification"]
    assert verification and all(
        v["valid"] and v["checksums_verified"] and v["restore_list_checked"] for v in verification
    )


def test_metrics_report_success_and_the_rpo_target(host, first_run):
    metrics = _metrics(host, DATABASE)
    assert metrics[f'locksmith_backup_last_status{{database="{DATABASE}"}}'] == 1
    assert metrics[f'locksmith_backup_rpo_target_seconds{{database="{DATABASE}"}}'] == 93600
    assert metrics[f'locksmith_backup_failures_total{{database="{DATABASE}"}}'] == 0


def test_rerun_within_the_interval_takes_no_new_backup(host, first_run):
    count = len(_backups(host))
    again = host.run("systemctl start %s", SERVICE)
    assert again.rc == 0, again.stderr
    assert len(_backups(host)) == count


def test_journal_never_shows_the_password(host, first_run):
    journal = host.check_output("journalctl --no-pager -o cat -u %s", SERVICE)
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in journal or '"changed"' in journal
    assert PASSWORD not in journal


def test_failed_job_fails_the_service_and_sets_status_zero(host):
    """A job with a wrong password: the unit fails, and the metrics say so and count the failure."""
    job = json.loads(host.file(JOB_FILE).content_string)
    job["ANSIBLE_MODULE_ARGS"]["login_password"] = "wrong-password"  # noqa: S105 - a deliberately wrong password
    host.run("install -m 0600 /dev/null /etc/locksmith/backup/broken.json")
    host.run("printf '%%s' %s > /etc/locksmith/backup/broken.json", json.dumps(job).replace('"app"', '"broken"'))
    try:
        failed = host.run("systemctl start locksmith-backup@broken.service")
        assert failed.rc != 0
        assert host.run("systemctl is-failed locksmith-backup@broken.service").stdout.strip() == "failed"
        metrics = _metrics(host, "broken")
        assert metrics['locksmith_backup_last_status{database="broken"}'] == 0
        assert metrics['locksmith_backup_failures_total{database="broken"}'] == 1
        journal = host.check_output("journalctl --no-pager -o cat -u locksmith-backup@broken.service")
        assert re.search(r"password authentication failed|authentication", journal), journal
        assert "wrong-password" not in journal
    finally:
        host.run(
            "systemctl reset-failed locksmith-backup@broken.service; rm -f /etc/locksmith/backup/broken.json %s",
            f"{METRICS_DIR}/locksmith_backup_broken.prom",
        )
