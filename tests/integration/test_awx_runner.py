"""A playbook run the way AWX runs a job: ansible_runner.run() on a private data directory.

AWX writes a private data dir per job (inventory/ from the inventory sync, env/extravars with the job's
variables, env/settings, env/envvars and credential files, project/ with the synced project) and turns
the callback output into job events under artifacts/. This test does the same for playbooks/smoke.yml
(the playbook `make demo` runs) against the real PostgreSQL, OpenBao, moto and TLS peer of
tests/conftest.py, then asserts on the job events: the job succeeded, nothing failed, the work happened,
and no secret value (OpenBao token, S3 keys, database password, the HMAC key rotated into OpenBao)
appears in any event, in stdout, or anywhere else under artifacts/.

Every secret is a fresh random value that the run really needs: the token is a child token of the
OpenBao root, the database role logs in with scram-sha-256 only, so success proves each was used.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest

from tests.harness.ansible import REPO, ensure_collection_path
from tests.harness.postgres import PG_BIN_DIR

PLAYBOOK = "playbooks/smoke.yml"
HMAC_SECRET = "locksmith/demo/webhook_hmac"
# Values shorter than this could match by accident (a port, a word); every secret here is longer.
MIN_SECRET_LENGTH = 12


def find_leaks(secret_values: dict[str, str], texts: dict[str, str]) -> list[str]:
    """'<secret name> in <where>' for each secret value found in any text (raw or JSON-escaped)."""
    leaks = []
    for name, value in secret_values.items():
        assert len(value) >= MIN_SECRET_LENGTH, f"{name} is too short to search for"
        forms = {value, json.dumps(value)[1:-1]}
        leaks += [f"{name} in {where}" for where, text in texts.items() if any(form in text for form in forms)]
    return leaks


def artifact_texts(private_data_dir: Path) -> dict[str, str]:
    """Every file runner wrote under artifacts/ (job events, stdout, command, status), as text."""
    return {
        str(path.relative_to(private_data_dir)): path.read_text(errors="replace")
        for path in sorted((private_data_dir / "artifacts").rglob("*"))
        if path.is_file()
    }


def write_inventory_script(path: Path, inventory: dict) -> None:
    """AWX hands the synced inventory to ansible as an executable script that prints JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nprint({json.dumps(inventory)!r})\n")
    path.chmod(stat.S_IRWXU)


@pytest.fixture
def scram_role(pg_cluster):
    """A login role that only a scram-sha-256 password admits (a pg_hba line for it alone, removed after)."""
    role, password = f"awx_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(24)
    hba = pg_cluster.datadir / "pg_hba.conf"
    line = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
    original = hba.read_text()
    pg_cluster.query(f'CREATE ROLE "{role}" LOGIN SUPERUSER PASSWORD %s', (password,))
    hba.write_text(line + original)
    pg_cluster.query("SELECT pg_reload_conf()")
    try:
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(**pg_cluster.conn_params(user=role, password="wrong-password")).close()
        yield role, password
    finally:
        hba.write_text(hba.read_text().replace(line, "", 1))
        pg_cluster.query("SELECT pg_reload_conf()")
        pg_cluster.query(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def job(tmp_path, pg_cluster, scram_role, openbao, moto, s3_bucket, cert_factory, tls_peer):
    """The private data dir of one AWX-style job, and the secret values it carries."""
    role, db_password = scram_role
    database = f"awx_{uuid.uuid4().hex[:10]}"
    token = openbao.client().auth.token.create(policies=["root"], ttl="15m")["auth"]["client_token"]
    # moto accepts any key pair; fresh random ones make a leak of them detectable.
    access_key, secret_key = "AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    peer = tls_peer(cert_factory.leaf("localhost", days=90))
    second_bucket = f"locksmith-{uuid.uuid4().hex[:12]}"

    pdd = tmp_path / "job"
    (pdd / "env").mkdir(parents=True)
    (pdd / "project").mkdir()
    (pdd / "project" / "playbooks").symlink_to(REPO / "playbooks")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    write_inventory_script(
        pdd / "inventory" / "hosts",
        {
            "all": {"children": ["controller"]},
            "controller": {
                "hosts": ["localhost"],
                "vars": {
                    "demo_database": database,
                    "demo_buckets": [
                        {"name": s3_bucket, "region": "eu-west-1"},
                        {"name": second_bucket, "region": "eu-central-1"},
                    ],
                },
            },
            "_meta": {
                "hostvars": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
            },
        },
    )
    # The job's variables, secret-bearing ones included, as AWX writes them (survey answers, extra vars).
    extravars = {
        "demo_endpoints": {
            "postgres": {"host": pg_cluster.host, "port": pg_cluster.port, "user": role},
            "openbao": {"url": openbao.url, "token": token},
            "s3": {"endpoint_url": moto.endpoint_url, "access_key": access_key, "secret_key": secret_key},
            "tls": {"port": peer.port, "ca_file": str(cert_factory.ca_file)},
        },
        "demo_metrics_dir": str(metrics_dir),
    }
    (pdd / "env" / "extravars").write_text(json.dumps(extravars))
    (pdd / "env" / "settings").write_text(
        json.dumps({"job_timeout": 600, "idle_timeout": 300, "pexpect_timeout": 5, "suppress_ansible_output": True})
    )
    # A credential of a custom type with a file injector: AWX writes the file into the private data dir
    # and points an environment variable at it. libpq reads PGPASSFILE (host:port:db:user:password).
    passfile = pdd / "env" / "pgpass"
    passfile.write_text(f"{pg_cluster.host}:{pg_cluster.port}:*:{role}:{db_password}\n")
    passfile.chmod(0o600)
    (pdd / "env" / "envvars").write_text(
        json.dumps(
            {
                "ANSIBLE_COLLECTIONS_PATH": str(ensure_collection_path()),
                "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
                "ANSIBLE_HOST_KEY_CHECKING": "False",
                "ANSIBLE_RETRY_FILES_ENABLED": "False",
                "PGPASSFILE": str(passfile),
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), str(PG_BIN_DIR), os.environ["PATH"]]),
            }
        )
    )
    secret_values = {"OpenBao token": token, "S3 secret key": secret_key, "database password": db_password}
    yield {
        "dir": pdd,
        "secrets": secret_values,
        "access_key": access_key,
        "database": database,
        "buckets": [s3_bucket, second_bucket],
    }
    pg_cluster.drop_database(database)


def hmac_values(openbao) -> dict[str, str]:
    """The HMAC key(s) as stored in OpenBao: every `key` field (the hmac target's field) of the secret."""
    data = openbao.client().secrets.kv.v2.read_secret_version(
        path=HMAC_SECRET, mount_point="secret", raise_on_deleted_version=True
    )["data"]["data"]
    found = {}

    def walk(node, path):
        if isinstance(node, dict):
            for name, value in node.items():
                walk(value, f"{path}.{name}")
        elif isinstance(node, str) and path.endswith(".key"):
            found[f"rotated HMAC {path.lstrip('.')}"] = node

    walk(data, "")
    return found


def test_smoke_playbook_runs_as_an_awx_job_without_leaking_secrets(job, openbao, moto, pg_cluster):
    import ansible_runner

    events = []
    statuses = []
    result = ansible_runner.run(
        private_data_dir=str(job["dir"]),
        playbook=PLAYBOOK,
        ident="awx-job-1",
        event_handler=lambda event: events.append(event) or True,
        status_handler=lambda status, runner_config: statuses.append(status["status"]),
        quiet=True,
    )
    stdout = result.stdout.read()
    assert result.status == "successful", stdout[-4000:]
    assert result.rc == 0
    assert statuses[0] == "starting" and statuses[-1] == "successful"

    (stats,) = [e for e in events if e["event"] == "playbook_on_stats"]
    data = stats["event_data"]
    assert sum(data["failures"].values()) == 0 and sum(data["dark"].values()) == 0, data
    assert data["ok"].get("localhost", 0) > 0 and data["changed"].get("localhost", 0) > 0
    ok_tasks = {e["event_data"]["task"] for e in events if e["event"] == "runner_on_ok"}
    for task in (
        "Back up the demo database to two buckets standing for two regions (at most once a day)",
        "Rotate the demo webhook HMAC key in OpenBao when it is due (daily)",
        "Audit the demo TLS endpoint",
    ):
        assert task in ok_tasks, sorted(ok_tasks)
    # The job events on disk are the ones AWX's callback receiver would store.
    event_files = sorted((job["dir"] / "artifacts" / "awx-job-1" / "job_events").glob("*.json"))
    assert len(event_files) == len(events)

    # Independent clients: the backup landed in both buckets, the HMAC key is in OpenBao.
    s3 = moto.client("s3")
    for bucket in job["buckets"]:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert any(job["database"] in key for key in keys), (bucket, keys)
    hmac = hmac_values(openbao)
    assert hmac, "secret_rotate stored no HMAC key"

    secret_values = {**job["secrets"], **hmac}
    texts = {
        "stdout": stdout,
        "event_handler events": json.dumps(events),
        **artifact_texts(job["dir"]),
    }
    assert find_leaks(secret_values, texts) == []

    # The access key ID is an identifier, not a secret (AWS prints it in consoles and logs), and
    # amazon.aws.s3_bucket returns it in its invocation args; our own modules must not show it either.
    ours = [e for e in events if str(e["event_data"].get("resolved_action", "")).startswith("locksmith.ops.")]
    assert len(ours) >= 3
    assert (
        find_leaks({"S3 access key": job["access_key"]}, {"stdout": stdout, "locksmith.ops events": json.dumps(ours)})
        == []
    )


def test_the_leak_search_finds_a_planted_secret(tmp_path):
    token = secrets.token_urlsafe(24)
    events = tmp_path / "artifacts" / "1" / "job_events"
    events.mkdir(parents=True)
    (events / "1-x.json").write_text(json.dumps({"event_data": {"res": {"msg": f'token "{token}"\n'}}}))
    (events / "2-y.json").write_text(json.dumps({"event_data": {"res": {"msg": "nothing here"}}}))
    escaped = 'a"b\\c' + token
    (events / "3-z.json").write_text(json.dumps({"stdout": escaped}))
    texts = artifact_texts(tmp_path)
    assert find_leaks({"token": token}, texts) == [
        "token in artifacts/1/job_events/1-x.json",
        "token in artifacts/1/job_events/3-z.json",
    ]
    assert find_leaks({"quoted": escaped}, texts) == ["quoted in artifacts/1/job_events/3-z.json"]
    with pytest.raises(AssertionError, match="too short"):
        find_leaks({"port": "5432"}, texts)
