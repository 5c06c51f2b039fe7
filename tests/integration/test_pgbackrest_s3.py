"""Role locksmith.ops.backup with an S3 pgBackRest repository, against moto over TLS and a real PostgreSQL 15.

The play runs the role's own task that writes pgbackrest.conf (read from tasks/pgbackrest.yml) with the role's
defaults and vars; the rest of pgbackrest.yml needs apt and systemd and runs in molecule/backup. pgBackRest then
archives WAL, backs up and restores through the S3 API of a moto server that checks every request's signature, and
boto3 reads the bucket back.
"""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError

from tests.harness.ansible import REPO, run_playbook

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROLE = REPO / "roles" / "backup"
CONF_TASK = "Write pgbackrest.conf with the stanza and its repository"
SHOW_TASK = "Show the pgbackrest command and archive_command the role derives"
REGION = "eu-west-1"
RUNUSER = ["runuser", "-u", "postgres", "--"]


def _chown_postgres(*paths: Path) -> None:
    pg = pwd.getpwnam("postgres")
    for path in paths:
        os.chown(path, pg.pw_uid, pg.pw_gid)


@pytest.fixture(scope="module")
def workdir():
    """A directory postgres can enter (pytest's tmp dirs are 0700 root)."""
    if os.geteuid() != 0:
        pytest.skip("runs pgBackRest and PostgreSQL as the postgres user, which needs root")
    path = Path(tempfile.mkdtemp(prefix="locksmith-pgbr-s3-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def s3(workdir, cert_factory):
    """moto over TLS with IAM checks on, a bucket, and an IAM user allowed s3:* (pgBackRest speaks only HTTPS)."""
    from tests.harness.moto_auth import AuthMotoServer

    # pgBackRest 2.45 matches only the certificate's DNS names, so the endpoint is `localhost`, not 127.0.0.1.
    leaf = cert_factory.leaf("localhost", sans=("localhost", "127.0.0.1"))
    chain = workdir / "moto-chain.pem"
    chain.write_bytes(leaf.cert_path.read_bytes() + leaf.chain_path.read_bytes())
    ca_file = workdir / "s3-ca.pem"  # the only TLS file pgBackRest (as postgres) reads
    ca_file.write_bytes(cert_factory.ca_file.read_bytes())
    ca_file.chmod(0o644)
    server = AuthMotoServer(ssl_cert=chain, ssl_key=leaf.key_path, ca_file=ca_file).start()
    try:
        keys = server.user(["s3:*"])
        bucket = f"locksmith-{uuid.uuid4().hex[:12]}"
        client = server.client_as(keys)
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield {
            "server": server,
            "client": client,
            "bucket": bucket,
            "keys": keys,
            "ca_file": ca_file,
            "endpoint": f"localhost:{server.port}",
        }
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster():
    from tests.harness.postgres import PostgresCluster

    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


def render(workdir: Path, s3: dict, cluster, stanza: str, secret: str, verbosity: int = 0):
    """Write <workdir>/<stanza>/pgbackrest.conf with the role's task, defaults and vars; return (run, conf)."""
    base = workdir / stanza
    for sub in ("", "log", "lock"):
        (base / sub).mkdir(exist_ok=True)
    _chown_postgres(base / "log", base / "lock")
    tasks = yaml.safe_load((ROLE / "tasks" / "pgbackrest.yml").read_text(encoding="utf-8"))
    (task,) = [t for t in tasks if t["name"] == CONF_TASK]
    # Outside the role the template is found by its path; every other argument is the role's.
    task["locksmith.ops.template"]["src"] = str(ROLE / "templates" / "pgbackrest.conf.j2")
    show = {
        "name": SHOW_TASK,
        "ansible.builtin.debug": {
            "msg": {
                "cmd": "{{ _backup_pgbackrest_cmd }}",
                "archive_command": "{{ _backup_pgbackrest_archive_command }}",
            }
        },
    }
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "tasks": [task, show],
    }
    conf = base / "pgbackrest.conf"
    role_vars = {
        "backup_pgbackrest_stanza": stanza,
        "backup_pgbackrest_config_file": str(conf),
        "backup_pgbackrest_pg_data_dir": str(cluster.datadir),
        "backup_pgbackrest_pg_port": cluster.port,
        "backup_pgbackrest_pg_socket_dir": str(cluster.socket_dir),
        "backup_pgbackrest_repo_type": "s3",
        "backup_pgbackrest_repo_path": f"/locksmith/{stanza}",
        "backup_pgbackrest_s3_bucket": s3["bucket"],
        "backup_pgbackrest_s3_endpoint": s3["endpoint"],
        "backup_pgbackrest_s3_region": REGION,
        "backup_pgbackrest_s3_key": s3["keys"]["access_key"],
        "backup_pgbackrest_s3_key_secret": secret,
        "backup_pgbackrest_s3_uri_style": "path",
        "backup_pgbackrest_s3_ca_file": str(s3["ca_file"]),
        # Logs and locks stay in the test's directory instead of /var/log/pgbackrest and /tmp/pgbackrest.
        "backup_pgbackrest_config_overrides": {
            "log-path": str(base / "log"),
            "lock-path": str(base / "lock"),
        },
    }
    run = run_playbook([play], extra_vars=role_vars, verbosity=verbosity)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return run, conf


def pgbackrest(cmd: list[str], *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """The role's pgbackrest invocation (--config, --stanza) plus `args`, run as postgres."""
    return subprocess.run([*RUNUSER, *cmd, *args], capture_output=True, text=True, timeout=timeout, check=False)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def archive_with(cluster, archive_command: str) -> None:
    """Set archive_command and archive_mode as the role does (ALTER SYSTEM), and restart for archive_mode."""
    cluster.query("ALTER SYSTEM SET archive_command = %s", (archive_command,))
    cluster.query("ALTER SYSTEM SET archive_mode = on")
    pg_ctl = [str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.datadir), "-l", str(cluster.log), "-w", "-m", "fast"]
    subprocess.run([*RUNUSER, *pg_ctl, "restart"], check=True, capture_output=True)
    assert cluster.query("SHOW archive_mode")[0][0] == "on"


@pytest.fixture
def restored(workdir):
    """A data directory for the restore, owned by postgres with mode 0700; its server is stopped after the test."""
    from tests.harness.postgres import PostgresCluster
    from tests.harness.process import free_port

    base = workdir / "restored"
    (base / "data").mkdir(parents=True)
    (base / "data").chmod(0o700)
    _chown_postgres(base, base / "data")
    target = PostgresCluster(base_dir=str(base), port=free_port())
    yield target
    target.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_s3_repository_archives_backs_up_and_restores(workdir, s3, cluster, restored):
    stanza = "s3demo"
    secret = s3["keys"]["secret_key"]
    # The role's default bundling packs the cluster's ~1,000 small files into a few objects: moto takes about 25 ms a
    # request, so a full backup and its restore take about 8 s with it and 60 s without.
    run, conf = render(workdir, s3, cluster, stanza, secret)
    # The role's task ran with no_log: neither the result nor any output holds the secret.
    assert run.result(CONF_TASK).get("censored"), run.result(CONF_TASK)
    assert run.changed() == 1 and secret not in run.stdout + run.stderr
    derived = run.result(SHOW_TASK)["msg"]
    cmd = derived["cmd"]
    assert cmd == ["pgbackrest", f"--config={conf}", f"--stanza={stanza}"]

    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read(conf)
    repo = dict(parsed["global"])
    assert {k: repo[k] for k in repo if k.startswith("repo1-") and k != "repo1-s3-key-secret"} == {
        "repo1-type": "s3",
        "repo1-path": f"/locksmith/{stanza}",
        "repo1-retention-full": "2",
        "repo1-retention-diff": "6",
        "repo1-s3-bucket": s3["bucket"],
        "repo1-s3-endpoint": s3["endpoint"],
        "repo1-s3-region": REGION,
        "repo1-s3-key": s3["keys"]["access_key"],
        "repo1-s3-uri-style": "path",
        "repo1-storage-verify-tls": "y",
        "repo1-storage-ca-file": str(s3["ca_file"]),
        "repo1-bundle": "y",
    }
    assert repo["repo1-s3-key-secret"] == secret
    assert dict(parsed[stanza]) == {
        "pg1-path": str(cluster.datadir),
        "pg1-port": str(cluster.port),
        "pg1-socket-path": str(cluster.socket_dir),
    }

    archive_with(cluster, derived["archive_command"])
    cluster.create_database("app")
    cluster.query(
        "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'before the backup')", dbname="app"
    )

    ok(pgbackrest(cmd, "stanza-create"))
    ok(pgbackrest(cmd, "check"))  # switches WAL and waits until archive-push put the segment in the bucket
    ok(pgbackrest(cmd, "--type=full", "backup"))
    # Only archived WAL carries this row into the restore: the backup was taken before it.
    cluster.query("INSERT INTO t VALUES (2, 'after the backup')", dbname="app")
    ok(pgbackrest(cmd, "check"))

    (info,) = json.loads(ok(pgbackrest(cmd, "--output=json", "info")).stdout)
    assert info["name"] == stanza and (info["status"]["code"], info["status"]["message"]) == (0, "ok"), info
    assert [(r["key"], r["status"]["code"]) for r in info["repo"]] == [(1, 0)]
    (backup,) = info["backup"]
    assert backup["type"] == "full" and backup["label"].endswith("F") and backup["database"]["repo-key"] == 1
    assert backup["info"]["size"] > 10 * 2**20, backup["info"]  # a whole cluster, not an empty shell
    (archive,) = info["archive"]
    assert archive["database"]["id"] == 1 and archive["min"] <= backup["archive"]["start"] < archive["max"]

    # The repository is in the moto bucket, read back with boto3.
    prefix = f"locksmith/{stanza}"
    keys = {
        obj["Key"]
        for page in s3["client"].get_paginator("list_objects_v2").paginate(Bucket=s3["bucket"], Prefix=prefix)
        for obj in page.get("Contents", [])
    }
    for name in ("backup.info", "backup.info.copy"):
        assert f"{prefix}/backup/{stanza}/{name}" in keys, sorted(keys)[:20]
    assert f"{prefix}/archive/{stanza}/archive.info" in keys
    assert f"{prefix}/backup/{stanza}/{backup['label']}/backup.manifest" in keys
    assert any(key.startswith(f"{prefix}/backup/{stanza}/{backup['label']}/bundle/") for key in keys), sorted(keys)
    segments = {
        m[1]
        for key in keys
        if (
            m := re.fullmatch(
                rf"{prefix}/archive/{stanza}/15-1/[0-9A-F]{{16}}/([0-9A-F]{{24}})-[0-9a-f]{{40}}\.zst", key
            )
        )
    }
    assert {backup["archive"]["start"], backup["archive"]["stop"], archive["max"]} <= segments, sorted(segments)
    body = s3["client"].get_object(Bucket=s3["bucket"], Key=f"{prefix}/backup/{stanza}/backup.info")["Body"].read()
    assert f"{backup['label']}=".encode() in body

    # Restore from the bucket into an empty 0700 directory and start it on its own port.
    ok(pgbackrest(cmd, f"--pg1-path={restored.datadir}", "--archive-mode=off", "restore"))
    with open(restored.datadir / "postgresql.auto.conf", "a", encoding="utf-8") as handle:
        handle.write(f"port = {restored.port}\nunix_socket_directories = '{restored.socket_dir}'\n")
    restored.start()
    deadline = time.monotonic() + 30
    while restored.query("SELECT pg_is_in_recovery()")[0][0]:  # replays the archived WAL from S3, then promotes
        assert time.monotonic() < deadline, "the restored cluster did not finish recovery within 30 s"
        time.sleep(0.2)
    assert restored.query("SELECT id, note FROM t ORDER BY id", dbname="app") == [
        (1, "before the backup"),
        (2, "after the backup"),
    ]
    assert restored.query("SHOW archive_mode")[0][0] == "off"  # the copy never pushes into the stanza's archive


def test_wrong_secret_or_unknown_ca_fails_and_the_secret_stays_hidden(workdir, s3, cluster):
    stanza = "s3wrong"
    wrong = "wrong-" + uuid.uuid4().hex
    run, conf = render(workdir, s3, cluster, stanza, wrong, verbosity=3)
    assert wrong not in run.stdout + run.stderr, "the -vvv output of the play shows the secret key"
    assert "censored" in run.stdout and CONF_TASK in run.stdout
    # The file holds the secret: root and the cluster's group only.
    stat = conf.stat()
    assert (stat.st_mode & 0o777, stat.st_uid, stat.st_gid) == (0o640, 0, pwd.getpwnam("postgres").pw_gid)
    assert wrong in conf.read_text(encoding="utf-8")
    denied = subprocess.run(
        ["runuser", "-u", "nobody", "--", "cat", str(conf)], capture_output=True, text=True, check=False
    )
    assert denied.returncode != 0 and "Permission denied" in denied.stderr

    cmd = ["pgbackrest", f"--config={conf}", f"--stanza={stanza}"]
    refused = pgbackrest(cmd, "stanza-create")
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0, out
    # The first request of stanza-create is refused, and the error names it; its signature is redacted.
    assert "ERROR: [039]: HTTP request failed with 403 (FORBIDDEN)" in out, out
    assert f"HEAD /{s3['bucket']}/locksmith/{stanza}/archive/{stanza}/archive.info" in out, out
    assert "authorization: <redacted>" in out and wrong not in out and s3["keys"]["secret_key"] not in out
    # A HEAD reply has no body, so pgBackRest cannot show the cause; boto3 with the same keys reads it.
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        s3["server"].client_as({"access_key": s3["keys"]["access_key"], "secret_key": wrong}).list_objects_v2(
            Bucket=s3["bucket"]
        )

    # Verification stays on by default: without the CA file the endpoint's certificate is refused. pgBackRest retries
    # that until io-timeout (60 s by default) before it gives up; 2 s keeps the test short.
    unverified = pgbackrest(cmd, "--reset-repo1-storage-ca-file", "--io-timeout=2", "stanza-create")
    out = unverified.stdout + unverified.stderr
    assert unverified.returncode != 0
    assert f"unable to verify certificate presented by '{s3['endpoint']}'" in out, out

    listed = s3["client"].list_objects_v2(Bucket=s3["bucket"], Prefix=f"locksmith/{stanza}/")
    assert listed["KeyCount"] == 0, [o["Key"] for o in listed.get("Contents", [])]
