"""playbooks/posture.yml on localhost with crafted evidence: a promise that was not kept never reads as kept."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.harness.ansible import REPO, run_playbook
from tests.harness.process import ManagedProcess, free_port, wait_for_port

PLAYBOOK = REPO / "playbooks" / "posture.yml"
PROOF = {"name": "proof", "title": "A proof measured elsewhere", "value": 0, "target": 0, "compare": "eq"}
PROMETHEUS = shutil.which("prometheus")
NODE_EXPORTER = shutil.which("prometheus-node-exporter")
WATCHED = ["backup", "drill", "tls", "secrets", "audit", "intrusion", "hardening"]
# A site with no Prometheus and nothing that publishes: every Watched row is kept, with nothing to watch.
NOTHING_WATCHED = {"watched_%s" % area: "met" for area in WATCHED}
# A database host's destinations (posture.yml lists its backups there; the host is never reached in these tests).
DESTINATIONS = """backup_destinations='[{"type": "local", "path": "/var/backups/postgresql"}]'"""


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


def statuses(document, watched=False):
    """Each row's status; the Watched rows only when asked."""
    return {p["name"]: p["status"] for p in document["promises"] if watched or not p["name"].startswith("watched_")}


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
    lynis = row(document, "lynis_gone1")
    assert lynis["detail"].startswith("not read: ") and "port 1" in lynis["detail"]
    # Read from the inventory, not the host: gone1's hardening series are expected, and with no Prometheus to ask
    # their rows are not measured; nothing else publishes, so the other areas have nothing to watch.
    assert statuses(document, watched=True) == {
        **statuses(document),
        **NOTHING_WATCHED,
        "watched_hardening": "unmeasured",
        "watched_intrusion": "unmeasured",
    }
    hardening = row(document, "watched_hardening")
    assert hardening["target"] == 5  # os, ssh, firewall, web (gone1 is a web host) and intrusion_detection
    assert hardening["detail"] == (
        "not measured: no Prometheus to ask: posture_prometheus_url is not set and the group monitoring has no host"
    )
    assert row(document, "watched_secrets")["detail"].startswith("nothing to watch: no secrets host")


def test_a_backup_host_on_the_role_s_default_destinations_keeps_its_row(site):
    # No backup_destinations in the inventory: the backup role writes to its default local directory. posture.yml
    # used to fail that host on the undefined variable, and with no other backup host the run ended unreported.
    inventory = site / "inventory.ini"
    inventory.write_text(
        inventory.read_text() + "db1 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh "
        "ansible_ssh_common_args='-o ConnectTimeout=2' backup_databases='[\"app\"]'\n"
    )
    run, document = posture(site)
    assert document is not None, run.stdout[-3000:]
    assert run.rc != 0 and document["passed"] is False
    rows = [p for p in document["promises"] if p["name"].startswith("backup") and "db1" in p["name"]]
    assert rows and all(p["status"] != "met" for p in rows), rows
    assert any(p["status"] == "unmeasured" and "port 1" in p["detail"] for p in rows), rows


def test_a_host_that_failed_before_its_settings_were_noted_leaves_its_watched_rows_not_measured(site):
    # db2's backup databases do not resolve: it fails in the backup play, so no later play notes its audit settings.
    # Its audit row used to count only db1, as if db2 audited nothing.
    inventory = site / "inventory.ini"
    inventory.write_text(
        inventory.read_text() + "db1 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh "
        "ansible_ssh_common_args='-o ConnectTimeout=2' " + DESTINATIONS + "\n"
        "db2 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh backup_databases='{{ no_such_var }}' "
        'audit_databases=\'[{"database": "app"}]\'\n'
    )
    run, document = posture(site)
    assert document is not None, run.stdout[-3000:]
    audit = row(document, "watched_audit")
    assert audit["status"] == "unmeasured", audit
    assert audit["detail"].startswith("not measured: settings not read on db2 (the host failed earlier"), audit


def test_a_figure_that_cannot_be_judged_replaces_the_last_report(site):
    run, document = posture(site)
    assert run.rc == 0 and document["passed"] is True, run.stdout[-3000:]
    run, document = posture(site, posture_proofs=[dict(PROOF, value="n/a")])
    assert run.rc != 0
    # Not the last run's "passed": a report that says this run could not judge the figures, and why.
    assert document["passed"] is False and statuses(document) == {"posture_judged": "unmeasured"}
    assert "promises[8] (proof).value is 'n/a', not a number" in document["promises"][0]["detail"]
    assert "n/a" in (site / "out" / "posture.md").read_text()


def test_a_missed_promise_keeps_its_report_and_fails_the_run(site):
    run, document = posture(site, posture_proofs=[dict(PROOF, value=3)])
    assert run.rc != 0 and document["passed"] is False
    assert statuses(document, watched=True) == {"drill_rto_restore1_app": "met", "proof": "missed", **NOTHING_WATCHED}
    failed = [t for t in run.tasks() if t["hosts"].get("localhost", {}).get("failed")]
    assert failed and "1 of 9 promises not kept: proof (missed)" in failed[-1]["hosts"]["localhost"]["msg"]


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
    assert "2 of 11 promises not kept" in failure["msg"], failure["msg"]
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


def test_an_unreachable_prometheus_leaves_the_watched_rows_not_measured_and_the_report_written(site):
    # db1 backs up two databases (read from the inventory; the host itself is never reached).
    inventory = site / "inventory.ini"
    inventory.write_text(
        inventory.read_text() + "db1 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh "
        "ansible_ssh_common_args='-o ConnectTimeout=2' backup_databases='[\"app\"]' " + DESTINATIONS + "\n"
    )
    url = "http://127.0.0.1:%d" % free_port()  # nothing listens there
    run, document = posture(site, posture_prometheus_url=url)
    assert document is not None and run.rc != 0, run.stdout[-3000:]
    backup = row(document, "watched_backup")
    assert (backup["status"], backup["target"], backup["evidence"]) == ("unmeasured", 1, url + "/api/v1/query")
    assert backup["detail"].startswith("not measured: no answer from Prometheus at %s (" % url)
    assert "Connection refused" in backup["detail"]
    assert row(document, "watched_secrets")["status"] == "met"  # nothing to watch there, answer or not

    # Unset, the URL comes from the first monitoring host; one that listens on loopback on another host is not asked
    # (from the controller that address is the controller's own).
    inventory.write_text(inventory.read_text() + "[monitoring]\nmon1 ansible_host=10.0.30.11\n")
    run, document = posture(site)
    backup = row(document, "watched_backup")
    assert (backup["status"], backup["evidence"]) == ("unmeasured", ""), backup
    assert backup["detail"] == (
        "not measured: no Prometheus to ask: posture_prometheus_url is not set, and the Prometheus of mon1 listens on"
        " 127.0.0.1 only (monitoring_server_listen_address)"
    )


@pytest.fixture
def prometheus(tmp_path):
    """Debian's Prometheus scraping a node_exporter that serves tmp_path/textfile, its target labelled host=db1 as
    locksmith.ops.prometheus_scrape_configs labels it; yields (Prometheus' port, textfile directory)."""
    if None in (PROMETHEUS, NODE_EXPORTER):
        pytest.skip("Debian prometheus and prometheus-node-exporter needed")
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    exporter_port, prometheus_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "node",
                        "static_configs": [{"targets": ["127.0.0.1:%d" % exporter_port], "labels": {"host": "db1"}}],
                    }
                ],
            }
        )
    )
    exporter_argv = [NODE_EXPORTER, "--collector.disable-defaults", "--collector.textfile"]
    exporter_argv += [f"--collector.textfile.directory={textfiles}", f"--web.listen-address=127.0.0.1:{exporter_port}"]
    exporter = ManagedProcess(exporter_argv, log=tmp_path / "node_exporter.log").start()
    server_argv = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
    server_argv += [f"--web.listen-address=127.0.0.1:{prometheus_port}"]
    server = ManagedProcess(server_argv, log=tmp_path / "prometheus.log").start()
    try:
        wait_for_port("127.0.0.1", exporter_port, timeout=30, proc=exporter.proc, log=exporter.log)
        wait_for_port("127.0.0.1", prometheus_port, timeout=60, proc=server.proc, log=server.log)
        yield prometheus_port, textfiles
    finally:
        server.stop()
        exporter.stop()


def _scraped(port: int, databases: set, timeout: float = 60) -> None:
    """Wait until Prometheus holds locksmith_backup_rpo_target_seconds of exactly these databases on db1."""
    query = urllib.parse.urlencode({"query": 'locksmith_backup_rpo_target_seconds{host="db1"}'})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=5) as response:
                found = {r["metric"]["database"] for r in json.loads(response.read())["data"]["result"]}
            if found == databases:
                return
        except OSError:
            found = None  # not ready yet (Prometheus answers 503 until its TSDB is)
        assert time.monotonic() < deadline, f"Prometheus has {found}, not {databases}, after {timeout}s"
        time.sleep(0.5)


def _rpo_file(textfiles: Path, databases: list) -> None:
    """locksmith_backup_rpo_target_seconds as pg_backup writes it, one file per database (escaped label values)."""
    for path in textfiles.glob("*.prom"):
        path.unlink()
    for index, database in enumerate(databases):
        value = database.replace("\\", "\\\\").replace('"', '\\"')
        (textfiles / f"locksmith_backup_{index}.prom").write_text(
            f'locksmith_backup_rpo_target_seconds{{database="{value}"}} 93600\n'
        )


def test_the_backup_row_fails_while_a_database_s_series_is_missing_and_passes_once_prometheus_has_it(site, prometheus):
    port, textfiles = prometheus
    url = "http://127.0.0.1:%d" % port
    # A database name that reads as PromQL: it is compared as text, never put into the query.
    hostile = 'billing"} or vector(1) or {__name__=~".+'
    inventory = site / "inventory.ini"
    inventory.write_text(
        inventory.read_text() + "db1 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh "
        "ansible_ssh_common_args='-o ConnectTimeout=2' " + DESTINATIONS + "\n"
    )
    _rpo_file(textfiles, ["app"])
    _scraped(port, {"app"})
    extra = {"posture_prometheus_url": url + "/", "backup_databases": ["app", hostile]}
    run, document = posture(site, **extra)
    assert document is not None and run.rc != 0, run.stdout[-3000:]
    backup = row(document, "watched_backup")
    assert (backup["status"], backup["value"], backup["target"]) == ("missed", 1.0, 2.0), backup
    assert backup["detail"] == (
        'missing in Prometheus (locksmith_backup_rpo_target_seconds): db1 database="billing\\"} or vector(1) or '
        '{__name__=~\\".+"'
    )
    assert backup["evidence"] == url + "/api/v1/query"

    _rpo_file(textfiles, ["app", hostile])
    _scraped(port, {"app", hostile})
    # This time the URL is derived from the monitoring host, as roles/monitoring_server makes Prometheus listen there
    # (the controller itself here, so its loopback address is Prometheus').
    inventory.write_text(
        inventory.read_text()
        + "[monitoring]\nmon1 ansible_connection=local monitoring_server_listen_address=127.0.0.1 "
        "monitoring_server_prometheus_port=%d\n" % port
    )
    del extra["posture_prometheus_url"]
    run, document = posture(site, **extra)
    backup = row(document, "watched_backup")
    assert (backup["status"], backup["value"], backup["target"]) == ("met", 2.0, 2.0), backup
    assert backup["detail"] == "all 2 present (locksmith_backup_rpo_target_seconds)"
    assert backup["evidence"] == url + "/api/v1/query"
    # The rows of the other areas asked the same Prometheus: nothing is expected of them on this site.
    assert {name: status for name, status in statuses(document, watched=True).items() if name.startswith("watched_")} \
        == NOTHING_WATCHED  # fmt: skip
