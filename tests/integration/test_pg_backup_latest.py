"""The locksmith.ops.pg_backup_latest lookup, through ansible-playbook, on backups pg_backup made in PostgreSQL 15
to a local directory and a moto S3 bucket."""

from __future__ import annotations

import uuid

import pytest

from tests.integration import test_pg_backup as backups

pytestmark = pytest.mark.postgres

LOOKUP = "locksmith.ops.pg_backup_latest"


def lookup_play(ansible, tasks):
    """Each task is (name, expression); it sets the fact `out` to the expression on localhost. Errors are kept."""
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": name, "ansible.builtin.set_fact": {"out": "{{ %s }}" % expression}, "ignore_errors": True}
            for name, expression in tasks
        ],
    }
    return ansible.run_playbook([play])


def failure(run, name):
    result = run.result(name)
    assert result.get("failed") is True, result
    return result["msg"]


@pytest.fixture
def seeded(pg_cluster, pg_database):
    backups.seed(pg_cluster, pg_database, rows=500)
    return pg_database


def test_newest_good_backup_its_age_and_copies(ansible, pg_cluster, seeded, moto, s3_bucket, tmp_path):
    destinations = [backups.local(tmp_path), backups.s3(moto, s3_bucket)]
    first = backups.backup(pg_cluster, seeded, destinations)
    second = backups.backup(pg_cluster, seeded, destinations)
    assert first["changed"] and second["changed"] and first["backup"]["id"] != second["backup"]["id"]
    listing = backups.info(destinations, database=seeded)
    expression = "lookup('%s', '%s', destinations=%r)" % (LOOKUP, seeded, destinations)
    run = lookup_play(
        ansible,
        [("latest", expression), ("both", f"query('{LOOKUP}', '{seeded}', '{seeded}', destinations={destinations!r})")],
    )
    assert run.rc == 0, run.stderr
    latest = run.result("latest")["ansible_facts"]["out"]
    newest = listing["newest_good"][seeded]
    assert latest["id"] == second["backup"]["id"] == newest["id"]
    assert latest["database"] == seeded and latest["ended_at"] == newest["ended_at"]
    assert 0 <= latest["age_seconds"] < 120
    assert latest["destination"].startswith("destinations[0] ") and latest["checksums_verified"] is True
    assert [c.split(" ")[0] for c in latest["copies"]] == ["destinations[0]", "destinations[1]"]
    assert latest["location"] == newest["location"] and str(tmp_path / seeded / latest["id"]) in latest["location"]
    assert [item["id"] for item in run.result("both")["ansible_facts"]["out"]] == [latest["id"]] * 2


def test_a_damaged_copy_is_not_counted_and_an_older_good_backup_is_returned(
    ansible, pg_cluster, seeded, moto, s3_bucket, tmp_path
):
    destinations = [backups.local(tmp_path), backups.s3(moto, s3_bucket)]
    older = backups.backup(pg_cluster, seeded, destinations)["backup"]["id"]
    newer = backups.backup(pg_cluster, seeded, destinations)["backup"]["id"]
    # One flipped byte in the local copy of the newer backup: same size, so only its SHA-256 can tell.
    dump = tmp_path / seeded / newer / f"{seeded}.dump.zst"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    only_local = [destinations[0]]
    run = lookup_play(
        ansible,
        [
            ("both", f"lookup('{LOOKUP}', '{seeded}', destinations={destinations!r})"),
            ("local", f"lookup('{LOOKUP}', '{seeded}', destinations={only_local!r})"),
            (
                "local unverified",
                f"lookup('{LOOKUP}', '{seeded}', destinations={only_local!r}, verify_checksums=false)",
            ),
        ],
    )
    both = run.result("both")["ansible_facts"]["out"]
    assert both["id"] == newer and [c.split(" ")[0] for c in both["copies"]] == ["destinations[1]"]
    assert both["destination"].startswith("destinations[1] s3://")
    assert run.result("local")["ansible_facts"]["out"]["id"] == older
    # Without re-reading, size and manifest are all a local copy can be judged by: the damage goes unseen.
    unverified = run.result("local unverified")["ansible_facts"]["out"]
    assert unverified["id"] == newer and unverified["checksums_verified"] is False


def test_errors_name_the_input_and_never_the_credentials(ansible, pg_cluster, seeded, moto, s3_bucket, tmp_path):
    secret = f"never-shown-{uuid.uuid4().hex}"
    backups.backup(pg_cluster, seeded, [backups.local(tmp_path)])
    good = [backups.local(tmp_path)]
    missing_bucket = [backups.s3(moto, "no-such-bucket-here", secret_key=secret)]
    wrong_type = [{"type": "ftp", "path": str(tmp_path), "secret_key": secret}]
    no_path = [{"type": "local", "secret_key": secret}]
    run = lookup_play(
        ansible,
        [
            ("no backup", f"lookup('{LOOKUP}', 'nobody_here', destinations={good!r})"),
            ("injection", f"lookup('{LOOKUP}', '../../../etc/passwd', destinations={good!r})"),
            ("sql injection", f"lookup('{LOOKUP}', \"users'; DROP TABLE users; --\", destinations={good!r})"),
            ("no bucket", f"lookup('{LOOKUP}', '{seeded}', destinations={missing_bucket!r})"),
            ("wrong type", f"lookup('{LOOKUP}', '{seeded}', destinations={wrong_type!r})"),
            ("no path", f"lookup('{LOOKUP}', '{seeded}', destinations={no_path!r})"),
            (
                "absent dir",
                f"lookup('{LOOKUP}', '{seeded}', destinations=[{{'type': 'local', 'path': '/nonexistent/x'}}])",
            ),
            ("no destinations", f"lookup('{LOOKUP}', '{seeded}')"),
        ],
    )
    assert "no good backup of 'nobody_here' at destinations[0] local:" in failure(run, "no backup")
    assert "run locksmith.ops.pg_backup" in failure(run, "no backup")
    for name in ("injection", "sql injection"):
        assert "is not a plain database name" in failure(run, name)
    assert "bucket 'no-such-bucket-here' does not exist" in failure(run, "no bucket")
    wrong = failure(run, "wrong type")
    assert "type" in wrong and "ftp" in wrong and "local, s3" in wrong
    assert "path" in failure(run, "no path")
    assert "destinations[0]" in failure(run, "absent dir") and "does not exist" in failure(run, "absent dir")
    assert "destinations" in failure(run, "no destinations")
    everything = run.stdout + run.stderr
    assert secret not in everything
    assert "Traceback" not in everything
    # Nothing was written anywhere: the local destination holds only the one backup made above.
    assert len(list((tmp_path / seeded).iterdir())) == 1
