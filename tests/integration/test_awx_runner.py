"""playbooks/site.yml run the way AWX runs jobs: ansible_runner.run() on a private data directory.

AWX writes a private data dir per job (inventory/ from the inventory sync, env/extravars with the job's
variables, env/settings, env/envvars and credential files, project/ with the synced project) and turns
the callback output into job events under artifacts/. This test does the same for playbooks/site.yml with
the job tags (a job template's "job tags") of the steps that can run against the controller and the real
servers of tests/conftest.py without installing packages, starting services or writing system files here:

- job 1, tags `secrets,audit,backup,tls_audit`:
  - `secrets` rotates a PostgreSQL login password on the harness cluster and an HMAC key in the harness
    OpenBao, writes a consumer's env file under the test's tmp dir (its "reload" touches a marker file),
    and scans a tmp repository;
  - `audit` puts audit triggers on a table of a fresh database of the harness cluster (over its socket);
  - `backup` installs the pg_backup runner and job file under the tmp dir, checks the job reaches the
    database and both destinations (a local dir and a moto bucket), and puts the lifecycle rule on the bucket;
  - `tls_audit` checks the harness TLS peer and writes the metrics into a tmp dir;
- the backup job file is then run as its timer would run it;
- job 2, tags `secrets,dr_drill`: the rotation changes nothing (nothing is due), and the drill restores
  that backup into a scratch database of the harness cluster, verifies it and fetches its report.

Skip tags leave out the schedules (systemd units, cron files). Every step not selected targets an empty
group, so it does nothing. The test asserts on the job events that the selected steps ran and changed what
they should, reads the results back with independent clients (psycopg2, hvac, boto3, the files), and checks
that no secret value (OpenBao token, PostgreSQL admin password, old and rotated passwords, HMAC key, S3
secret key) appears in any event, in stdout, or anywhere else under artifacts/ of either job.

Every secret is a fresh random value that the run really needs: the token is a child token of the
OpenBao root and both database roles log in with scram-sha-256 only, so success proves each was used.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

from tests.harness.ansible import REPO, ensure_collection_path
from tests.harness.postgres import PG_BIN_DIR

PLAYBOOK = "playbooks/site.yml"
JOB_TAGS = "secrets,audit,backup,tls_audit"
# The steps' schedules install systemd units or cron files on the host: never on this machine.
SKIP_TAGS = "secrets_schedule,audit_retention_timer,backup_schedule"
SCHEDULE_TASKS = {
    "Remove the rotation cron entry when another schedule is chosen",
    "Look up the rotation timer unit",
    "Install the retention service of each database",
    "Enable and start the retention timers",
    "Install the backup service and timer units",
    "Remove the cron jobs when another schedule is chosen",
}
# Steps whose hosts default to `all` or to a group this inventory fills: their roles' preflight tasks are
# tagged `always` and would run on the controller even when the job tags leave the step out.
UNSELECTED_STEP_HOSTS = ("harden_hosts", "certificates_hosts", "monitoring_agent_hosts")
SECRETS_PLAY = "Rotate secrets, update their consumers and scan for leaks"
AUDIT_PLAY = "Audit the tables that matter and keep the log 90 days"
BACKUP_PLAY = "Schedule verified PostgreSQL backups"
TLS_PLAY = "Audit TLS endpoints and notify on findings"
DR_PLAY = "Run the DR drill and prove RTO and RPO"
TLS_DAYS = 47
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


def stored(openbao, path: str) -> dict:
    """The current version of a KV v2 secret, read with the root token (an independent client)."""
    return openbao.client().secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )["data"]["data"]


def string_fields(node, path: str = "") -> dict[str, str]:
    """Every string of a stored secret document, by its path (e.g. `current.value.password`)."""
    if isinstance(node, dict):
        return {k: v for name, value in node.items() for k, v in string_fields(value, f"{path}.{name}").items()}
    if isinstance(node, list):
        return {k: v for i, value in enumerate(node) for k, v in string_fields(value, f"{path}[{i}]").items()}
    return {path.lstrip("."): node} if isinstance(node, str) else {}


@pytest.fixture
def scram_roles(pg_cluster):
    """An admin and an application login role that only their scram-sha-256 password admits."""
    suffix = uuid.uuid4().hex[:10]
    roles = {key: (f"awx_{key}_{suffix}", secrets.token_urlsafe(24)) for key in ("admin", "app")}
    names = [pair[0] for pair in roles.values()]
    hba = pg_cluster.datadir / "pg_hba.conf"
    lines = "".join(f"host all {name} 127.0.0.1/32 scram-sha-256\n" for name in names)
    original = hba.read_text()
    for key, (name, password) in roles.items():
        kind = "SUPERUSER" if key == "admin" else "NOSUPERUSER"
        pg_cluster.query(f'CREATE ROLE "{name}" LOGIN {kind} PASSWORD %s', (password,))
    hba.write_text(lines + original)
    pg_cluster.query("SELECT pg_reload_conf()")
    try:
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(**pg_cluster.conn_params(user=roles["app"][0], password="wrong-password")).close()
        yield roles
    finally:
        hba.write_text(hba.read_text().replace(lines, "", 1))
        pg_cluster.query("SELECT pg_reload_conf()")
        for name in names:
            pg_cluster.query(f'DROP OWNED BY "{name}"')
            pg_cluster.query(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def site(tmp_path, pg_cluster, scram_roles, openbao, moto, s3_bucket, cert_factory, tls_peer):
    """What the AWX-style jobs of site.yml share: the inventory, the job's variables and the secrets they carry.

    `site["write_job"](ident, **extravars)` writes the private data dir of one job, as AWX does per launch.
    """
    admin, admin_password = scram_roles["admin"]
    database = pg_cluster.create_database(f"awx_{uuid.uuid4().hex[:10]}")
    pg_cluster.query(
        "CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, card_number text);"
        "INSERT INTO orders SELECT g, 'customer ' || g, NULL FROM generate_series(1, 3) g",
        dbname=database,
    )
    token = openbao.client().auth.token.create(policies=["root"], ttl="15m")["auth"]["client_token"]
    # moto accepts any key pair; fresh random ones make a leak of them detectable.
    access_key, secret_key = "AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    peer = tls_peer(cert_factory.leaf("localhost", days=TLS_DAYS))
    kv = f"awx/{uuid.uuid4().hex[:10]}"

    dirs = {name: tmp_path / name for name in ("metrics", "app", "repo", "backup", "backups", "dr", "drill-reports")}
    for path in dirs.values():
        path.mkdir()
    # The repository the scan reads: code and configuration without secrets.
    (dirs["repo"] / "app.py").write_text("import os\n\nDB_PASSWORD = os.environ['DB_PASSWORD']\n")
    (dirs["repo"] / "settings.ini").write_text("[server]\nport = 8080\nlog_level = info\n")

    # The steps that run target the controller; every other step's group is empty.
    groups = ["secrets", "databases", "web", "monitoring", "dr_restore_hosts", "log_hosts", "unselected"]
    inventory = {
        "all": {"children": groups},
        **{group: {"hosts": ["localhost"] if group in ("secrets", "databases") else []} for group in groups},
        "_meta": {
            "hostvars": {
                "localhost": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                    # The job runs as root on the controller; the plays' `become` would need sudo.
                    "ansible_become": False,
                }
            }
        },
    }
    pg = {"login_host": pg_cluster.host, "login_port": pg_cluster.port, "login_user": admin, "ssl_mode": "disable"}
    destinations = [
        {"type": "local", "path": str(dirs["backups"]), "retention": {"keep_last": 7}},
        {
            "type": "s3",
            "bucket": s3_bucket,
            "region": "eu-west-1",
            "prefix": "postgresql",
            "endpoint_url": moto.endpoint_url,
            "access_key": access_key,
            "secret_key": secret_key,
            "retention": {"keep_last": 7},
        },
    ]
    # The job's variables, secret-bearing ones included, as AWX writes them (survey answers, extra vars).
    base_extravars = {
        **dict.fromkeys(UNSELECTED_STEP_HOSTS, "unselected"),
        "log_forwarding_hosts": "unselected",
        "dr_drill_hosts": "unselected",
        "secrets_backend": {"backend": "vault", "vault_url": openbao.url, "vault_token": token},
        "secrets_rotations": [
            {"secret": f"{kv}/db", "target": "postgresql_password", "role": scram_roles["app"][0], **pg},
            {"secret": f"{kv}/webhook_hmac", "target": "hmac"},
        ],
        "secrets_metrics_dir": str(dirs["metrics"]),
        "secrets_consumers": [
            {
                "path": str(dirs["app"] / "app.env"),
                "owner": "root",
                "vars": {"DB_PASSWORD": f"{kv}/db", "WEBHOOK_HMAC_KEY": f"{kv}/webhook_hmac"},
                # The consumer's "reload": harmless, and it shows that the handler ran.
                "command": ["/usr/bin/touch", str(dirs["app"] / "reloaded")],
            }
        ],
        "secrets_scan_paths": [str(dirs["repo"])],
        "audit_databases": [{"database": database, "tables": ["orders"], "exclude_columns": ["card_number"]}],
        "audit_login_user": admin,
        "audit_become": False,
        "audit_login_unix_socket": str(pg_cluster.socket_dir),
        "audit_login_port": pg_cluster.port,
        "audit_metrics_dir": str(dirs["metrics"]),
        "audit_metrics_script_file": str(dirs["backup"] / "locksmith-audit-metrics"),
        # Everything the backup step writes goes under the test's tmp dir; apt installs nothing.
        "backup_install_enabled": False,
        "backup_databases": [database],
        "backup_destinations": destinations,
        **{f"backup_{key}": value for key, value in pg.items() if key != "ssl_mode"},
        "backup_python": sys.executable,
        "backup_runner_file": str(dirs["backup"] / "lib" / "pg_backup.pyz"),
        "backup_config_dir": str(dirs["backup"] / "etc"),
        "backup_log_dir": str(dirs["backup"] / "log"),
        "backup_metrics_dir": str(dirs["metrics"]),
        "backup_encryption_key_file": str(dirs["backup"] / "etc" / "encryption.key"),
        "tls_audit_endpoints": [{"host": "127.0.0.1", "port": peer.port, "server_name": "localhost"}],
        "tls_audit_ca_file": str(cert_factory.ca_file),
        "tls_audit_metrics_dir": str(dirs["metrics"]),
        "dr_restore_database": database,
        "dr_restore_destinations": destinations,
        "dr_restore_install_enabled": False,  # never apt on the test machine
        **{f"dr_restore_{key}": value for key, value in pg.items()},
        "dr_restore_pg_bin_dir": str(PG_BIN_DIR),
        "dr_restore_work_dir": str(dirs["dr"]),
        "dr_restore_report_dir": str(dirs["dr"] / "reports"),
        "dr_restore_safety_backup_dir": str(dirs["dr"] / "safety"),
        "dr_restore_metrics_dir": str(dirs["metrics"]),
        "dr_restore_assertions": [
            {"name": "orders", "sql": "SELECT count(*) FROM orders", "expected": 3, "compare": "ge"}
        ],
        "dr_drill_report_dir": str(dirs["drill-reports"]),
    }
    # A credential of a custom type with a file injector: AWX writes the file into the private data dir
    # and points an environment variable at it. libpq reads PGPASSFILE (host:port:db:user:password), so the
    # admin password reaches every step without being a variable of the job.
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{pg_cluster.host}:{pg_cluster.port}:*:{admin}:{admin_password}\n")
    passfile.chmod(0o600)
    envvars = {
        "ANSIBLE_COLLECTIONS_PATH": str(ensure_collection_path()),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        # What a site's ansible.cfg sets for speed: modules piped to the interpreter, minimal facts.
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_GATHER_SUBSET": "min",
        "PGPASSFILE": str(passfile),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), str(PG_BIN_DIR), os.environ["PATH"]]),
    }

    def write_job(ident: str, **extravars) -> Path:
        pdd = tmp_path / ident
        (pdd / "env").mkdir(parents=True)
        (pdd / "project").mkdir()
        (pdd / "project" / "playbooks").symlink_to(REPO / "playbooks")
        write_inventory_script(pdd / "inventory" / "hosts", inventory)
        (pdd / "env" / "extravars").write_text(json.dumps({**base_extravars, **extravars}))
        (pdd / "env" / "settings").write_text(
            json.dumps({"job_timeout": 600, "idle_timeout": 300, "pexpect_timeout": 5, "suppress_ansible_output": True})
        )
        shutil.copy(passfile, pdd / "env" / "pgpass")
        (pdd / "env" / "envvars").write_text(json.dumps({**envvars, "PGPASSFILE": str(pdd / "env" / "pgpass")}))
        return pdd

    yield {
        "write_job": write_job,
        "envvars": envvars,
        "secrets": {
            "OpenBao token": token,
            "PostgreSQL admin password": admin_password,
            "S3 secret key": secret_key,
        },
        "access_key": access_key,
        "app": scram_roles["app"],
        "kv": kv,
        "bucket": s3_bucket,
        "database": database,
        "dirs": dirs,
        "tls_port": peer.port,
    }
    pg_cluster.drop_database(database)


def run_job(pdd: Path, ident: str, tags: str) -> tuple:
    """One successful job: ansible_runner.run() on its private data dir; (events, stats, texts to search)."""
    import ansible_runner

    events, statuses = [], []
    started = time.monotonic()
    result = ansible_runner.run(
        private_data_dir=str(pdd),
        playbook=PLAYBOOK,
        tags=tags,
        skip_tags=SKIP_TAGS,
        ident=ident,
        event_handler=lambda event: events.append(event) or True,
        status_handler=lambda status, runner_config: statuses.append(status["status"]),
        quiet=True,
    )
    stdout = result.stdout.read()
    seconds = time.monotonic() - started
    assert result.status == "successful", stdout[-4000:]
    assert result.rc == 0
    assert statuses[0] == "starting" and statuses[-1] == "successful"
    # A hung job would hit job_timeout; this catches one that got several times slower.
    assert seconds < 90, f"{ident} took {seconds:.0f} s"
    # The command AWX records: site.yml with the job's tags and skip tags.
    command = " ".join(json.loads((pdd / "artifacts" / ident / "command").read_text())["command"])
    assert PLAYBOOK in command and tags in command and SKIP_TAGS in command, command
    # The job events on disk are the ones AWX's callback receiver would store.
    assert len(list((pdd / "artifacts" / ident / "job_events").glob("*.json"))) == len(events)
    (stats,) = [e for e in events if e["event"] == "playbook_on_stats"]
    data = stats["event_data"]
    assert sum(data["failures"].values()) == 0 and sum(data["dark"].values()) == 0, data
    # The skip tags kept the schedules (systemd units, cron files) out: not one of their tasks was even skipped.
    tasks = {e["event_data"].get("task") for e in events if e["event"].startswith("runner_on_")}
    assert tasks.isdisjoint(SCHEDULE_TASKS), sorted(tasks & SCHEDULE_TASKS)
    texts = {"stdout": stdout, "event_handler events": json.dumps(events), **artifact_texts(pdd)}
    return events, data, texts


def task_result(events: list[dict], task: str) -> dict:
    """The result of one task that ran once on the one host (a loop's result holds its items' in `results`)."""
    (result,) = [
        e["event_data"]["res"] for e in events if e["event"] == "runner_on_ok" and e["event_data"]["task"] == task
    ]
    return result


def plays_with_hosts(events: list[dict]) -> set[str]:
    return {e["event_data"]["play"] for e in events if e["event"] == "runner_on_ok"}


def changed_tasks(events: list[dict]) -> dict[str, str]:
    """{task: play} of every task whose visible result changed something."""
    return {
        e["event_data"]["task"]: e["event_data"]["play"]
        for e in events
        if e["event"] == "runner_on_ok" and e["event_data"]["res"].get("changed")
    }


def test_site_playbook_runs_as_awx_jobs_without_leaking_secrets(site, openbao, moto, pg_cluster):
    dirs, database = site["dirs"], site["database"]

    # Job 1: the site template with the job tags of the steps that can run here.
    events, stats, texts = run_job(site["write_job"]("awx-site-1"), "awx-site-1", JOB_TAGS)
    assert plays_with_hosts(events) == {SECRETS_PLAY, AUDIT_PLAY, BACKUP_PLAY, TLS_PLAY}
    assert stats["changed"]["localhost"] >= 8, stats

    # secrets: both rotations changed, the consumer's command ran, the scan found nothing.
    rotations = task_result(events, "Rotate each secret of secrets_rotations when due")["results"]
    assert [(item["secret"]["name"], item["changed"]) for item in rotations] == [
        (f"{site['kv']}/db", True),
        (f"{site['kv']}/webhook_hmac", True),
    ]
    # The env file task is no_log (its content holds the values): the event says only that it was censored.
    assert list(task_result(events, "Write each consumer's env file from the current secret values")) == ["censored"]
    assert task_result(events, "Run the command of each consumer whose env file changed")["changed"] is True
    scan = task_result(events, "Check secrets_scan_paths hold no leaked secret")
    assert scan["findings"] == [] and scan["files_scanned"] >= 2, scan

    # audit: the triggers were created on the table.
    (audit,) = task_result(events, "Keep the audit triggers and the audit schema of each database as listed")["results"]
    assert audit["changed"] is True and "public.orders" in audit["trigger"]["tables"], audit["trigger"]

    # backup: the runner and the job file are installed, the job reaches its database and both destinations.
    assert task_result(events, "Install the pg_backup runner")["changed"] is True
    (check,) = task_result(events, "Check each job can reach its database and destinations")["results"]
    assert check["failed"] is False and check["item"] == database, check
    (lifecycle,) = task_result(events, "Put the backup lifecycle rule on every S3 destination's bucket")["results"]
    assert lifecycle["changed"] is True

    # tls_audit: the endpoint is ok with the certificate's days left.
    (endpoint,) = task_result(events, "Check the TLS endpoints")["endpoints"]
    assert endpoint["status"] == "ok", endpoint
    assert endpoint["certificate"]["days_left"] in (TLS_DAYS - 1, TLS_DAYS), endpoint["certificate"]

    # Independent clients. The new database password works and the old one is refused.
    app, old_password = site["app"]
    db_secret = stored(openbao, f"{site['kv']}/db")
    new_password = db_secret["current"]["value"]["password"]
    assert new_password != old_password
    psycopg2.connect(**pg_cluster.conn_params(user=app, password=new_password)).close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(**pg_cluster.conn_params(user=app, password=old_password)).close()
    hmac_secret = stored(openbao, f"{site['kv']}/webhook_hmac")
    hmac_key = hmac_secret["current"]["value"]["key"]

    # The consumer's env file holds both new values, readable by its owner only, and its command ran.
    env_file, marker = dirs["app"] / "app.env", dirs["app"] / "reloaded"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#")
    assert env == {"DB_PASSWORD": new_password, "WEBHOOK_HMAC_KEY": hmac_key}
    marker_mtime = marker.stat().st_mtime_ns

    # The audit trigger logs a write, without the excluded column.
    pg_cluster.query("INSERT INTO orders VALUES (4, 'alice', '4111111111111111')", dbname=database)
    logged = pg_cluster.query("SELECT operation, new_data FROM audit.log WHERE table_name = 'orders'", dbname=database)
    assert [(op, data["customer"], "card_number" in data) for op, data in logged] == [("INSERT", "alice", False)]

    # The backup job file is private, and the bucket has the lifecycle rule.
    job_file = dirs["backup"] / "etc" / f"{database}.json"
    assert stat.S_IMODE(job_file.stat().st_mode) == 0o600
    rules = moto.client("s3").get_bucket_lifecycle_configuration(Bucket=site["bucket"])["Rules"]
    assert [(rule["ID"], rule["Status"], rule["Expiration"]["Days"]) for rule in rules] == [
        ("locksmith-backup-postgresql", "Enabled", 730)
    ]

    # The metrics: TLS expiry in TLS_DAYS days, both rotations, the audited database.
    metrics = {path.name: path.read_text() for path in dirs["metrics"].glob("*.prom")}
    (tls_metrics,) = [text for name, text in metrics.items() if name.startswith("locksmith_tls")]
    (not_after,) = [
        float(line.rsplit(" ", 1)[1])
        for line in tls_metrics.splitlines()
        if line.startswith("locksmith_tls_cert_not_after_timestamp_seconds{")
        and f'endpoint="127.0.0.1:{site["tls_port"]}"' in line
    ]
    assert TLS_DAYS - 1 < (not_after - time.time()) / 86400 <= TLS_DAYS
    assert len([name for name in metrics if name.startswith("locksmith_secret")]) == 2, sorted(metrics)
    assert any(name.startswith("locksmith_audit") for name in metrics), sorted(metrics)

    # The backup itself: the job file run as the timer (or an AWX schedule of backup.yml) runs it.
    env = {**os.environ, **site["envvars"]}
    runner = subprocess.run(
        [sys.executable, dirs["backup"] / "lib" / "pg_backup.pyz", job_file],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    backup = json.loads(runner.stdout)
    assert backup["changed"] is True and [copy["status"] for copy in backup["copies"]] == ["verified", "verified"]

    # Job 2: the rotation again (as its monthly schedule launches it) and the DR drill on the controller
    # (the drill's hosts are an extra var prompted on launch).
    events2, stats2, texts2 = run_job(
        # The steps left out this time target no host: their preflight tasks (tagged always) would run.
        site["write_job"](
            "awx-site-2", dr_drill_hosts="databases", audit_hosts="unselected", backup_hosts="unselected"
        ),
        "awx-site-2",
        "secrets,dr_drill",
    )
    assert plays_with_hosts(events2) == {SECRETS_PLAY, DR_PLAY}
    # A second rotation run changes nothing (nothing is due, the env file is as wanted); only the drill acts.
    changed = changed_tasks(events2)
    assert {task: play for task, play in changed.items() if play != DR_PLAY} == {}, changed
    assert stats2["changed"]["localhost"] == len(changed), (stats2, changed)
    rotations = task_result(events2, "Rotate each secret of secrets_rotations when due")["results"]
    assert [item["changed"] for item in rotations] == [False, False]
    assert marker.stat().st_mtime_ns == marker_mtime
    assert stored(openbao, f"{site['kv']}/db")["current"]["value"]["password"] == new_password

    # dr_drill: the newest backup restored into a scratch database, verified, within RTO and RPO; report fetched.
    report = task_result(events2, "Restore the backup and verify it")["report"]
    assert report["verified"] is True and report["passed"] is True, report
    assert report["database"] == database and 0 <= report["rpo_seconds"] < 120, report
    (fetched,) = (dirs["drill-reports"] / "localhost").glob("*.json")
    assert json.loads(fetched.read_text())["backup_id"] == report["backup_id"]
    scratch = pg_cluster.query("SELECT datname FROM pg_database WHERE datname LIKE 'drill%'")
    assert scratch == [], scratch

    secret_values = {
        **site["secrets"],
        "old database password": old_password,
        # Every stage's value stored (current, and pending or previous if any).
        **{f"rotated secret {k}": v for k, v in string_fields(db_secret).items() if k.endswith(".value.password")},
        **{f"rotated HMAC {k}": v for k, v in string_fields(hmac_secret).items() if k.endswith(".value.key")},
    }
    assert secret_values["rotated secret current.value.password"] == new_password
    assert secret_values["rotated HMAC current.value.key"] == hmac_key
    all_texts = {**texts, **{f"job 2 {where}": text for where, text in texts2.items()}}
    # The search reads what the jobs reported: the rotated secrets' names are there, their values are not.
    assert find_leaks({"rotated secret name": f"{site['kv']}/webhook_hmac"}, all_texts)
    assert find_leaks(secret_values, all_texts) == []

    # The access key ID is an identifier, not a secret (AWS prints it in consoles and logs), and
    # community.aws.s3_lifecycle returns it in its invocation args; our own modules must not show it either.
    ours = [
        e
        for e in events + events2
        if str(e.get("event_data", {}).get("resolved_action", "")).startswith("locksmith.ops.")
    ]
    assert len({e["event_data"]["resolved_action"] for e in ours}) >= 6, {
        e["event_data"]["resolved_action"] for e in ours
    }
    assert find_leaks({"S3 access key": site["access_key"]}, {"locksmith.ops events": json.dumps(ours)}) == []


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
