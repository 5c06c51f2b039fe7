"""playbooks/posture.yml on localhost with crafted evidence: a promise that was not kept never reads as kept."""

from __future__ import annotations

import json
import os
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


def row(document, name):
    [found] = [p for p in document["promises"] if p["name"] == name]
    return found


def drill(site: Path, host: str, database: str, verified: bool, age: float) -> Path:
    """A drill report as dr_drill.yml fetches it: <dir>/<host>/<database>-drill-<UTC start>.json, fetched then."""
    started = time.time() - age
    report = {"database": database, "mode": "drill", "verified": verified, "phases": {}, "started_epoch": started}
    report.update({"rto_seconds": 9.5} if verified else {"rto_seconds": None, "errors": [f"{database}: row count 0"]})
    path = (
        site
        / "drills"
        / host
        / ("%s-drill-%s.json" % (database, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))))
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    os.utime(path, (started, started))
    return path


def test_a_host_that_cannot_be_reached_keeps_its_row_and_the_report_is_still_written(site):
    run, document = posture(site, harden_hosts="web")
    # Every host to measure unreachable: the play used to stop there, leaving no report (or the last run's).
    assert document is not None, run.stdout[-3000:]
    assert run.rc != 0 and document["passed"] is False
    assert statuses(document) == {"lynis_gone1": "unmeasured", "drill_rto_restore1_app": "met", "proof": "met"}
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
    assert statuses(document) == {"drill_rto_restore1_app": "met", "proof": "missed"}
    failed = [t for t in run.tasks() if t["hosts"].get("localhost", {}).get("failed")]
    assert failed and "1 of 2 promises not kept: proof (missed)" in failed[-1]["hosts"]["localhost"]["msg"]


def test_a_drill_report_older_than_the_drill_schedule_does_not_pass(site):
    [path] = (site / "drills").rglob("*.json")
    path.write_text(json.dumps(dict(json.loads(path.read_text()), started_epoch=time.time() - 30 * 86400)))
    run, document = posture(site)
    assert run.rc != 0 and statuses(document)["drill_rto_restore1_app"] == "unmeasured"
    [row] = [p for p in document["promises"] if p["name"] == "drill_rto_restore1_app"]
    assert row["detail"].startswith("stale: the newest drill started 30.0 days ago")


def test_a_failed_drill_is_not_hidden_by_a_newer_drill_of_another_database_or_host(site):
    # Before, only the newest report of the whole directory was read: this failed drill of billing, followed by the
    # fixture's passing drill of app, reported the drill as kept; so did a failed drill on a second restore host.
    billing = drill(site, "restore1", "billing", verified=False, age=3600)
    older = drill(site, "restore2", "app", verified=True, age=7200)
    failed = drill(site, "restore2", "app", verified=False, age=1800)
    # The fixture's report of app on restore1 is the newest file of the directory.
    [app] = (site / "drills" / "restore1").glob("app-*.json")
    run, document = posture(site)
    assert run.rc != 0 and document["passed"] is False, run.stdout[-3000:]
    assert statuses(document) == {
        "drill_rto_restore1_app": "met",
        "drill_rto_restore1_billing": "unmeasured",
        "drill_rto_restore2_app": "unmeasured",
        "proof": "met",
    }
    assert row(document, "drill_rto_restore1_app")["evidence"] == str(app)
    assert row(document, "drill_rto_restore1_billing")["evidence"] == str(billing)
    assert row(document, "drill_rto_restore1_billing")["detail"] == "failed: billing: row count 0"
    # restore2's newest drill of app failed: its older passing one does not stand for it.
    assert row(document, "drill_rto_restore2_app")["evidence"] == str(failed) != str(older)
    failure = [t for t in run.tasks() if t["hosts"].get("localhost", {}).get("failed")][-1]["hosts"]["localhost"]
    assert "2 of 4 promises not kept" in failure["msg"], failure["msg"]
    assert "Drill of billing on restore1" in (site / "out" / "posture.md").read_text()
    assert "Drill of billing on restore1" in (site / "out" / "posture.html").read_text()


def test_a_database_the_restore_hosts_drill_without_a_report_keeps_its_row(site):
    # The restore hosts are read from the inventory, never reached: restore1 listens nowhere.
    inventory = site / "inventory.ini"
    inventory.write_text(
        inventory.read_text() + "[dr_restore_hosts]\n"
        'restore1 dr_drill_databases=\'["app", "billing"]\'\n'
        "restore2 dr_restore_database=app\n"
        "restore3\n"
        "[dr_restore_hosts:vars]\n"
        "ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh\n"
    )
    run, document = posture(site)
    assert run.rc != 0 and document is not None, run.stdout[-3000:]
    assert statuses(document) == {
        "drill_rto_restore1_app": "met",
        "drill_rto_restore1_billing": "unmeasured",
        "drill_rto_restore2_app": "unmeasured",
        "drill_rto_restore3": "unmeasured",
        "proof": "met",
    }
    billing = row(document, "drill_rto_restore1_billing")
    assert billing["detail"].startswith("no drill report: dr_drill.yml drills billing on restore1")
    assert billing["evidence"] == str(site / "drills" / "restore1") + "/"
    assert row(document, "drill_rto_restore3")["detail"].startswith("no database to drill")
    assert run.result("Write the posture report")["changed"] is True

    # The same figures again: the report is not rewritten.
    run, again = posture(site)
    assert run.rc != 0 and run.result("Write the posture report")["changed"] is False
    assert again == document
