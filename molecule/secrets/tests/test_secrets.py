"""Verify the secrets role in a systemd container: env files, restart/reload on change only, the timer."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # the role's default (molecule.yml sets no metrics variable)
ROTATED = "molecule/host-token"  # rotated on the host, into its own store (molecule.yml)


def _store():
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets.json"
    return json.loads(path.read_text(encoding="utf-8"))["secrets"]


def _current(name, field):
    return _store()[name]["current"]["value"][field]


def test_env_files_hold_the_current_values_privately(host):
    db = host.file("/etc/demo-app/db.env")
    assert db.user == "demo-app" and db.group == "demo-app" and db.mode == 0o600
    # The staged password holds $, #, a space and quotes: single-quoted, which systemd reads
    # literally (the service's start below logs the hash of what it was given).
    assert f"DB_PASSWORD='{_current('molecule/db', 'value')}'\n" in db.content_string
    hook = host.file("/etc/demo-app/webhook.env")
    assert hook.user == "demo-app" and hook.group == "root" and hook.mode == 0o640
    assert f"WEBHOOK_KEY={_current('molecule/webhook', 'key')}\n" in hook.content_string


def test_service_restarted_and_reloaded_once_over_converge_idempotence_and_check(host):
    # converge wrote both files: one restart, one reload; idempotence and check changed nothing.
    starts = host.file("/var/lib/demo-app/starts.log").content_string.splitlines()
    expected = hashlib.sha256(_current("molecule/db", "value").encode()).hexdigest()
    assert starts == [f"{expected}  -"]  # the service started with the value from the store
    assert host.file("/var/lib/demo-app/reloads.log").content_string.splitlines() == ["reload"]


def test_timer_runs_the_given_command(host):
    assert host.service("locksmith-secrets-rotate.timer").is_enabled
    assert host.run("systemctl is-active locksmith-secrets-rotate.timer").stdout.strip() == "active"
    unit = host.file("/etc/systemd/system/locksmith-secrets-rotate.service")
    assert unit.mode == 0o644
    run = host.run("systemctl start locksmith-secrets-rotate.service")
    assert run.rc == 0, run.stderr
    # systemd quoting kept $$ and %% literal for the shell: $PPID expanded by sh, the percent sign kept.
    line = host.file("/var/lib/demo-app/schedule.log").content_string.splitlines()[-1]
    assert line.startswith("scheduled run ") and line.endswith(" 100%")
    assert line.split()[2].isdigit()
    assert not host.file("/etc/cron.d/locksmith-secrets-rotate").exists


def test_the_rotation_published_its_metrics_by_default(host):
    directory = host.file(TEXTFILE_DIR)
    assert directory.is_directory and directory.user == "root" and directory.mode == 0o755
    # The file name of a subject with a '/' (plugins/module_utils/_metrics.py textfile_name).
    digest = hashlib.sha256(ROTATED.encode()).hexdigest()[:8]
    prom = host.file(f"{TEXTFILE_DIR}/locksmith_secret_molecule_host-token_{digest}.prom")
    assert prom.exists and prom.user == "root" and prom.mode == 0o644
    published = {}
    for line in prom.content_string.splitlines():
        if line and not line.startswith("#"):
            series, number = line.rsplit(" ", 1)
            assert series.endswith(f'{{secret="{ROTATED}"}}'), line
            published[series.split("{")[0]] = float(number)
    promoted = json.loads(host.file("/var/lib/demo-app/rotated.json").content_string)["secrets"][ROTATED]["promoted_at"]
    assert promoted > 0
    assert published == {
        "locksmith_secret_last_rotation_timestamp_seconds": pytest.approx(promoted, abs=1),
        "locksmith_secret_rotation_last_status": 1,
        "locksmith_secret_max_age_seconds": 2592000,
    }
