"""playbooks/posture.yml on localhost with crafted evidence: a promise that was not kept never reads as kept."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.harness.ansible import REPO, run_playbook

PLAYBOOK = REPO / "playbooks" / "posture.yml"
PROOF = {"name": "proof", "title": "A proof measured elsewhere", "value": 0, "target": 0, "compare": "eq"}


@pytest.fixture
def site(tmp_path):
    """An inventory (a local host, a host nothing listens for), a fresh verified drill, and the report's place."""
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "localhost ansible_connection=local ansible_python_interpreter=%s\n"
        "[web]\n"
        "gone1 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh ansible_become=false "
        "ansible_ssh_common_args='-o ConnectTimeout=2 -o StrictHostKeyChecking=no'\n"
        "[databases]\n" % sys.executable
    )
    drills = tmp_path / "drills" / "restore1"
    drills.mkdir(parents=True)
    report = {"database": "app", "verified": True, "rto_seconds": 12.5, "phases": {}, "started_epoch": time.time()}
    (drills / "app-drill-20260101T000000Z.json").write_text(json.dumps(report))
    return tmp_path


def posture(site: Path, **extra):
    extra_vars = {
        "posture_dest": str(site / "out"),
        "posture_drill_report_dir": str(site / "drills"),
        "posture_proofs": [PROOF],
        "harden_hosts": "web:!all",  # matches no host unless a test names one
    }
    extra_vars.update(extra)
    run = run_playbook(PLAYBOOK, inventory=site / "inventory.ini", extra_vars=extra_vars, timeout=300)
    report = site / "out" / "posture.json"
    return run, json.loads(report.read_text()) if report.exists() else None


def statuses(document):
    return {p["name"]: p["status"] for p in document["promises"]}


def test_a_host_that_cannot_be_reached_keeps_its_row_and_the_report_is_still_written(site):
    run, document = posture(site, harden_hosts="web")
    # Every host to measure unreachable: the play used to stop there, leaving no report (or the last run's).
    assert document is not None, run.stdout[-3000:]
    assert run.rc != 0 and document["passed"] is False
    assert statuses(document) == {"lynis_gone1": "unmeasured", "drill_rto": "met", "proof": "met"}
    [row] = [p for p in document["promises"] if p["name"] == "lynis_gone1"]
    assert row["detail"].startswith("not read: ") and "port 1" in row["detail"]


def test_a_figure_that_cannot_be_judged_replaces_the_last_report(site):
    run, document = posture(site)
    assert run.rc == 0 and document["passed"] is True, run.stdout[-3000:]
    run, document = posture(site, posture_proofs=[dict(PROOF, value="n/a")])
    assert run.rc != 0
    # Not the last run's "passed": a report that says this run could not judge the figures, and why.
    assert document["passed"] is False and statuses(document) == {"posture_judged": "unmeasured"}
    assert "promises[1] (proof).value is 'n/a', not a number" in document["promises"][0]["detail"]
    assert "n/a" in (site / "out" / "posture.md").read_text()


def test_a_missed_promise_keeps_its_report_and_fails_the_run(site):
    run, document = posture(site, posture_proofs=[dict(PROOF, value=3)])
    assert run.rc != 0 and document["passed"] is False
    assert statuses(document) == {"drill_rto": "met", "proof": "missed"}
    failed = [t for t in run.tasks() if t["hosts"].get("localhost", {}).get("failed")]
    assert failed and "1 of 2 promises not kept: proof (missed)" in failed[-1]["hosts"]["localhost"]["msg"]


def test_a_drill_report_older_than_the_drill_schedule_does_not_pass(site):
    [path] = (site / "drills").rglob("*.json")
    path.write_text(json.dumps(dict(json.loads(path.read_text()), started_epoch=time.time() - 30 * 86400)))
    run, document = posture(site)
    assert run.rc != 0 and statuses(document)["drill_rto"] == "unmeasured"
    [row] = [p for p in document["promises"] if p["name"] == "drill_rto"]
    assert row["detail"].startswith("stale: the newest drill started 30.0 days ago")
