"""posture_promises: measurements from the playbooks become posture_report promises; gaps stay visible."""

import json
import time

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.locksmith.ops.plugins.filter.posture_promises import posture_promises

BACKUPS = {
    "backups": [
        {"complete": True, "valid": True, "destination": "s3:primary"},
        {"complete": True, "valid": False, "destination": "s3:secondary"},
        {"complete": False, "valid": False, "destination": "s3:secondary"},  # in progress: not counted
    ],
    "rpo_seconds": {"app": 420},
    "newest_good": {"app": {"location": "s3://primary/db1/app/x"}},
}


def by_name(promises):
    return {p["name"]: p for p in promises}


def test_every_measurement_becomes_a_promise():
    promises = by_name(
        posture_promises(
            {
                "lynis": {"db1": {"baseline": {"hardening_index": 58}, "after": {"hardening_index": 81}}},
                "backups": {"db1": BACKUPS},
                "drill_reports": {
                    "/r/restore1/app-drill-20270115T070000Z.json": {
                        "database": "app",
                        "verified": True,
                        "rto_seconds": 12.5,
                        "phases": {"restore": 9},
                        "started_epoch": 1_800_000_000 - 3600,
                    }
                },
                "drill_databases": {"restore1": ["app"]},
                "tls": [{"name": "web1:443", "status": "ok", "certificate": {"days_left": 89}, "problems": []}],
            },
            {"rpo_seconds": 3600},
            now=1_800_000_000,
        )
    )
    assert promises["lynis_db1"]["value"] == 81 and promises["lynis_db1"]["baseline"] == 58
    assert promises["backup_success_db1"]["value"] == 50.0
    assert promises["backup_success_db1"]["detail"] == "1 of 2, across 2 destinations"
    assert promises["rpo_db1_app"]["value"] == 420 and promises["rpo_db1_app"]["target"] == 3600
    assert promises["rpo_db1_app"]["evidence"] == "s3://primary/db1/app/x"
    drill = promises["drill_rto_restore1_app"]
    assert drill["value"] == 12.5 and drill["evidence"] == "/r/restore1/app-drill-20270115T070000Z.json"
    assert drill["title"] == "Drill of app on restore1: time to a verified restore (RTO)"
    assert promises["tls_web1:443"]["value"] == 89


def test_unverified_drill_and_failing_tls_have_no_value():
    promises = by_name(
        posture_promises(
            {
                "drill_reports": {"/r/restore1/app-drill-20270115T070000Z.json": {"verified": False, "rto_seconds": 5}},
                "tls": [
                    {
                        "name": "web1:443",
                        "status": "critical",
                        "certificate": {"days_left": 300},
                        "problems": [{"code": "untrusted"}],
                    }
                ],
            }
        )
    )
    assert promises["drill_rto_restore1_app"]["value"] is None
    assert promises["tls_web1:443"]["value"] is None and promises["tls_web1:443"]["detail"] == "untrusted"


def test_a_drill_that_stopped_before_restoring_is_unmeasured_and_says_why():
    # pg_backup_restore's report of a drill that found no backup: no RTO, no phases, the error.
    report = {"database": "app", "verified": False, "passed": False, "rto_seconds": None, "phases": {}}
    report["errors"] = ["no complete, intact backup of 'app' at any destination (none found); take one " + "x" * 200]
    path = "/r/restore1/app-drill-20270115T070000Z.json"
    [promise] = posture_promises({"drill_reports": {path: json.dumps(report)}})
    assert promise["name"] == "drill_rto_restore1_app" and promise["evidence"] == path
    assert promise["value"] is None and promise["title"].startswith("Drill of app on restore1")
    assert promise["detail"].startswith("failed: no complete, intact backup of 'app'") and len(promise["detail"]) == 168


def test_a_host_without_backups_or_lynis_is_unmeasured_not_skipped():
    promises = by_name(posture_promises({"lynis": {"web1": {}}, "backups": {"db1": {"backups": []}}}))
    assert promises["lynis_web1"]["value"] is None
    assert promises["backup_success_db1"]["value"] is None
    assert not [name for name in promises if name.startswith("drill_rto")]  # no drill was asked for


def test_unknown_target_is_named():
    with pytest.raises(AnsibleFilterError, match="unknown targets rpo; known: lynis_index"):
        posture_promises({}, {"rpo": 1})
    with pytest.raises(AnsibleFilterError, match="expected a dict of measurements, got list"):
        posture_promises([])


@pytest.mark.parametrize(
    ("measured", "message"),
    [
        ({"lynis": ["db1"]}, "lynis must be a dict, got list"),
        ({"lynis": {"db1": "81"}}, r"lynis\['db1'\] must be a dict"),
        ({"lynis": {"db1": {"after": 81}}}, r"lynis\['db1'\].after must be a dict"),
        ({"backups": {"db1": {"backups": ["x"]}}}, r"backups\['db1'\].backups must be a list of dicts"),
        ({"backups": {"db1": {"rpo_seconds": ["app"]}}}, r"backups\['db1'\].rpo_seconds must be a dict"),
        ({"drill": {"verified": True}}, "drill and drill_evidence are replaced by drill_reports"),
        ({"drill_reports": ["/r/restore1/app.json"]}, "drill_reports must be a dict"),
        (
            {"drill_reports": {"/r/restore1/app.json": ["passed"]}},
            r"drill_reports\['/r/restore1/app.json'\] must be a dict",
        ),
        ({"drill_reports": {None: "{}"}}, "drill_reports must map report paths to their JSON text"),
        ({"drill_databases": ["app"]}, "drill_databases must be a dict"),
        ({"drill_databases": {"restore1": "app"}}, r"drill_databases\['restore1'\] must be a list of database names"),
        ({"drill_databases": {"restore1": [""]}}, r"drill_databases\['restore1'\] must be a list of database names"),
        ({"drill_reports": {}, "drill_report_dir": 5}, "drill_report_dir must be a path"),
        ({"tls": {"name": "web1:443"}}, "tls must be a list of dicts"),
        ({"tls": [{"name": "web1:443", "problems": ["expired"]}]}, r"tls\[0\].problems must be a list of dicts"),
    ],
)
def test_measurements_of_the_wrong_shape_are_named(measured, message):
    with pytest.raises(AnsibleFilterError, match=message):
        posture_promises(measured)


def test_wrong_targets_are_named():
    with pytest.raises(AnsibleFilterError, match=r"targets \['rpo_seconds'\] must be a dict"):
        posture_promises({}, ["rpo_seconds"])
    with pytest.raises(AnsibleFilterError, match="targets rpo_seconds 'an hour' must be a number"):
        posture_promises({}, {"rpo_seconds": "an hour"})


def test_backups_without_a_destination_or_newest_good_still_count():
    info = {"backups": [{"complete": True, "valid": True}, {"complete": True, "destination": "s3:a"}],
            "rpo_seconds": {"app": 60}, "newest_good": None}  # fmt: skip
    promises = by_name(posture_promises({"backups": {"db1": info}}))
    assert promises["backup_success_db1"]["value"] == 50.0
    assert promises["rpo_db1_app"]["evidence"] == ""


def test_each_destination_must_hold_a_verified_copy_of_the_newest_backup():
    newest = {"id": "b2", "location": "s3://primary/db1/app/b2"}
    info = {
        "backups": [
            {
                "id": "b1",
                "label": "app",
                "complete": True,
                "valid": True,
                "destination": "destinations[1] s3:secondary",
            },
            {"id": "b2", "label": "app", "complete": True, "valid": True, "destination": "destinations[0] s3:primary"},
            # The copy in the second region is damaged: it holds no good copy of b2, only of b1.
            {
                "id": "b2",
                "label": "app",
                "complete": True,
                "valid": False,
                "destination": "destinations[1] s3:secondary",
            },
            {
                "id": "b2",
                "label": "other",
                "complete": True,
                "valid": True,
                "destination": "destinations[1] s3:secondary",
            },
        ],
        "rpo_seconds": {"app": 60},
        "newest_good": {"app": newest},
        "databases": ["app", "billing"],
        "destination_count": 2,
    }
    promises = by_name(posture_promises({"backups": {"db1": info}}))
    copies = promises["backup_copies_db1_app"]
    assert (copies["value"], copies["target"], copies["compare"]) == (1, 2, "ge")
    assert copies["detail"] == "b2: destinations[0] s3:primary"
    # A listed database without any good backup is unmeasured on both rows, not left out.
    assert promises["rpo_db1_billing"]["value"] is None
    assert promises["backup_copies_db1_billing"]["value"] is None
    info["backups"][2]["valid"] = True
    assert by_name(posture_promises({"backups": {"db1": info}}))["backup_copies_db1_app"]["value"] == 2
    # Without the destination count (posture_promises called by hand), no copies row is made up.
    del info["destination_count"]
    assert "backup_copies_db1_app" not in by_name(posture_promises({"backups": {"db1": info}}))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"databases": "app"}, r"backups\['db1'\].databases must be a list"),
        ({"destination_count": "2"}, r"backups\['db1'\].destination_count must be an integer"),
        ({"destination_count": True}, r"backups\['db1'\].destination_count must be an integer"),
    ],
)
def test_wrong_backup_expectations_are_named(extra, message):
    with pytest.raises(AnsibleFilterError, match=message):
        posture_promises({"backups": {"db1": dict(BACKUPS, **extra)}})


def test_a_drill_report_older_than_the_drill_schedule_is_not_this_runs_proof():
    # dr_drill.yml did not run (or stopped before writing) for a month: its last verified report must not pass.
    now = 1_800_000_000.0
    report = {"database": "app", "verified": True, "rto_seconds": 12.5, "phases": {}, "started_epoch": now - 30 * 86400}
    path = "/r/restore1/app.json"

    def drill(report, targets=None):
        [promise] = posture_promises({"drill_reports": {path: report}}, targets, now=now)
        assert promise["name"] == "drill_rto_restore1_app"
        return promise

    stale = drill(report)
    assert stale["value"] is None and stale["detail"].startswith("stale: the newest drill started 30.0 days ago")
    assert drill(dict(report, started_epoch=now - 86400))["value"] == 12.5
    # A report that cannot say when it ran (or says it ran in the future) proves no drill of this period either.
    for started in (None, "yesterday", now + 86400):
        assert drill(dict(report, started_epoch=started))["value"] is None, started
    assert drill(report, {"drill_max_age_seconds": 40 * 86400})["value"] == 12.5


def test_a_host_that_could_not_be_read_says_why():
    # posture.yml records why a host's figures are missing (unreachable, a module error) instead of dropping it.
    promises = by_name(
        posture_promises(
            {
                "lynis": {"web1": {"error": "Failed to connect to the host via ssh"}, "db1": {"after": "{not json"}},
                "backups": {"db1": {"error": "destinations[1]: AccessDenied", "databases": ["app"]}},
            }
        )
    )
    assert promises["lynis_web1"]["value"] is None
    assert promises["lynis_web1"]["detail"] == "not read: Failed to connect to the host via ssh"
    assert promises["lynis_db1"]["value"] is None and promises["lynis_db1"]["detail"].startswith("not read: after")
    assert promises["backup_success_db1"]["value"] is None
    assert promises["backup_success_db1"]["detail"] == "not read: destinations[1]: AccessDenied"
    assert promises["rpo_db1_app"]["value"] is None
    # The summary files as posture.yml reads them (JSON text) count like the parsed dicts.
    text = by_name(posture_promises({"lynis": {"db1": {"after": '{"hardening_index": 81}', "baseline": ""}}}))
    assert text["lynis_db1"]["value"] == 81 and text["lynis_db1"]["baseline"] is None


NOW = 1_800_000_000.0


def drill_report(database, verified=True, started=NOW - 3600, **extra):
    report = {"database": database, "mode": "drill", "verified": verified, "phases": {}, "started_epoch": started}
    report["rto_seconds"] = 12.5 if verified else None
    if not verified:
        report["errors"] = ["row count of public.invoices: 0, manifest 12000"]
    report.update(extra)
    return json.dumps(report)


def stamp(started):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))


def test_each_restore_host_and_database_is_judged_on_its_own_newest_drill():
    # A failed drill of billing, then a passed drill of app: the newest report of the directory passed, billing did not.
    reports = {
        "/r/restore1/billing-drill-%s.json" % stamp(NOW - 7200): drill_report("billing", False, NOW - 7200),
        "/r/restore1/app-drill-%s.json" % stamp(NOW - 3600): drill_report("app", True, NOW - 3600),
        # A second restore host: its own newest drill of app failed, its older one passed.
        "/r/restore2/app-drill-%s.json" % stamp(NOW - 9000): drill_report("app", True, NOW - 9000),
        "/r/restore2/app-drill-%s.json" % stamp(NOW - 600): drill_report("app", False, NOW - 600),
        # On restore1 the newer app drill passed, the older one failed: the newer one stands.
        "/r/restore1/app-drill-%s.json" % stamp(NOW - 86400): drill_report("app", False, NOW - 86400),
    }
    promises = posture_promises({"drill_reports": reports}, now=NOW)
    assert [p["name"] for p in promises] == [
        "drill_rto_restore1_app",
        "drill_rto_restore1_billing",
        "drill_rto_restore2_app",
    ]
    rows = by_name(promises)
    assert rows["drill_rto_restore1_app"]["value"] == 12.5
    assert rows["drill_rto_restore1_app"]["evidence"] == "/r/restore1/app-drill-%s.json" % stamp(NOW - 3600)
    billing = rows["drill_rto_restore1_billing"]
    assert billing["value"] is None and billing["detail"] == "failed: row count of public.invoices: 0, manifest 12000"
    assert billing["evidence"] == "/r/restore1/billing-drill-%s.json" % stamp(NOW - 7200)
    assert billing["title"] == "Drill of billing on restore1: time to a verified restore (RTO)"
    assert rows["drill_rto_restore2_app"]["value"] is None
    assert rows["drill_rto_restore2_app"]["evidence"] == "/r/restore2/app-drill-%s.json" % stamp(NOW - 600)


def test_a_database_the_drill_should_cover_without_a_report_is_unmeasured_not_left_out():
    reports = {"/r/restore1/app-drill-%s.json" % stamp(NOW - 3600): drill_report("app")}
    measured = {
        "drill_reports": reports,
        "drill_databases": {"restore1": ["app", "billing"], "restore2": ["app"], "restore3": []},
        "drill_report_dir": "/r",
    }
    rows = by_name(posture_promises(measured, now=NOW))
    assert list(rows) == [
        "drill_rto_restore1_app",
        "drill_rto_restore1_billing",
        "drill_rto_restore2_app",
        "drill_rto_restore3",
    ]
    assert rows["drill_rto_restore1_app"]["value"] == 12.5
    for name, host, database in (("drill_rto_restore1_billing", "restore1", "billing"),
                                 ("drill_rto_restore2_app", "restore2", "app")):  # fmt: skip
        row = rows[name]
        assert row["value"] is None and row["evidence"] == "/r/%s/" % host
        wanted = "no drill report: dr_drill.yml drills %s on %s, and none was found; run dr_drill.yml"
        assert row["detail"] == wanted % (database, host)
    # A restore host with nothing to drill (dr_drill.yml fails there) keeps a row too.
    assert rows["drill_rto_restore3"]["value"] is None
    assert rows["drill_rto_restore3"]["detail"].startswith(
        "no database to drill: dr_drill.yml drills dr_drill_databases"
    )
    # No report and no restore host: nothing proves a restore, and the report says so.
    [nothing] = posture_promises({"drill_reports": {}, "drill_databases": {}, "drill_report_dir": "/r"})
    assert (nothing["name"], nothing["value"], nothing["evidence"]) == ("drill_rto", None, "/r")
    assert nothing["detail"].startswith("no drill report in /r and no restore host")


def test_a_database_no_longer_drilled_says_so_and_other_restores_are_not_drills():
    reports = {
        "/r/restore1/app-drill-%s.json" % stamp(NOW - 3600): drill_report("app"),
        "/r/restore1/billing-drill-%s.json" % stamp(NOW - 3600): drill_report("billing"),
        # A recover (or tables, PITR) report fetched into the same directory is no drill: not judged, not a row.
        "/r/restore1/app-recover-%s.json" % stamp(NOW - 60): drill_report("app", False, NOW - 60, mode="recover"),
        "/r/restore1/app-pitr-%s.json" % stamp(NOW - 30): "{not json",
        # Damaged, and its name's time is no time: the report without a time is not the newest.
        "/r/restore1/app-drill-20261399T000000Z.json": "{not json",
    }
    rows = by_name(posture_promises({"drill_reports": reports, "drill_databases": {"restore1": ["app"]}}, now=NOW))
    assert list(rows) == ["drill_rto_restore1_app", "drill_rto_restore1_billing"]
    assert rows["drill_rto_restore1_app"]["value"] == 12.5 and rows["drill_rto_restore1_app"]["detail"] == "phases {}"
    assert rows["drill_rto_restore1_billing"]["value"] == 12.5
    assert rows["drill_rto_restore1_billing"]["detail"].endswith(
        "; billing is not drilled on restore1 any more (not in dr_drill_databases or dr_restore_database): remove its"
        " reports if that is meant"
    )


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("{not json", "not read: app-drill-%s.json is not JSON (" % stamp(NOW - 60)),
        ("", "not read: app-drill-%s.json is empty" % stamp(NOW - 60)),
        ("[1]", "not read: app-drill-%s.json is not a JSON object" % stamp(NOW - 60)),
    ],
)
def test_a_damaged_newest_report_is_not_read_and_an_older_one_does_not_stand_for_it(content, detail):
    reports = {
        "/r/restore1/app-drill-%s.json" % stamp(NOW - 3600): drill_report("app"),
        "/r/restore1/app-drill-%s.json" % stamp(NOW - 60): content,  # named after its start, as pg_backup_restore does
    }
    [row] = posture_promises({"drill_reports": reports}, now=NOW)
    assert row["name"] == "drill_rto_restore1_app" and row["value"] is None
    assert row["detail"].startswith(detail) and row["evidence"].endswith(stamp(NOW - 60) + ".json")
