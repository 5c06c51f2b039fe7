"""roles/intrusion_detection/files/locksmith-ids-metrics: parsing fail2ban-client, the exposition text and the
atomic write, with a fake fail2ban-client."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics
from tests.harness.ansible import load_script as harness_load_script

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "intrusion_detection" / "files" / "locksmith-ids-metrics"

STATUS = """Status
|- Number of jail:\t2
`- Jail list:\tlocksmith-nginx-sqli, sshd
"""
SSHD = """Status for the jail: sshd
|- Filter
|  |- Currently failed:\t1
|  |- Total failed:\t17
|  `- Journal matches:\t_COMM=sshd
`- Actions
   |- Currently banned:\t2
   |- Total banned:\t3
   `- Banned IP list:\t198.18.3.1 198.18.3.9
"""
SQLI = """Status for the jail: locksmith-nginx-sqli
|- Filter
|  |- Currently failed:\t0
|  |- Total failed:\t23
|  `- File list:\t/var/log/nginx/access.log
`- Actions
   |- Currently banned:\t23
   |- Total banned:\t23
   `- Banned IP list:\t198.18.1.1
"""


def load_script():
    return harness_load_script(SCRIPT, "locksmith_ids_metrics")


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture
def fake_client(tmp_path):
    """A fail2ban-client that answers `status` and `status <jail>` from the samples above."""
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "status").write_text(STATUS)
    (answers / "status_sshd").write_text(SSHD)
    (answers / "status_locksmith-nginx-sqli").write_text(SQLI)
    client = tmp_path / "fail2ban-client"
    client.write_text(
        "#!/bin/sh\n"
        f'name={answers}/$(echo "$*" | tr " " _)\n'
        '[ -f "$name" ] || { echo "Sorry but the jail does not exist" >&2; exit 255; }\n'
        'cat "$name"\n'
    )
    client.chmod(client.stat().st_mode | stat.S_IEXEC)
    return client


def test_parse_status_reads_the_tree(script):
    fields = script.parse_status(SSHD)
    assert fields["Currently banned"] == "2"
    assert fields["Total failed"] == "17"
    assert script.jail_names(STATUS) == ["locksmith-nginx-sqli", "sshd"]
    assert script.jail_names("Status\n|- Number of jail:\t0\n`- Jail list:\t\n") == []


def test_render_equals_the_collection_writer(script):
    counts = {
        "sshd": {"Currently banned": 2, "Total banned": 3, "Total failed": 17},
        'odd"jail\\': {"Currently banned": 0, "Total banned": 0, "Total failed": 1},
    }
    families = []
    for name, metric_type, help_text, field in script.FAMILIES:
        family = _metrics.Family(name, help_text, metric_type)
        for jail, fields in counts.items():
            family.add(fields[field], jail=jail)
        families.append(family)
    families.append(_metrics.Family(*script.RUN_FAMILIES[0][::2]).add(1795000000))
    families.append(_metrics.Family(*script.RUN_FAMILIES[1][::2]).add(600))
    assert script.render(counts, 1795000000, 600) == _metrics.render(families)
    parsed = _metrics.parse(script.render(counts, 1795000000, 600))
    assert parsed[("locksmith_ids_failures_total", (("jail", 'odd"jail\\'),))] == 1.0


def test_names_are_in_the_metrics_contract(script):
    contract = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()
    for family in script.FAMILIES:
        name = family[0]
        assert f"| {name} | jail |" in contract
    for name, _type, _help in script.RUN_FAMILIES:
        assert f"| {name} | |" in contract


def test_run_writes_the_file_atomically(tmp_path, fake_client):
    out = tmp_path / "textfile"
    out.mkdir()
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--dir", str(out), "--client", str(fake_client), "--max-age", "900"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(out)) == ["locksmith_ids.prom"]
    prom = out / "locksmith_ids.prom"
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    samples = _metrics.parse(prom.read_text())
    assert samples[("locksmith_ids_banned", (("jail", "sshd"),))] == 2
    assert samples[("locksmith_ids_bans_total", (("jail", "sshd"),))] == 3
    assert samples[("locksmith_ids_failures_total", (("jail", "sshd"),))] == 17
    assert samples[("locksmith_ids_bans_total", (("jail", "locksmith-nginx-sqli"),))] == 23
    # The run time and the max age: IntrusionMetricsOverdue fires when the writes stop.
    assert abs(samples[("locksmith_ids_last_run_timestamp_seconds", ())] - time.time()) < 60
    assert samples[("locksmith_ids_max_age_seconds", ())] == 900


def test_fail2ban_down_keeps_the_previous_file(tmp_path):
    out = tmp_path / "textfile"
    out.mkdir()
    (out / "locksmith_ids.prom").write_text("previous\n")
    client = tmp_path / "fail2ban-client"
    client.write_text("#!/bin/sh\necho 'Failed to access socket path: /run/fail2ban/fail2ban.sock' >&2\nexit 255\n")
    client.chmod(0o755)
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--dir", str(out), "--client", str(client)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "is fail2ban running?" in run.stderr
    assert "Failed to access socket path" in run.stderr
    assert sorted(os.listdir(out)) == ["locksmith_ids.prom"]
    assert (out / "locksmith_ids.prom").read_text() == "previous\n"


def test_missing_directory_is_named(tmp_path, fake_client):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--dir", str(tmp_path / "nope"), "--client", str(fake_client)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert f"directory '{tmp_path / 'nope'}' does not exist" in run.stderr


@pytest.mark.parametrize("max_age", ["0", "-5"])
def test_a_max_age_that_is_not_positive_is_refused(tmp_path, fake_client, max_age):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--dir", str(tmp_path), "--client", str(fake_client), "--max-age", max_age],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert f"--max-age {max_age} must be a number of seconds above 0" in run.stderr
    assert "locksmith_ids.prom" not in os.listdir(tmp_path)


def test_the_file_has_the_name_the_collection_s_writer_gives(script):
    """The role removes the file, once its metrics are off, by the name _metrics.textfile_name gives."""
    assert script.FILE_NAME == _metrics.textfile_name("ids")
