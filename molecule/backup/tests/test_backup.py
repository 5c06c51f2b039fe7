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


def _metrics(host, database, producer="backup"):
    values = {}
    for line in host.file(f"{METRICS_DIR}/locksmith_{producer}_{database}.prom").content_string.splitlines():
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


# ---- pgBackRest (backup_pgbackrest_enabled) ------------------------------------------------------
STANZA = "main"
PGBACKREST = f"runuser -u postgres -- pgbackrest --stanza={STANZA}"


def _psql(host, sql):
    return host.check_output("runuser -u postgres -- psql -XAtc %s", sql)


def _pgbackrest_info(host):
    return json.loads(host.check_output(f"{PGBACKREST} --output=json info"))[0]


@pytest.fixture(scope="module")
def full_backup(host):
    """Run the full backup's service once, as its timer would."""
    return host.run("systemctl start locksmith-pgbackrest@full.service")


def test_postgresql_archives_wal_with_pgbackrest(host):
    assert _psql(host, "SHOW archive_mode") == "on"
    assert _psql(host, "SHOW archive_command") == (
        f"pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza={STANZA} archive-push %p"
    )
    conf = host.file("/etc/pgbackrest/pgbackrest.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "postgres", 0o640)
    for line in (
        "repo1-path=/var/lib/pgbackrest",
        "repo1-retention-full=1",
        "compress-type=zst",
        "start-fast=y",
        "repo1-bundle=y",
    ):
        assert line in conf.content_string.splitlines(), line


def test_pgbackrest_timers_run_full_weekly_and_diff_daily(host):
    full = _show(host, "locksmith-pgbackrest@full.timer", "UnitFileState", "ActiveState", "TimersCalendar")
    diff = _show(host, "locksmith-pgbackrest@diff.timer", "UnitFileState", "ActiveState", "TimersCalendar")
    assert (full["UnitFileState"], full["ActiveState"]) == ("enabled", "active")
    assert (diff["UnitFileState"], diff["ActiveState"]) == ("enabled", "active")
    assert "OnCalendar=Sun *-*-* 01:00:00" in full["TimersCalendar"]
    assert "OnCalendar=Mon..Sat *-*-* 01:00:00" in diff["TimersCalendar"]
    service = _show(host, "locksmith-pgbackrest@full.service", "User", "ExecStart")
    assert service["User"] == "postgres" and "--type=full backup" in service["ExecStart"]


def test_timer_service_takes_a_full_backup(host, full_backup):
    assert full_backup.rc == 0, full_backup.stderr
    info = _pgbackrest_info(host)
    assert info["status"]["code"] == 0, info["status"]
    assert [b["type"] for b in info["backup"]].count("full") >= 1
    newest = info["backup"][-1]
    assert newest["type"] == "full" and newest["info"]["repository"]["delta"] > 0


def test_wal_is_archived_and_pgbackrest_check_passes(host, full_backup):
    segment = _psql(host, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    checked = host.run(f"{PGBACKREST} check")
    assert checked.rc == 0, checked.stderr
    archive = _pgbackrest_info(host)["archive"][0]
    # check switched WAL and waited until that segment reached the repository.
    assert archive["max"][8:] >= segment[8:], (archive, segment)


def test_pgbackrest_metrics_match_the_repository(host, full_backup):
    newest = _pgbackrest_info(host)["backup"][-1]
    metrics = _metrics(host, f"{STANZA}_full", producer="pgbackrest")
    labels = f'{{stanza="{STANZA}",type="full"}}'
    assert metrics[f"locksmith_pgbackrest_last_status{labels}"] == 1
    assert metrics[f"locksmith_pgbackrest_failures_total{labels}"] == 0
    assert metrics[f"locksmith_pgbackrest_last_success_timestamp_seconds{labels}"] == newest["timestamp"]["stop"]
    assert metrics[f"locksmith_pgbackrest_last_size_bytes{labels}"] == newest["info"]["repository"]["delta"]


def test_failed_pgbackrest_backup_sets_status_zero_and_counts(host):
    """An instance whose --type pgBackRest refuses: the unit fails and its own metrics file says so."""
    unit = "locksmith-pgbackrest@bogus.service"
    prom = f"{METRICS_DIR}/locksmith_pgbackrest_{STANZA}_bogus.prom"
    try:
        assert host.run("systemctl start %s", unit).rc != 0
        labels = f'{{stanza="{STANZA}",type="bogus"}}'
        metrics = _metrics(host, f"{STANZA}_bogus", producer="pgbackrest")
        assert metrics[f"locksmith_pgbackrest_last_status{labels}"] == 0
        assert metrics[f"locksmith_pgbackrest_failures_total{labels}"] == 1
        assert f"locksmith_pgbackrest_last_success_timestamp_seconds{labels}" not in metrics
    finally:
        host.run("systemctl reset-failed %s; rm -f %s", unit, prom)


# ---- schedule changes (last: each runs the role again, and the end puts the converged state back) -------------
def _timer_state(host, database):
    state = _show(host, f"locksmith-backup@{database}.timer", "UnitFileState", "ActiveState")
    return state.get("UnitFileState", ""), state["ActiveState"]


def test_schedule_changes_leave_no_job_behind(host, run_role):
    # "gone" exists nowhere, so the job check (which connects) is off for this run.
    rc, output = run_role({"backup_databases": [DATABASE, "gone"], "backup_check_enabled": False})
    assert rc == 0, output
    assert _timer_state(host, "gone") == ("enabled", "active")
    # Its job runs once (and fails: no such database), so it has a metrics file; so has a stanza since renamed.
    gone_prom = f"{METRICS_DIR}/locksmith_backup_gone.prom"
    old_stanza_prom = f"{METRICS_DIR}/locksmith_pgbackrest_old_full.prom"
    assert host.run("systemctl start locksmith-backup@gone.service").rc != 0
    host.run("systemctl reset-failed locksmith-backup@gone.service")
    host.run("cp %s %s", gone_prom, old_stanza_prom)
    app_prom = host.file(f"{METRICS_DIR}/locksmith_backup_{DATABASE}.prom").exists
    assert host.file(gone_prom).exists

    # Taken off the list: its timer stops and its job file (the password) and metrics file go, else BackupStale
    # would page for it for ever; app's stay as they were.
    rc, output = run_role()
    assert rc == 0, output
    assert _timer_state(host, "gone")[1] == "inactive" and not host.file("/etc/locksmith/backup/gone.json").exists
    assert not host.file("/etc/systemd/system/timers.target.wants/locksmith-backup@gone.timer").exists
    assert _timer_state(host, DATABASE) == ("enabled", "active") and host.file(JOB_FILE).exists
    assert not host.file(gone_prom).exists and not host.file(old_stanza_prom).exists
    assert host.file(f"{METRICS_DIR}/locksmith_backup_{DATABASE}.prom").exists == app_prom

    # cron: the timers stop, the units go (a host without systemd can take cron), one line per database.
    rc, output = run_role({"backup_schedule": "cron"})
    assert rc == 0, output
    assert _timer_state(host, DATABASE)[1] == "inactive"
    assert not host.file("/etc/systemd/system/locksmith-backup@.timer").exists
    assert not host.file("/etc/systemd/system/locksmith-backup@.service").exists
    lines = [
        line for line in host.file("/etc/cron.d/locksmith-backup").content_string.splitlines() if line[:1].isdigit()
    ]
    assert lines == [f"0 2 * * * root /usr/bin/python3 {RUNNER} {JOB_FILE} >/var/log/locksmith/backup-app.log 2>&1"]
    rc, output = run_role({"backup_schedule": "cron"})
    assert rc == 0 and "changed=0" in output, output

    # none: nothing scheduled on the host at all.
    rc, output = run_role({"backup_schedule": "none"})
    assert rc == 0, output
    assert not host.file("/etc/cron.d/locksmith-backup").exists and _timer_state(host, DATABASE)[1] == "inactive"

    # Metrics off: nothing writes the files any more, so none is left to age (pgBackRest's included).
    rc, output = run_role({"backup_metrics_enabled": False})
    assert rc == 0, output
    left = host.run("ls %s", METRICS_DIR).stdout.split()
    assert [name for name in left if name.startswith(("locksmith_backup_", "locksmith_pgbackrest_"))] == []
    stop_post = _show(host, "locksmith-pgbackrest@full.service", "ExecStopPost").get("ExecStopPost", "")  # "": unset
    assert "--metrics-dir" not in stop_post

    # And back: the converged state the other tests saw.
    rc, output = run_role()
    assert rc == 0, output
    assert _timer_state(host, DATABASE) == ("enabled", "active")
    test_timer_is_enabled_daily_at_two_with_jitter_and_catch_up(host)
