"""Role locksmith.ops.backup on localhost against a real PostgreSQL 15: the metrics files of retired jobs.

A database taken off backup_databases lost its job file and its timer, but its locksmith_backup_<database>.prom
stayed with its last timestamps, so BackupStale paged for it for ever once its RPO passed; so did every job's file
once backup_metrics_enabled was turned off. The files here are written by the runner the role installs, from the
job files it writes, as the timer runs them; nothing else in this machine's /etc is written (no schedule, no apt, no
job check).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics

ROLE = "locksmith.ops.backup : "
PRUNE = ROLE + "Remove the metrics files of jobs that no longer publish"


def _play(cluster, tmp_path, databases, **overrides):
    role_vars = {
        "backup_databases": databases,
        "backup_install_enabled": False,
        "backup_check_enabled": False,
        "backup_schedule": "none",
        "backup_s3_lifecycle_enabled": False,
        "backup_destinations": [{"type": "local", "path": str(tmp_path / "backups")}],
        "backup_login_host": cluster.host,
        "backup_login_port": cluster.port,
        "backup_runner_file": str(tmp_path / "lib" / "pg_backup.pyz"),
        "backup_config_dir": str(tmp_path / "jobs"),
        "backup_log_dir": str(tmp_path / "log"),
        "backup_metrics_dir": str(tmp_path / "textfile"),
        "backup_encryption_key_file": str(tmp_path / "jobs" / "encryption.key"),
        # A filtered job: pg_backup still names its metrics file after the database.
        "backup_job_overrides": {
            "pg_bin_dir": str(cluster.bin_dir),
            "ssl_mode": "disable",
            "exclude_tables": ["noise"],
        },
        **overrides,
    }
    return [
        {"hosts": "localhost", "gather_facts": False, "roles": [{"role": "locksmith.ops.backup", "vars": role_vars}]}
    ]


def _run_job(tmp_path, database):
    """The job as its timer runs it: the installed runner with the job file the role wrote."""
    argv = [sys.executable, str(tmp_path / "lib" / "pg_backup.pyz"), str(tmp_path / "jobs" / f"{database}.json")]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)


def _removed(run):
    return [item["item"]["path"] for item in run.result(PRUNE).get("results", []) if item.get("changed")]


def test_a_database_taken_off_the_list_and_metrics_turned_off_leave_no_metrics_file(
    pg_cluster, pg_database, ansible, tmp_path
):
    pg_cluster.query(
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 100);"
        "CREATE TABLE noise (id int)",
        dbname=pg_database,
    )
    gone = f"gone_{uuid.uuid4().hex[:8]}"  # no such database: its job fails, and says so in its metrics
    textfile = tmp_path / "textfile"
    first = ansible.run_playbook(_play(pg_cluster, tmp_path, [pg_database, gone]))
    assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
    backed_up = _run_job(tmp_path, pg_database)
    assert backed_up.returncode == 0, backed_up.stdout[-2000:] + backed_up.stderr[-2000:]
    assert json.loads(backed_up.stdout)["backup"]["filters"]["exclude_tables"] == ["noise"]
    assert _run_job(tmp_path, gone).returncode != 0
    kept = textfile / _metrics.textfile_name("backup", pg_database)
    retired = textfile / _metrics.textfile_name("backup", gone)
    samples = _metrics.parse(retired.read_text())
    assert samples[("locksmith_backup_last_status", (("database", gone),))] == 0
    assert _metrics.parse(kept.read_text())[("locksmith_backup_last_status", (("database", pg_database),))] == 1
    kept_text = kept.read_text()
    # Files this role does not own, or not while pgBackRest is off: another producer whose name starts alike, other
    # producers, a temporary file of the writer killed mid-write, and a pgBackRest job the role no longer manages.
    others = [
        "locksmith_backupx_app.prom",
        _metrics.textfile_name("drill", gone),
        "locksmith_tls.prom",
        ".%s.locksmith-tmp-k3v9x1" % retired.name,
        _metrics.textfile_name("pgbackrest", "main_full"),
    ]
    for name in others:
        (textfile / name).write_text("# planted\n")

    # Taken off the list: --check predicts the removal and removes nothing.
    check = ansible.run_playbook(_play(pg_cluster, tmp_path, [pg_database]), check=True)
    assert check.rc == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert retired.exists()
    assert check.changed() == 2, "predicted: the job file's removal and the metrics file's"
    assert _removed(check) == [str(retired)]

    run = ansible.run_playbook(_play(pg_cluster, tmp_path, [pg_database]), diff=True)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert not (tmp_path / "jobs" / f"{gone}.json").exists()
    assert not retired.exists(), "the retired job's metrics file stayed"
    assert _removed(run) == [str(retired)]
    assert kept.read_text() == kept_text
    assert sorted(p.name for p in textfile.iterdir()) == sorted([kept.name, *others])
    again = ansible.run_playbook(_play(pg_cluster, tmp_path, [pg_database]))
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
    recheck = ansible.run_playbook(_play(pg_cluster, tmp_path, [pg_database]), check=True)
    assert recheck.rc == 0 and recheck.changed() == 0, recheck.stdout[-3000:]

    # Metrics turned off: the job files no longer name the directory, so nothing writes the last file either.
    off = {"backup_metrics_enabled": False}
    predicted = ansible.run_playbook(_play(pg_cluster, tmp_path, [pg_database], **off), check=True)
    assert predicted.rc == 0 and _removed(predicted) == [str(kept)] and kept.exists(), predicted.stdout[-3000:]
    turned_off = ansible.run_playbook(_play(pg_cluster, tmp_path, [pg_database], **off))
    assert turned_off.rc == 0, turned_off.stdout[-3000:] + turned_off.stderr[-2000:]
    assert sorted(p.name for p in textfile.iterdir()) == sorted(others)
    job = json.loads((tmp_path / "jobs" / f"{pg_database}.json").read_text())["ANSIBLE_MODULE_ARGS"]
    assert "metrics_dir" not in job
    assert _run_job(tmp_path, pg_database).returncode == 0
    assert sorted(p.name for p in textfile.iterdir()) == sorted(others)
    quiet = ansible.run_playbook(_play(pg_cluster, tmp_path, [pg_database], **off))
    assert quiet.rc == 0 and quiet.changed() == 0, quiet.stdout[-3000:]
