"""pg_backup and pg_backup_info against a real PostgreSQL 15 and a moto S3 server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.harness.ansible import run_module_inprocess
from tests.harness.postgres import PG_BIN_DIR

pytestmark = pytest.mark.postgres

KEY_HEX = "5f" * 32
INJECTIONS = ["public'; DROP TABLE users; --", "../../../etc/passwd"]


# ---- helpers ------------------------------------------------------------------------------------
def conn(cluster):
    return {"login_host": cluster.host, "login_port": cluster.port, "ssl_mode": "disable", "connect_timeout": 3}


def local(path, **extra):
    return dict(type="local", path=str(path), **extra)


def s3(moto, bucket, **extra):
    options = dict(type="s3", bucket=bucket, prefix="pg", region="eu-west-1", endpoint_url=moto.endpoint_url)
    options.update(access_key="testing", secret_key="testing")
    options.update(extra)
    return options


def backup(cluster, database, destinations, check=False, diff=False, **extra):
    args = dict(conn(cluster), database=database, destinations=destinations, min_interval_seconds=0)
    args.update(extra)
    return run_module_inprocess("pg_backup", args, check=check, diff=diff)


def info(destinations, **extra):
    return run_module_inprocess("pg_backup_info", dict(destinations=destinations, **extra))


def seed(cluster, database, rows=20000):
    cluster.query(
        "CREATE SCHEMA sales; "
        "CREATE TABLE public.users (id int PRIMARY KEY, name text); "
        "CREATE TABLE sales.orders (id int, user_id int, total numeric); "
        "INSERT INTO public.users SELECT g, 'user ' || g FROM generate_series(1, %(rows)s) g; "
        "INSERT INTO sales.orders SELECT g, g %% 100, g * 1.5 FROM generate_series(1, %(rows)s) g; "
        "ANALYZE",
        {"rows": rows},
        dbname=database,
    )


def fingerprint(cluster, database):
    """Contents of the seeded tables, as an independent client sees them."""
    return cluster.query(
        "SELECT (SELECT md5(string_agg(id || ':' || name, ',' ORDER BY id)) FROM public.users), "
        "(SELECT md5(string_agg(id || ':' || user_id || ':' || total, ',' ORDER BY id)) FROM sales.orders)",
        dbname=database,
    )[0]


def restore_stream(cluster, database, data_source):
    """pg_restore a custom-format stream (bytes iterator, or a shell pipeline) into a new database."""
    cluster.create_database(database)
    argv = [str(PG_BIN_DIR / "pg_restore"), "-h", cluster.host, "-p", str(cluster.port), "-U", "postgres"]
    argv += ["-d", database, "--no-owner", "--exit-on-error"]
    if isinstance(data_source, list):
        pipe(data_source, argv)
        return
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for chunk in data_source:
        proc.stdin.write(chunk)
    proc.stdin.close()
    assert proc.wait() == 0, proc.stderr.read().decode()


def pipe(first, second):
    """`first | second` without a shell; returns second's stdout as text."""
    producer = subprocess.Popen(first, stdout=subprocess.PIPE)
    consumer = subprocess.run(second, stdin=producer.stdout, capture_output=True, check=False)
    producer.stdout.close()
    # pg_restore --list stops after the table of contents, so the producer may die of SIGPIPE.
    assert producer.wait() in (0, -signal.SIGPIPE) and consumer.returncode == 0, consumer.stderr.decode()
    return consumer.stdout.decode()


def valid_backups(destinations, database):
    result = info(destinations, database=database, verify_checksums=True)
    return [b for b in result["backups"] if b["valid"]], result


@pytest.fixture
def seeded(pg_cluster, pg_database):
    seed(pg_cluster, pg_database)
    return pg_database


@pytest.fixture
def scratch_db(pg_cluster):
    names = []

    def make():
        names.append(f"r_{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield make
    for name in names:
        pg_cluster.drop_database(name)


# ---- the contract sequence, through ansible-playbook --------------------------------------------
def test_sequence_through_ansible_playbook(ansible, pg_cluster, seeded, tmp_path):
    args = dict(conn(pg_cluster), database=seeded, destinations=[local(tmp_path, retention={"keep_last": 3})])
    first_check = ansible.run_task("locksmith.ops.pg_backup", args, check=True)
    assert first_check["changed"] is True, first_check
    assert first_check["backup"]["compression"] == {"method": "zstd", "level": 3, "by": "locksmith"}
    assert not list(tmp_path.rglob("manifest.json")), "check mode wrote a backup"

    real = ansible.run_task("locksmith.ops.pg_backup", args, diff=True)
    assert real["changed"] is True, real
    manifest = real["backup"]
    assert manifest["database"] == seeded and manifest["row_estimates"][seeded]["public.users"] == 20000
    assert manifest["wal_lsn_start"] and manifest["server_version"].startswith("15.")
    assert real["diff"]["after"]["newest"][real["copies"][0]["destination"]] == manifest["id"]

    again = ansible.run_task("locksmith.ops.pg_backup", args)
    assert again["changed"] is False and again["backup"]["id"] == manifest["id"]
    assert "younger than min_interval_seconds" in again["reason"]
    second_check = ansible.run_task("locksmith.ops.pg_backup", args, check=True)
    assert second_check["changed"] is False

    # An independent reader: the manifest on disk, the zstd CLI and pg_restore --list.
    folder = tmp_path / seeded / manifest["id"]
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["artefacts"] == manifest["artefacts"]
    listing = pipe(["zstd", "-dc", str(folder / f"{seeded}.dump.zst")], [str(PG_BIN_DIR / "pg_restore"), "--list"])
    assert "TABLE DATA public users" in listing and "TABLE DATA sales orders" in listing
    digest = subprocess.run(
        ["sha256sum", str(folder / (seeded + ".dump.zst"))], capture_output=True, text=True, check=True
    )
    assert digest.stdout.split()[0] == manifest["artefacts"][0]["sha256"]


# ---- round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
def test_round_trip_restores_identical_contents(pg_cluster, seeded, tmp_path, scratch_db, threads):
    result = backup(pg_cluster, seeded, [local(tmp_path)], compression_threads=threads)
    assert result["changed"] is True, result
    dump = tmp_path / seeded / result["backup"]["id"] / f"{seeded}.dump.zst"
    target = scratch_db()
    restore_stream(pg_cluster, target, ["zstd", "-dc", str(dump)])
    assert fingerprint(pg_cluster, target) == fingerprint(pg_cluster, seeded)


def test_encrypted_round_trip_through_s3_never_leaks_the_key(pg_cluster, seeded, moto, s3_bucket, tmp_path, scratch_db):
    from ansible_collections.locksmith.ops.plugins.module_utils import _backup_verify, _crypto_stream, _storage

    key_file = tmp_path / "backup.key"
    key_file.write_text(KEY_HEX)
    key_file.chmod(0o600)
    destinations = [s3(moto, s3_bucket)]
    result = backup(pg_cluster, seeded, destinations, encryption_key_file=str(key_file), compression="gzip:1")
    assert result["changed"] is True, result
    manifest = result["backup"]
    assert manifest["encryption"]["algorithm"] == _crypto_stream.ALGORITHM
    assert KEY_HEX not in json.dumps(result)
    artefact = manifest["artefacts"][0]
    assert artefact["name"] == f"{seeded}.dump.aes"

    body = moto.client("s3").get_object(Bucket=s3_bucket, Key=f"pg/{seeded}/{manifest['id']}/{artefact['name']}")
    stored = body["Body"].read()
    assert stored.startswith(_crypto_stream.MAGIC) and b"PGDMP" not in stored[:4096]

    destination = _storage.build_destinations(destinations, [])[0]
    key = _crypto_stream.load_key(key_file=str(key_file))
    target = scratch_db()
    restore_stream(pg_cluster, target, _backup_verify.plain_chunks(destination, seeded, manifest["id"], artefact, key))
    assert fingerprint(pg_cluster, target) == fingerprint(pg_cluster, seeded)

    verified = backup(pg_cluster, seeded, destinations, state="verified", encryption_key=KEY_HEX)
    assert verified["verification"][0]["restore_list_checked"] is True, verified
    wrong = backup(pg_cluster, seeded, destinations, state="verified", encryption_key="6a" * 32)
    assert wrong["failed"] and "encrypted with key id %s" % manifest["encryption"]["key_id"] in wrong["msg"]
    assert "6a" * 32 not in json.dumps(wrong)


# ---- integrity -----------------------------------------------------------------------------------
def test_flipped_byte_is_detected_locally(pg_cluster, seeded, tmp_path):
    destinations = [local(tmp_path)]
    manifest = backup(pg_cluster, seeded, destinations)["backup"]
    assert backup(pg_cluster, seeded, destinations, state="verified")["verification"][0]["valid"] is True
    dump = tmp_path / seeded / manifest["id"] / manifest["artefacts"][0]["name"]
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))

    failed = backup(pg_cluster, seeded, destinations, state="verified")
    assert failed["failed"] and "corrupt" in failed["msg"] and manifest["id"] in failed["msg"]
    good, listing = valid_backups(destinations, seeded)
    assert good == [] and listing["newest_good"] == {} and "sha256" in listing["backups"][0]["errors"][0]


def test_tampered_s3_object_is_detected_from_its_stored_checksum(pg_cluster, seeded, moto, s3_bucket):
    destinations = [s3(moto, s3_bucket)]
    manifest = backup(pg_cluster, seeded, destinations)["backup"]
    clean = info(destinations, database=seeded)
    assert clean["backups"][0]["valid"] is True and clean["backups"][0]["checksums_verified"] is False
    key = f"pg/{seeded}/{manifest['id']}/{manifest['artefacts'][0]['name']}"
    client = moto.client("s3")
    data = bytearray(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    data[100] ^= 0xFF
    client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(data), ChecksumAlgorithm="SHA256")

    tampered = info(destinations, database=seeded)
    assert tampered["backups"][0]["valid"] is False and "stored checksum" in tampered["backups"][0]["errors"][0]
    assert backup(pg_cluster, seeded, destinations, state="verified")["failed"]

    # Replaced without a checksum (a plain put, as most tools do): every copy pg_backup counted had one, so its
    # absence is the tampering, not a store that keeps none.
    client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(data))
    bare = info(destinations, database=seeded)
    assert bare["backups"][0]["valid"] is False and "no stored checksum" in bare["backups"][0]["errors"][0], bare
    assert backup(pg_cluster, seeded, destinations, state="verified")["failed"]


@pytest.fixture(scope="module")
def big_database(pg_cluster):
    """About 25 MB of incompressible-ish rows, shared by the tests that need a dump that takes a while."""
    name = f"big_{uuid.uuid4().hex[:10]}"
    pg_cluster.create_database(name)
    pg_cluster.query(
        "CREATE TABLE big AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS v "
        "FROM generate_series(1, 300000) g",
        dbname=name,
    )
    yield name
    pg_cluster.drop_database(name)


def test_large_dump_streams_to_s3_as_multipart_with_stored_composite_checksum(
    pg_cluster, big_database, moto, s3_bucket
):
    pg_database = big_database
    result = backup(pg_cluster, pg_database, [s3(moto, s3_bucket)], compression="none")
    artefact = result["backup"]["artefacts"][0]
    assert artefact["size_bytes"] > 16 * 1024 * 1024
    key = f"pg/{pg_database}/{result['backup']['id']}/{artefact['name']}"
    head = moto.client("s3").head_object(Bucket=s3_bucket, Key=key, ChecksumMode="ENABLED", PartNumber=1)
    assert head.get("PartsCount", 0) >= 2
    whole = moto.client("s3").head_object(Bucket=s3_bucket, Key=key, ChecksumMode="ENABLED")
    assert whole["ChecksumSHA256"].split("-")[0] == artefact["s3_checksum_sha256"]


# ---- crashes -------------------------------------------------------------------------------------
_RUNNER = """
import json, sys
sys.path.insert(0, {repo!r})
import tests.conftest  # noqa: F401 - installs the collection loader
from tests.harness.ansible import run_module_inprocess
print(json.dumps(run_module_inprocess("pg_backup", json.loads(sys.argv[1]))))
"""


def start_module(args):
    """pg_backup with ``args`` in a process of its own (to be killed); prints its result as JSON."""
    repo = str(Path(__file__).resolve().parents[2])
    return subprocess.Popen(
        [sys.executable, "-c", _RUNNER.format(repo=repo), json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pg_dump_children(database):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"pg_dump" in cmdline.split(b"\0")[0] and f"PGDATABASE={database}".encode() in environ.split(b"\0"):
            found.append(int(pid))
    return found


def _wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("victim", ["module", "pg_dump"])
def test_killed_backup_leaves_nothing_that_looks_valid(pg_cluster, big_database, moto, s3_bucket, tmp_path, victim):
    pg_database = big_database
    destinations = [local(tmp_path), s3(moto, s3_bucket)]
    args = dict(conn(pg_cluster), database=pg_database, destinations=destinations, compression="gzip:9")
    proc = start_module(args)
    children = _wait_for(lambda: _pg_dump_children(pg_database))
    _wait_for(lambda: any(p.stat().st_size > 0 for p in tmp_path.rglob("*.dump")))
    os.kill(proc.pid if victim == "module" else children[0], signal.SIGKILL)
    out = proc.communicate(timeout=60)[0]
    if victim == "pg_dump":
        result = json.loads(out[out.find("{") :])
        assert result["failed"] and "pg_dump of database" in result["msg"] and "exit -9" in result["msg"]
    _wait_for(lambda: not _pg_dump_children(pg_database), timeout=30)

    assert not list(tmp_path.rglob("manifest.json"))
    listing = info(destinations, database=pg_database)
    assert listing["newest_good"] == {} and all(not b["valid"] for b in listing["backups"])
    objects = moto.client("s3").list_objects_v2(Bucket=s3_bucket).get("Contents", [])
    assert not [o for o in objects if o["Key"].endswith("manifest.json")]
    verified = backup(pg_cluster, pg_database, destinations, state="verified")
    assert verified["failed"] and "no complete backup" in verified["msg"]


# ---- destinations --------------------------------------------------------------------------------
def test_local_and_two_s3_buckets_get_the_same_verified_backup(pg_cluster, seeded, moto, s3_bucket, tmp_path):
    second = f"locksmith-{uuid.uuid4().hex[:12]}"
    moto.client("s3", region="eu-central-1").create_bucket(
        Bucket=second, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    destinations = [local(tmp_path), s3(moto, s3_bucket), s3(moto, second, region="eu-central-1", sse="AES256")]
    result = backup(pg_cluster, seeded, destinations)
    assert [c["status"] for c in result["copies"]] == ["verified"] * 3, result
    manifest_id = result["backup"]["id"]
    local_manifest = json.loads((tmp_path / seeded / manifest_id / "manifest.json").read_text())
    for bucket in (s3_bucket, second):
        obj = moto.client("s3").get_object(Bucket=bucket, Key=f"pg/{seeded}/{manifest_id}/manifest.json")
        assert json.loads(obj["Body"].read()) == local_manifest
    head = moto.client("s3").head_object(Bucket=second, Key=f"pg/{seeded}/{manifest_id}/{seeded}.dump.zst")
    assert head["ServerSideEncryption"] == "AES256"
    listing = info(destinations, database=seeded, verify_checksums=True)
    assert [b["valid"] for b in listing["backups"]] == [True, True, True]
    assert listing["newest_good"][seeded]["id"] == manifest_id and listing["rpo_seconds"][seeded] < 60


def test_full_disk_fails_that_destination_and_keeps_the_others(pg_cluster, seeded, moto, s3_bucket, tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        destinations = [local(mount), s3(moto, s3_bucket)]
        result = backup(pg_cluster, seeded, destinations, compression="none")
        assert result["failed"] and "no space left on device" in result["msg"] and "destinations[0]" in result["msg"]
        assert "verified at 1 of 2 destinations" in result["msg"]
        assert [c["status"] for c in result["copies"]] == ["verified", "failed"]
        assert not list(mount.rglob("*")) or not list(mount.rglob("manifest.json"))
        assert [b["valid"] for b in info([destinations[1]], database=seeded)["backups"]] == [True]
        assert list(mount.iterdir()) in ([], [mount / seeded]) and not list((mount / seeded).glob("*"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_clear_errors(pg_cluster, seeded, moto, tmp_path):
    from tests.harness.process import free_port

    missing_bucket = backup(pg_cluster, seeded, [s3(moto, "no-such-bucket-here")])
    assert missing_bucket["failed"] and "bucket 'no-such-bucket-here' does not exist" in missing_bucket["msg"]
    unreachable = backup(pg_cluster, seeded, [local(tmp_path)], login_port=free_port())
    assert unreachable["failed"] and "check login_host and login_port" in unreachable["msg"]
    bad_user = backup(pg_cluster, seeded, [local(tmp_path)], login_user="nobody_here")
    assert bad_user["failed"] and "check login_user" in bad_user["msg"]
    unknown_db = backup(pg_cluster, "no_such_database", [local(tmp_path)])
    assert unknown_db["failed"] and "check the database name" in unknown_db["msg"]
    missing_dir = backup(pg_cluster, seeded, [local(tmp_path / "absent")])
    assert missing_dir["failed"] and "does not exist; create it" in missing_dir["msg"]
    missing_table = backup(pg_cluster, seeded, [local(tmp_path)], tables=["public.nope"])
    assert missing_table["failed"] and "every name given must exist" in missing_table["msg"]
    assert not list(tmp_path.rglob("manifest.json"))
    no_target = run_module_inprocess("pg_backup", {"destinations": [local(tmp_path)]})
    assert no_target["failed"] and "all_databases" in no_target["msg"]
    lz4 = backup(pg_cluster, seeded, [local(tmp_path)], compression="lz4")
    assert lz4["failed"] and "needs pg_dump 16" in lz4["msg"]
    jobs = backup(pg_cluster, seeded, [local(tmp_path)], jobs=2)
    assert jobs["failed"] and "format=directory" in jobs["msg"]


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize("option", ["database", "schemas", "tables", "exclude_tables"])
def test_injection_payloads_are_refused_before_anything_runs(pg_cluster, seeded, tmp_path, option, payload):
    value = payload if option == "database" else [payload]
    args = {option: value}
    database = args.pop("database", seeded)
    result = backup(pg_cluster, database, [local(tmp_path)], **args)
    assert result["failed"] and "nothing was sent to the server" in result["msg"]
    assert result["msg"].startswith(option) and payload in result["msg"]
    assert list(tmp_path.iterdir()) == []
    assert pg_cluster.query("SELECT to_regclass('public.users') IS NOT NULL", dbname=seeded) == [(True,)]
    listing = info([local(tmp_path)], database=payload)
    assert listing["failed"] and "not a plain database name" in listing["msg"]


# ---- retention and check mode ---------------------------------------------------------------------
def _age_backup(folder, days):
    """Make a backup look ``days`` old: its id and manifest times, as an old run would have written them."""
    manifest = json.loads((folder / "manifest.json").read_text())
    ended = manifest["ended_epoch"] - days * 86400
    new_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ended)) + folder.name[-5:]
    manifest.update(id=new_id, ended_epoch=ended, started_epoch=ended - 1)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    folder.rename(folder.parent / new_id)
    return new_id


def test_retention_prunes_after_verification_and_never_the_last_good(pg_cluster, seeded, tmp_path):
    dest = local(tmp_path, retention={"keep_last": 1, "max_age_days": 30})
    plain = local(tmp_path)
    old = [_age_backup(tmp_path / seeded / backup(pg_cluster, seeded, [plain])["backup"]["id"], d) for d in (60, 40)]
    assert sorted(p.name for p in (tmp_path / seeded).iterdir()) == sorted(old)

    # A failed run prunes nothing, even though every backup is past max_age.
    failed = backup(pg_cluster, seeded, [dest], tables=["public.nope"])
    assert failed["failed"] and sorted(p.name for p in (tmp_path / seeded).iterdir()) == sorted(old)

    predicted = backup(pg_cluster, seeded, [dest], check=True)
    assert sorted(p["id"] for p in predicted["pruned"]) == sorted(old)
    assert sorted(p.name for p in (tmp_path / seeded).iterdir()) == sorted(old), "check mode pruned"

    real = backup(pg_cluster, seeded, [dest])
    assert sorted(p["id"] for p in real["pruned"]) == sorted(old)
    assert [p.name for p in (tmp_path / seeded).iterdir()] == [real["backup"]["id"]]

    # The only backup left is past max_age: it is still the last good one, so it stays.
    survivor = _age_backup(tmp_path / seeded / real["backup"]["id"], 90)
    nothing_due = backup(pg_cluster, seeded, [dest], min_interval_seconds=10**9)
    assert nothing_due["changed"] is False and nothing_due["backup"]["id"] == survivor
    assert [p.name for p in (tmp_path / seeded).iterdir()] == [survivor]


# ---- all databases --------------------------------------------------------------------------------
def test_all_databases_with_globals_in_directory_format(pg_cluster, seeded, tmp_path, scratch_db):
    pg_cluster.query("DO $$BEGIN CREATE ROLE locksmith_probe_role NOLOGIN; EXCEPTION WHEN duplicate_object THEN END$$")
    args = dict(conn(pg_cluster), all_databases=True, format="directory", jobs=2, compression="zstd:1")
    args.update(destinations=[local(tmp_path)], min_interval_seconds=0)
    result = run_module_inprocess("pg_backup", args)
    assert result["changed"] is True, result
    manifest = result["backup"]
    assert manifest["label"] == "all-databases" and manifest["globals"] is True and seeded in manifest["databases"]
    names = [a["name"] for a in manifest["artefacts"]]
    assert names[0] == "globals.sql.zst" and f"{seeded}.dir/toc.dat.zst" in names
    folder = tmp_path / "all-databases" / manifest["id"]
    globals_sql = subprocess.run(["zstd", "-dc", str(folder / "globals.sql.zst")], capture_output=True, check=True)
    assert b"CREATE ROLE locksmith_probe_role" in globals_sql.stdout
    verified = run_module_inprocess("pg_backup", dict(args, state="verified"))
    assert verified["verification"][0]["restore_list_checked"] is True, verified

    # Restore one database from the directory artefacts with the stock tools.
    restored = tmp_path / "restore"
    restored.mkdir()
    for artefact in manifest["artefacts"]:
        if artefact.get("database") == seeded:
            plain = restored / Path(artefact["plain_name"]).name
            subprocess.run(["zstd", "-qdf", str(folder / artefact["name"]), "-o", str(plain)], check=True)
    target = scratch_db()
    pg_cluster.create_database(target)
    subprocess.run(
        [
            str(PG_BIN_DIR / "pg_restore"),
            "-h",
            pg_cluster.host,
            "-p",
            str(pg_cluster.port),
            "-U",
            "postgres",
            "-d",
            target,
            "-j",
            "2",
            "--no-owner",
            str(restored),
        ],
        check=True,
        capture_output=True,
    )
    assert fingerprint(pg_cluster, target) == fingerprint(pg_cluster, seeded)


# ---- metrics and info ------------------------------------------------------------------------------
def test_metrics_carry_failures_across_runs(pg_cluster, seeded, tmp_path):
    from ansible_collections.locksmith.ops.plugins.module_utils import _metrics

    metrics_dir = tmp_path / "textfile"
    metrics_dir.mkdir()
    dest = local(tmp_path / "store")
    (tmp_path / "store").mkdir()
    ok = backup(pg_cluster, seeded, [dest], metrics_dir=str(metrics_dir), rpo_target_seconds=7200)
    prom = Path(ok["metrics_file"])
    assert prom.name == f"locksmith_backup_{seeded}.prom"
    for _attempt in range(2):
        failed = backup(
            pg_cluster, seeded, [dest], metrics_dir=str(metrics_dir), tables=["public.nope"], rpo_target_seconds=7200
        )
        assert failed["failed"]
    samples = _metrics.parse(prom.read_text())
    db = (("database", seeded),)
    at = (("database", seeded), ("destination", f"local:{tmp_path / 'store'}"))
    assert samples[("locksmith_backup_failures_total", db)] == 2
    assert samples[("locksmith_backup_last_status", db)] == 0
    assert samples[("locksmith_backup_rpo_target_seconds", db)] == 7200
    assert samples[("locksmith_backup_last_size_bytes", at)] == ok["backup"]["size_bytes"]
    assert abs(samples[("locksmith_backup_last_success_timestamp_seconds", at)] - ok["backup"]["ended_epoch"]) < 5
    backup(pg_cluster, seeded, [dest], metrics_dir=str(metrics_dir))
    samples = _metrics.parse(prom.read_text())
    assert samples[("locksmith_backup_last_status", db)] == 1 and samples[("locksmith_backup_failures_total", db)] == 2


def test_info_lists_labels_and_reports_incomplete_leftovers(pg_cluster, seeded, tmp_path):
    dest = local(tmp_path)
    manifest = backup(pg_cluster, seeded, [dest])["backup"]
    leftover = tmp_path / seeded / f".{manifest['id'][:-4]}beef.locksmith-tmp-abc"
    leftover.mkdir()
    (leftover / f"{seeded}.dump.zst").write_bytes(b"partial")
    result = run_module_inprocess("pg_backup_info", {"destinations": [dest]}, check=True)
    assert result["changed"] is False
    by_complete = {b["complete"]: b for b in result["backups"]}
    assert by_complete[True]["valid"] and by_complete[True]["manifest"]["id"] == manifest["id"]
    assert not by_complete[False]["valid"] and "incomplete" in by_complete[False]["errors"][0]
    assert result["newest_good"][seeded]["id"] == manifest["id"]


def test_s3_retention_and_an_aborted_upload_leave_no_trace(pg_cluster, seeded, moto, s3_bucket):
    from ansible_collections.locksmith.ops.plugins.module_utils import _storage

    dest = s3(moto, s3_bucket, retention={"keep_last": 1})
    first = backup(pg_cluster, seeded, [dest])["backup"]["id"]
    second = backup(pg_cluster, seeded, [dest], diff=True)
    assert second["pruned"] == [
        {"destination": f"destinations[0] s3://{s3_bucket}/pg/", "id": first, "reason": "retention"}
    ]
    assert second["diff"]["after"]["pruned"] == [f"destinations[0] s3://{s3_bucket}/pg/ {first}"]
    client = moto.client("s3")
    # An object named like an old backup id with nothing under it is not a backup: not listed, not "pruned"
    # (it was reported pruned on every run and never went away).
    client.put_object(Bucket=s3_bucket, Key=f"pg/{seeded}/20200101T000000Z-0000", Body=b"not ours")
    third = backup(pg_cluster, seeded, [dest])
    assert [p["id"] for p in third["pruned"]] == [second["backup"]["id"]], third["pruned"]
    client.delete_object(Bucket=s3_bucket, Key=f"pg/{seeded}/20200101T000000Z-0000")
    first, second = second["backup"]["id"], third
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys and not [k for k in keys if first in k]

    # A writer that dies mid-multipart: abort removes the upload and what it had already put.
    destination = _storage.build_destinations([dest], [])[0]
    writer = destination.open_writer(seeded, _storage.new_backup_id(time.time()))
    small = writer.open_artefact("globals.sql")
    small.write(b"-- roles")
    small.close()
    big = writer.open_artefact(f"{seeded}.dump")
    big.write(os.urandom(17 * 1024 * 1024))
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    big.abort()
    writer.abort()
    assert not client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]) == sorted(keys)


def test_info_and_metrics_errors_name_the_input(pg_cluster, seeded, tmp_path, moto):
    missing = info([local(tmp_path / "absent")])
    assert missing["failed"] and "destinations[0] local:" in missing["msg"] and "does not exist" in missing["msg"]
    bucket = info([s3(moto, "no-such-bucket-here")])
    assert bucket["failed"] and "bucket 'no-such-bucket-here' does not exist" in bucket["msg"]
    metrics = backup(pg_cluster, seeded, [local(tmp_path)], metrics_dir=str(tmp_path / "nope"))
    assert metrics["failed"] and "metrics_dir" in metrics["msg"] and not list(tmp_path.iterdir())


def test_unreachable_s3_endpoint_is_retried_with_warnings_then_named(moto):
    from tests.harness.process import free_port

    dest = s3(moto, "any-bucket", endpoint_url=f"http://127.0.0.1:{free_port()}")
    result = info([dest])
    assert result["failed"] and "failed after 4 attempts" in result["msg"] and "destinations[0]" in result["msg"]
    assert len([w for w in result.get("warnings", []) if "retry" in str(w)]) == 3
