"""Role locksmith.ops.backup, task file s3_lifecycle, against moto S3: rules, idempotence, check mode, opt-out."""

from __future__ import annotations


def _play(moto, bucket, **role_vars):
    destination = {
        "type": "s3",
        "bucket": bucket,
        "prefix": "postgresql",
        "region": "eu-west-1",
        "endpoint_url": moto.endpoint_url,
        "access_key": "testing",
        "secret_key": "testing",
    }
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Configure the S3 lifecycle of the backup destinations",
                    "ansible.builtin.include_role": {"name": "locksmith.ops.backup", "tasks_from": "s3_lifecycle"},
                    "vars": {"backup_destinations": [destination, {"type": "local", "path": "/srv/b"}], **role_vars},
                }
            ],
        }
    ]


def _rules(moto, bucket):
    return moto.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]


def test_lifecycle_rule_transitions_and_expires_once(moto, s3_bucket, ansible):
    check = ansible.run_playbook(_play(moto, s3_bucket), check=True)
    assert check.rc == 0, check.stdout[-3000:] + check.stderr[-2000:]
    # community.aws.s3_lifecycle has no check mode: nothing is predicted, and nothing changes.
    assert check.changed() == 0
    assert "NoSuchLifecycleConfiguration" in _get_error(moto, s3_bucket)

    first = ansible.run_playbook(_play(moto, s3_bucket))
    assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert first.changed() == 1
    (rule,) = _rules(moto, s3_bucket)
    assert rule["ID"] == "locksmith-backup-postgresql"
    assert rule["Status"] == "Enabled"
    assert rule["Filter"].get("Prefix", rule.get("Prefix")) == "postgresql/"
    assert [(t["Days"], t["StorageClass"]) for t in rule["Transitions"]] == [(90, "GLACIER")]
    assert rule["Expiration"]["Days"] == 730
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7

    again = ansible.run_playbook(_play(moto, s3_bucket))
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
    recheck = ansible.run_playbook(_play(moto, s3_bucket), check=True)
    assert recheck.rc == 0 and recheck.changed() == 0, recheck.stdout[-3000:]

    changed = ansible.run_playbook(
        _play(moto, s3_bucket, backup_s3_lifecycle_transition_days=30, backup_s3_lifecycle_expiration_days=365)
    )
    assert changed.rc == 0 and changed.changed() == 1, changed.stdout[-3000:]
    (rule,) = _rules(moto, s3_bucket)
    assert [(t["Days"], t["StorageClass"]) for t in rule["Transitions"]] == [(30, "GLACIER")]
    assert rule["Expiration"]["Days"] == 365


def test_secret_key_never_reaches_the_output(moto, s3_bucket, ansible):
    play = _play(moto, s3_bucket)
    play[0]["tasks"][0]["vars"]["backup_destinations"][0]["secret_key"] = "testing-secret-7f3a"
    run = ansible.run_playbook(play, verbosity=3)
    assert run.rc == 0, run.stdout[-3000:]
    assert "testing-secret-7f3a" not in run.stdout + run.stderr
    data = ansible.run_playbook(play)
    assert data.rc == 0 and "testing-secret-7f3a" not in data.stdout


def _get_error(moto, bucket):
    try:
        moto.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)
    except Exception as err:  # noqa: BLE001 - botocore's ClientError; the code is in its text
        return str(err)
    return ""
