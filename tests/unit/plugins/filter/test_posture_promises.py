"""posture_promises: measurements from the playbooks become posture_report promises; gaps stay visible."""

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
                "drill": {
                    "database": "app",
                    "verified": True,
                    "rto_seconds": 12.5,
                    "phases": {"restore": 9},
                    "started_epoch": 1_800_000_000 - 3600,
                },
                "drill_evidence": "/r/drill.json",
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
    assert promises["drill_rto"]["value"] == 12.5 and promises["drill_rto"]["evidence"] == "/r/drill.json"
    assert promises["tls_web1:443"]["value"] == 89


def test_unverified_drill_and_failing_tls_have_no_value():
    promises = by_name(
        posture_promises(
            {
                "drill": {"verified": False, "rto_seconds": 5},
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
    assert promises["drill_rto"]["value"] is None
    assert promises["tls_web1:443"]["value"] is None and promises["tls_web1:443"]["detail"] == "untrusted"


def test_a_drill_that_stopped_before_restoring_is_unmeasured_and_says_why():
    # pg_backup_restore's report of a drill that found no backup: no RTO, no phases, the error.
    report = {"database": "app", "verified": False, "passed": False, "rto_seconds": None, "phases": {}}
    report["errors"] = ["no complete, intact backup of 'app' at any destination (none found); take one " + "x" * 200]
    promise = by_name(posture_promises({"drill": report, "drill_evidence": "/r/app-drill.json"}))["drill_rto"]
    assert promise["value"] is None and promise["title"].startswith("Drill of app")
    assert promise["detail"].startswith("failed: no complete, intact backup of 'app'") and len(promise["detail"]) == 168


def test_a_host_without_backups_or_lynis_is_unmeasured_not_skipped():
    promises = by_name(posture_promises({"lynis": {"web1": {}}, "backups": {"db1": {"backups": []}}}))
    assert promises["lynis_web1"]["value"] is None
    assert promises["backup_success_db1"]["value"] is None
    assert "drill_rto" not in promises  # no drill was asked for


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
        ({"drill": "failed"}, "drill must be a dict"),
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
    stale = by_name(posture_promises({"drill": report, "drill_evidence": "/r/app.json"}, now=now))["drill_rto"]
    assert stale["value"] is None and stale["detail"].startswith("stale: the newest drill started 30.0 days ago")
    fresh = dict(report, started_epoch=now - 86400)
    assert by_name(posture_promises({"drill": fresh}, now=now))["drill_rto"]["value"] == 12.5
    # A report that cannot say when it ran (or says it ran in the future) proves no drill of this period either.
    for started in (None, "yesterday", now + 86400):
        undated = dict(report, started_epoch=started)
        assert by_name(posture_promises({"drill": undated}, now=now))["drill_rto"]["value"] is None, started
    longer = posture_promises({"drill": report}, {"drill_max_age_seconds": 40 * 86400}, now=now)
    assert by_name(longer)["drill_rto"]["value"] == 12.5


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
