"""pg_backup's error paths against real servers: a wrong password on a scram-sha-256 server, and S3 refusals.

The servers are of their own: PostgreSQL asks every role but the superuser for a scram-sha-256 password
(tests/harness/postgres_auth.py), and moto enforces IAM policies (tests/harness/moto_auth.py). Each failure must
name the input and the fix, come without a traceback, leave nothing that looks like a backup, and never echo a secret.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.harness.ansible import run_module_inprocess

pytestmark = pytest.mark.postgres

ROLE = "backup_reader"
PASSWORD = "right-Pw-" + uuid.uuid4().hex[:8]
WRONG = "wrong-Pw-" + uuid.uuid4().hex[:8]
DATABASE = "app"


@pytest.fixture(scope="module")
def scram_cluster():
    """A cluster where ROLE logs in over 127.0.0.1 with a scram-sha-256 password only, and reads all of DATABASE."""
    from tests.harness.postgres_auth import PasswordPostgresCluster

    cluster = PasswordPostgresCluster().start()
    cluster.create_database(DATABASE)
    cluster.query(
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 500)", dbname=DATABASE
    )
    cluster.create_login_role(ROLE, PASSWORD, "pg_read_all_data")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def auth_moto():
    """A moto server that checks every request's keys against IAM policies."""
    from tests.harness.moto_auth import AuthMotoServer

    server = AuthMotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def guarded_bucket(auth_moto):
    """A fresh bucket, and the keys of a full-access user to read it back independently."""
    name = f"locksmith-{uuid.uuid4().hex[:12]}"
    admin = auth_moto.user(["s3:*"])
    auth_moto.client_as(admin).create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return name, admin


def login(cluster, password, **extra):
    args = {"login_host": cluster.host, "login_port": cluster.port, "login_user": ROLE, "ssl_mode": "disable"}
    args.update(connect_timeout=3, min_interval_seconds=0, database=DATABASE)
    if password is not None:
        args["login_password"] = password
    args.update(extra)
    return args


def s3(server, bucket, keys, **extra):
    return dict(
        type="s3", bucket=bucket, prefix="pg", region="eu-west-1", endpoint_url=server.endpoint_url, **keys, **extra
    )


def no_traceback(result):
    text = json.dumps(result)
    assert "Traceback" not in text and "MODULE FAILURE" not in text, text


def objects(server, keys, bucket):
    client = server.client_as(keys)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [o["Key"] for o in listed], uploads


# ---- bad credentials -----------------------------------------------------------------------------
def test_right_password_backs_up_so_the_failures_below_are_about_the_password(scram_cluster, tmp_path):
    result = run_module_inprocess(
        "pg_backup", login(scram_cluster, PASSWORD, destinations=[{"type": "local", "path": str(tmp_path)}])
    )
    assert result["changed"] and not result.get("failed"), result
    assert list(tmp_path.rglob("manifest.json"))
    assert PASSWORD not in json.dumps(result)


@pytest.mark.parametrize("password", [WRONG, None], ids=["wrong-password", "no-password"])
def test_bad_password_names_the_login_options_and_leaves_nothing(scram_cluster, tmp_path, password):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    dest = tmp_path / "backups"
    dest.mkdir()
    args = login(scram_cluster, password, destinations=[{"type": "local", "path": str(dest)}], metrics_dir=str(metrics))
    for check in (True, False):
        result = run_module_inprocess("pg_backup", args, check=check)
        assert result.get("failed") and not result.get("changed"), result
        msg = result["msg"]
        assert f"{scram_cluster.host}:{scram_cluster.port}/{DATABASE} as {ROLE}" in msg, msg
        # The server's own reason for this case, not either of the two.
        assert ("password authentication failed" if password else "no password supplied") in msg, msg
        assert "check login_user and login_password" in msg, msg
        no_traceback(result)
        assert WRONG not in json.dumps(result) and PASSWORD not in json.dumps(result)
    assert list(dest.rglob("*")) == [], list(dest.rglob("*"))
    # The failed attempt is counted for the stale-backup alert, and the file holds no secret either.
    prom = (metrics / f"locksmith_backup_{DATABASE}.prom").read_text()
    assert f'locksmith_backup_last_status{{database="{DATABASE}"}} 0' in prom, prom
    assert WRONG not in prom


def test_bad_password_through_ansible_playbook_is_masked_even_at_vvv(ansible, scram_cluster, tmp_path):
    args = login(scram_cluster, WRONG, destinations=[{"type": "local", "path": str(tmp_path)}])
    result = ansible.run_task("locksmith.ops.pg_backup", args)
    assert result.get("failed") and "check login_user and login_password" in result["msg"], result
    assert "MODULE FAILURE" not in json.dumps(result) and WRONG not in json.dumps(result)
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{"locksmith.ops.pg_backup": args}]}]
    verbose = ansible.run_playbook(play, verbosity=3)
    assert verbose.rc != 0 and "check login_user and login_password" in verbose.stdout, verbose.stdout[-3000:]
    assert WRONG not in verbose.stdout + verbose.stderr
    assert "Traceback" not in verbose.stdout + verbose.stderr
    assert not list(tmp_path.rglob("*"))


# ---- S3 refusals ---------------------------------------------------------------------------------
def test_keys_without_put_object_fail_naming_the_bucket_and_leave_no_object(scram_cluster, auth_moto, guarded_bucket):
    from tests.harness.moto_auth import READ_ACTIONS

    bucket, admin = guarded_bucket
    reader = auth_moto.user(READ_ACTIONS)
    dest = s3(auth_moto, bucket, reader)
    predicted = run_module_inprocess("pg_backup", login(scram_cluster, PASSWORD, destinations=[dest]), check=True)
    # Check mode only reads (HEAD bucket, list): it cannot see a missing s3:PutObject, and says it would back up.
    assert predicted["changed"] and not predicted.get("failed"), predicted
    result = run_module_inprocess("pg_backup", login(scram_cluster, PASSWORD, destinations=[dest]))
    assert result.get("failed") and not result.get("changed"), result
    msg = result["msg"]
    assert "destinations[0]" in msg and f"'{bucket}'" in msg and "AccessDenied" in msg, msg
    assert "allow s3:ListBucket, s3:GetObject, s3:PutObject" in msg, msg
    no_traceback(result)
    assert reader["secret_key"] not in json.dumps(result) and PASSWORD not in json.dumps(result)
    assert objects(auth_moto, admin, bucket) == ([], [])


def test_refused_s3_copy_keeps_the_verified_local_copy(scram_cluster, auth_moto, guarded_bucket, tmp_path):
    from tests.harness.moto_auth import READ_ACTIONS

    bucket, admin = guarded_bucket
    destinations = [{"type": "local", "path": str(tmp_path)}, s3(auth_moto, bucket, auth_moto.user(READ_ACTIONS))]
    result = run_module_inprocess("pg_backup", login(scram_cluster, PASSWORD, destinations=destinations))
    assert result.get("failed") and "verified at 1 of 2 destinations" in result["msg"], result
    assert [c["status"] for c in result["copies"]] == ["verified", "failed"]
    assert len(list(tmp_path.rglob("manifest.json"))) == 1
    assert objects(auth_moto, admin, bucket) == ([], [])


def test_unknown_keys_and_missing_bucket_are_named(scram_cluster, auth_moto, guarded_bucket):
    bucket, admin = guarded_bucket
    unknown = {"access_key": "AKIA" + "X" * 16, "secret_key": "not-a-real-secret-" + uuid.uuid4().hex}
    refused = run_module_inprocess(
        "pg_backup", login(scram_cluster, PASSWORD, destinations=[s3(auth_moto, bucket, unknown)])
    )
    assert refused.get("failed") and "destinations[0]" in refused["msg"] and f"'{bucket}'" in refused["msg"], refused
    assert "check the credentials" in refused["msg"] and unknown["secret_key"] not in json.dumps(refused)
    no_traceback(refused)

    missing = f"locksmith-missing-{uuid.uuid4().hex[:8]}"
    for check in (True, False):
        result = run_module_inprocess(
            "pg_backup", login(scram_cluster, PASSWORD, destinations=[s3(auth_moto, missing, admin)]), check=check
        )
        assert result.get("failed") and f"bucket '{missing}' does not exist" in result["msg"], result
        assert "destinations[0].bucket" in result["msg"]
        no_traceback(result)
        assert admin["secret_key"] not in json.dumps(result)
    names = [b["Name"] for b in auth_moto.client_as(admin).list_buckets()["Buckets"]]
    assert missing not in names and bucket in names
    assert objects(auth_moto, admin, bucket) == ([], [])


# ---- destination and manifest input checks -------------------------------------------------------
MOTO_KEYS = {"access_key": "testing", "secret_key": "testing"}


def trusted_backup(cluster, database, destinations, check=False, **extra):
    """pg_backup as the trusted superuser of the session cluster (tests/conftest.py pg_cluster)."""
    args = {"login_host": cluster.host, "login_port": cluster.port, "ssl_mode": "disable", "connect_timeout": 3}
    args.update(database=database, destinations=destinations, min_interval_seconds=0, **extra)
    return run_module_inprocess("pg_backup", args, check=check)


def backup_info(destinations, **extra):
    return run_module_inprocess("pg_backup_info", dict(destinations=destinations, **extra), check=True)


def small_table(cluster, database):
    cluster.query("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)", dbname=database)


@pytest.mark.parametrize("joint", ["//", "/./"])
def test_local_path_with_a_doubled_slash_or_dot_is_the_same_directory(pg_cluster, pg_database, tmp_path, joint):
    # The root was compared unnormalised: the backup was written, then every read failed with
    # "artefact name 'manifest.json' leaves the backup directory", on this run and every later one.
    small_table(pg_cluster, pg_database)
    (tmp_path / "d").mkdir()
    odd = {"type": "local", "path": f"{tmp_path}{joint}d"}
    plain = {"type": "local", "path": f"{tmp_path}/d"}
    first = trusted_backup(pg_cluster, pg_database, [odd])
    assert first["changed"] and not first.get("failed"), first
    listed = backup_info([plain], database=pg_database)
    assert [(b["id"], b["valid"]) for b in listed["backups"]] == [(first["backup"]["id"], True)], listed
    second = trusted_backup(pg_cluster, pg_database, [odd])
    assert second["changed"] and not second.get("failed"), second
    again = backup_info([odd], database=pg_database)
    assert not again.get("failed"), again
    assert [b["valid"] for b in again["backups"]] == [True, True], again
    assert again["newest_good"][pg_database]["id"] == second["backup"]["id"]
    assert sorted(p.parent.name for p in tmp_path.rglob("manifest.json")) == sorted(
        [first["backup"]["id"], second["backup"]["id"]]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


S3_BAD_OPTIONS = [
    ("bucket", {"bucket": ""}, "bucket '' is empty"),
    ("bucket", {"bucket": "a/b"}, "bucket 'a/b'"),
    ("bucket", {"bucket": "a b"}, "bucket 'a b'"),
    ("bucket", {"bucket": "a+b"}, "bucket"),  # past our lenient check; botocore refuses it
    ("endpoint_url", {"endpoint_url": "not a url"}, "endpoint_url 'not a url'"),
    ("endpoint_url", {"endpoint_url": "ftp://127.0.0.1:1"}, "endpoint_url 'ftp://127.0.0.1:1'"),
    ("region", {"region": "../x"}, "region '../x'"),
]


@pytest.mark.parametrize(("option", "bad", "expected"), S3_BAD_OPTIONS, ids=[repr(b) for _o, b, _e in S3_BAD_OPTIONS])
def test_s3_options_botocore_rejects_fail_naming_the_option(pg_cluster, pg_database, moto, option, bad, expected):
    destination = dict(s3(moto, "locksmith-unused", MOTO_KEYS), **bad)
    results = [
        trusted_backup(pg_cluster, pg_database, [destination], check=True),
        backup_info([destination]),
    ]
    for result in results:
        assert result.get("failed") and not result.get("changed"), result
        msg = result["msg"]
        assert msg.startswith("destinations[0] s3://") and option in msg and expected in msg, msg
        assert "exception" not in result, result
        no_traceback(result)
        assert MOTO_KEYS["secret_key"] not in json.dumps(result)


MANIFEST_DAMAGE = {
    "artefact-without-name": lambda m: m["artefacts"][0].pop("name"),
    "artefacts-not-a-list": lambda m: m.update(artefacts=5),
    "size-not-a-number": lambda m: m["artefacts"][0].update(size_bytes="x"),
    "ended-epoch-out-of-range": lambda m: m.update(ended_epoch=1e20),
    "ended-epoch-nan": lambda m: m.update(ended_epoch=float("nan")),
}


def test_malformed_manifest_is_listed_as_not_valid_and_the_others_still_count(pg_cluster, pg_database, tmp_path):
    small_table(pg_cluster, pg_database)
    dest = {"type": "local", "path": str(tmp_path)}
    older = trusted_backup(pg_cluster, pg_database, [dest])["backup"]["id"]
    newer = trusted_backup(pg_cluster, pg_database, [dest])["backup"]["id"]
    path = tmp_path / pg_database / newer / "manifest.json"
    original = path.read_text()
    for name, damage in MANIFEST_DAMAGE.items():
        manifest = json.loads(original)
        damage(manifest)
        path.write_text(json.dumps(manifest))
        listed = backup_info([dest])
        assert not listed.get("failed"), (name, listed)
        no_traceback(listed)
        by_id = {b["id"]: b for b in listed["backups"]}
        assert by_id[older]["valid"] and not by_id[newer]["valid"], (name, by_id)
        assert "manifest.json is malformed" in by_id[newer]["errors"][0], (name, by_id[newer])
        # The damaged (newer) backup does not count, so the older good one is the newest good.
        assert listed["newest_good"][pg_database]["id"] == older, (name, listed["newest_good"])

        verified = trusted_backup(pg_cluster, pg_database, [dest], state="verified", backup_id=newer)
        assert verified.get("failed") and "manifest.json is malformed" in verified["msg"], (name, verified)
        assert "exception" not in verified
        no_traceback(verified)
        newest = trusted_backup(pg_cluster, pg_database, [dest], state="verified")
        assert not newest.get("failed") and newest["backup"]["id"] == older, (name, newest)
    path.write_text(original)
    assert [b["valid"] for b in backup_info([dest])["backups"]] == [True, True]


def test_info_skips_lost_and_found_with_a_warning(pg_cluster, pg_database, tmp_path):
    small_table(pg_cluster, pg_database)
    (tmp_path / "lost+found").mkdir()
    dest = {"type": "local", "path": str(tmp_path)}
    made = trusted_backup(pg_cluster, pg_database, [dest])
    assert made["changed"] and not made.get("failed"), made
    listed = backup_info([dest])
    assert not listed.get("failed"), listed
    assert [(b["label"], b["valid"]) for b in listed["backups"]] == [(pg_database, True)]
    assert listed["newest_good"][pg_database]["id"] == made["backup"]["id"]
    warnings = [str(w) for w in listed.get("warnings", [])]
    assert len(warnings) == 1 and "destinations[0]" in warnings[0] and "'lost+found'" in warnings[0], warnings
    assert (tmp_path / "lost+found").is_dir()
    # Asked for one database, nothing else is listed, so there is nothing to warn about.
    assert not backup_info([dest], database=pg_database).get("warnings")


def test_s3_info_skips_prefixes_that_are_not_labels(pg_cluster, pg_database, moto, s3_bucket):
    small_table(pg_cluster, pg_database)
    moto.client("s3").put_object(Bucket=s3_bucket, Key="pg/other tool/readme.txt", Body=b"not ours")
    dest = s3(moto, s3_bucket, MOTO_KEYS)
    made = trusted_backup(pg_cluster, pg_database, [dest])
    assert made["changed"] and not made.get("failed"), made
    listed = backup_info([dest])
    assert not listed.get("failed"), listed
    assert [(b["label"], b["valid"]) for b in listed["backups"]] == [(pg_database, True)]
    warnings = [str(w) for w in listed.get("warnings", [])]
    assert len(warnings) == 1 and "'other tool'" in warnings[0], warnings


def test_refused_retention_delete_keeps_the_verified_backup_in_the_result_and_metrics(
    scram_cluster, auth_moto, guarded_bucket, tmp_path
):
    # Keys that may write but not delete (a common least-privilege policy): the new backup is verified, only
    # retention fails. The run fails naming that, but reports the backup, and the metrics count the copy.
    from tests.harness.moto_auth import READ_ACTIONS

    bucket, admin = guarded_bucket
    writer = auth_moto.user([*READ_ACTIONS, "s3:PutObject", "s3:AbortMultipartUpload"])
    dest = s3(auth_moto, bucket, writer, retention={"keep_last": 1})
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    args = login(scram_cluster, PASSWORD, destinations=[dest], metrics_dir=str(metrics))
    first = run_module_inprocess("pg_backup", args)
    assert first["changed"] and not first.get("failed"), first
    second = run_module_inprocess("pg_backup", args)
    no_traceback(second)
    assert second.get("failed"), second
    assert "retention" in second["msg"] and "s3:DeleteObject" in second["msg"], second["msg"]
    assert second["backup"]["id"] != first["backup"]["id"], second
    assert [c["status"] for c in second["copies"]] == ["verified"], second
    assert writer["secret_key"] not in json.dumps(second)
    prom = (metrics / f"locksmith_backup_{DATABASE}.prom").read_text()
    at = f'{{database="{DATABASE}",destination="s3://{bucket}/pg/"}}'
    success = float(prom.split(f"locksmith_backup_last_success_timestamp_seconds{at} ")[1].split()[0])
    assert abs(success - second["backup"]["ended_epoch"]) < 5, prom
    assert f'locksmith_backup_last_status{{database="{DATABASE}"}} 0' in prom, prom
    # Both backups are still there and complete.
    keys = objects(auth_moto, admin, bucket)[0]
    assert len([k for k in keys if k.endswith("/manifest.json")]) == 2, keys


def test_manifest_that_fails_its_read_back_is_removed_with_the_artefacts(scram_cluster, auth_moto, guarded_bucket):
    # The manifest went in but could not be read back (here HEAD of manifests is denied; in life a timeout at the
    # end): the artefacts are deleted as the copy is not counted, so the manifest must go too, or a backup without
    # its files looks complete (pg_backup then reports it as recent and retention counts it as good).
    import uuid as uuid_module

    from tests.harness.moto_auth import READ_ACTIONS

    bucket, admin = guarded_bucket
    name = "locksmith-%s" % uuid_module.uuid4().hex[:8]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": [*READ_ACTIONS, "s3:PutObject", "s3:DeleteObject"], "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::%s/*/manifest.json" % bucket},
        ],
    }
    with auth_moto.unauthenticated():
        iam = auth_moto.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="locksmith-test", PolicyDocument=json.dumps(policy))
        created = iam.create_access_key(UserName=name)["AccessKey"]
    keys = {"access_key": created["AccessKeyId"], "secret_key": created["SecretAccessKey"]}
    args = login(scram_cluster, PASSWORD, destinations=[s3(auth_moto, bucket, keys)])
    result = run_module_inprocess("pg_backup", args)
    assert result.get("failed") and "manifest.json" in result["msg"], result
    no_traceback(result)
    assert objects(auth_moto, admin, bucket) == ([], [])
