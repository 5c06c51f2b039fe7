"""Complete loss of the database VM (issue 5), on two podman hosts, by the procedure in
docs/runbooks/recovery-lost-vm.md.

Host A (a systemd container) gets PostgreSQL 15 through playbooks/postgresql_install.yml, an application
database with owners, grants, an extension and data, and an encrypted all-databases backup (roles and every
database) to S3 (the moto fixture). The controller is the restore host, as in docs/dr.md: pg_backup and the
dr_restore role run there and reach the containers' PostgreSQL over hostssl + scram-sha-256, so S3 is reached on
127.0.0.1 and the containers need no Python libraries beyond psycopg2. Host A is then destroyed. Host B is
started, installed by the same playbook (no roles listed by hand), and recovered with playbooks/dr_drill.yml in
recover mode of the all-databases backup with its confirmation: the roles come from the backup's globals, then
each database with its owner. The data (per-table row counts and an md5 of every row), the roles, the owners and
the grants on B must equal A's. The measured RTO (loss to verified restore, B's provisioning included) is
printed: run with `-s` to see it.

Select it with `pytest -m slow tests/integration/test_lost_vm.py`; it skips when podman cannot run
containers here. Most of its time is apt installing PostgreSQL in the two containers: about 20 s each on a
quiet machine, over 10 minutes each at load average 25 on 2 cores (27 minutes in all, docs/dr.md).
Containers are named lostvm-<a|b>-<hex> and removed at the end.
"""

from __future__ import annotations

import secrets
import subprocess
import time

import pytest

from tests.harness.ansible import REPO
from tests.harness.podman import PodmanHosts, ensure_image, podman_env, podman_unavailable

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PG_BIN = "/usr/lib/postgresql/15/bin"
KEY_HEX = "5c" * 32
CONFIRM = "I understand this overwrites all-databases"
TABLES = ("public.workflows", "public.tasks", "public.decision_logs")
SEED = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE workflows (id int PRIMARY KEY, name text NOT NULL, token text NOT NULL);
CREATE TABLE tasks (id int PRIMARY KEY, workflow_id int REFERENCES workflows (id), state text NOT NULL);
CREATE TABLE decision_logs (id bigserial PRIMARY KEY, task_id int, created_at timestamptz NOT NULL, note text);
INSERT INTO workflows SELECT g, 'workflow ' || g, encode(gen_random_bytes(8), 'hex') FROM generate_series(1, 1000) g;
INSERT INTO tasks SELECT g, 1 + g % 1000, (ARRAY['new', 'running', 'done'])[1 + g % 3]
  FROM generate_series(1, 20000) g;
INSERT INTO decision_logs (task_id, created_at, note)
  SELECT 1 + g % 20000, now() - g * interval '1 minute', md5(g::text) FROM generate_series(1, 5000) g;
ALTER TABLE workflows OWNER TO app_owner;
ALTER TABLE tasks OWNER TO app_owner;
ALTER TABLE decision_logs OWNER TO app_owner;
GRANT SELECT ON workflows, tasks, decision_logs TO app_reader;
ANALYZE;
"""


def connect(address, password, dbname="postgres"):
    import psycopg2

    return psycopg2.connect(
        host=address, user="postgres", password=password, dbname=dbname, sslmode="require", connect_timeout=5
    )


def query(address, password, sql, dbname="postgres", autocommit=False):
    conn = connect(address, password, dbname)
    conn.autocommit = autocommit
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall() if cur.description else []
        if not autocommit:
            conn.commit()
        return rows
    finally:
        conn.close()


def snapshot(address, password):
    """What must survive the loss: roles, database owner, table owners, grants, extensions, rows."""
    roles = query(
        address,
        password,
        "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> 'postgres' ORDER BY 1",
    )
    owner = query(
        address, password, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'", dbname="app"
    )
    from psycopg2 import sql

    tables = {}
    for table in TABLES:
        schema, name = table.split(".")
        statement = sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')), "
            "pg_get_userbyid((SELECT relowner FROM pg_class WHERE oid = {qualified}::regclass)), "
            "has_table_privilege('app_reader', {qualified}, 'SELECT') FROM {table} t"
        ).format(qualified=sql.Literal(table), table=sql.Identifier(schema, name))
        tables[table] = query(address, password, statement, dbname="app")[0]
    extensions = query(address, password, "SELECT extname FROM pg_extension ORDER BY 1", dbname="app")
    return {"roles": roles, "database_owner": owner, "tables": tables, "extensions": extensions}


def step(message):
    """Progress on stdout (seen with -s): on a loaded machine the steps take minutes."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def playbook(name, inventory, extra_vars, env):
    from tests.harness.ansible import run_playbook

    run = run_playbook(REPO / "playbooks" / name, inventory=inventory, extra_vars=extra_vars, env=env)
    assert run.rc == 0, f"{name} rc={run.rc}\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    return run


def install(host, hosts_file, password, env):
    """playbooks/postgresql_install.yml on one container, admin access from the controller only."""
    return playbook(
        "postgresql_install.yml",
        hosts_file,
        {
            "postgresql_install_hosts": host["name"],
            "postgresql_install_listen_addresses": f"localhost, {host['address']}",
            "postgresql_install_admin_cidrs": [f"{host['gateway']}/32"],
            "postgresql_install_admin_password": password,
        },
        env,
    )


@pytest.fixture(scope="module")
def lost_vm(moto, tmp_path_factory):
    reason = podman_unavailable()
    if reason:
        pytest.skip(reason)
    ensure_image()
    tmp = tmp_path_factory.mktemp("lostvm")
    bucket = f"lostvm-{secrets.token_hex(6)}"
    moto.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    destination = dict(
        type="s3", bucket=bucket, prefix="pg", region="eu-west-1", endpoint_url=moto.endpoint_url,
        access_key="testing", secret_key="testing",
    )  # fmt: skip
    password = secrets.token_urlsafe(18)
    env = {**moto.env(), "CONTAINERS_CONF": podman_env()["CONTAINERS_CONF"]}
    hosts = PodmanHosts("lostvm")
    timings = {}
    try:
        # Host A: installed by the playbook, filled by the application, backed up to S3.
        step("start host A")
        host_a = hosts.start("a")
        inventory_a = PodmanHosts.inventory(tmp / "a.ini", {"databases": [host_a["name"]]})
        install(host_a, inventory_a, password, env)
        step("host A installed; seed and back up")
        query(host_a["address"], password, "CREATE ROLE app_owner NOLOGIN; CREATE ROLE app_reader LOGIN")
        query(host_a["address"], password, "CREATE DATABASE app OWNER app_owner", autocommit=True)
        query(host_a["address"], password, SEED, dbname="app")
        before = snapshot(host_a["address"], password)
        from tests.harness.ansible import run_task

        backed_up = run_task(
            "locksmith.ops.pg_backup",
            {
                "all_databases": True,
                "destinations": [destination],
                "login_host": host_a["address"],
                "login_password": password,
                "ssl_mode": "require",
                "pg_bin_dir": PG_BIN,
                "encryption_key": KEY_HEX,
                "exact_row_counts": True,
                "min_interval_seconds": 0,
            },
            env=env,
        )
        assert backed_up.get("changed") is True and not backed_up.get("failed"), backed_up

        # The VM is lost: nothing of host A survives but the backup in S3.
        hosts.remove(host_a["name"])
        assert (
            subprocess.run(["podman", "container", "exists", host_a["name"]], env=podman_env(), check=False).returncode
            == 1
        )
        lost_at = time.monotonic()
        step("host A destroyed; start host B")

        # Host B: a new VM with PostgreSQL installed and nothing else; the backup brings the roles.
        host_b = hosts.start("b")
        timings["new VM running"] = time.monotonic() - lost_at
        inventory_b = PodmanHosts.inventory(
            tmp / "b.ini", {"databases": [host_b["name"]], "dr_restore_hosts": ["localhost"]}
        )
        install(host_b, inventory_b, password, env)
        timings["PostgreSQL installed"] = time.monotonic() - lost_at
        step("host B installed; recover")
        recovered = playbook(
            "dr_drill.yml",
            inventory_b,
            {
                "dr_drill_databases": ["all-databases"],
                "dr_restore_mode": "recover",
                "dr_restore_confirm": CONFIRM,
                "dr_restore_destinations": [destination],
                "dr_restore_encryption_key": KEY_HEX,
                "dr_restore_login_host": host_b["address"],
                "dr_restore_login_password": password,
                "dr_restore_ssl_mode": "require",
                "dr_restore_pg_bin_dir": PG_BIN,
                "dr_restore_work_dir": str(tmp),
                "dr_restore_report_dir": str(tmp / "reports"),
                "dr_restore_safety_backup_dir": str(tmp / "safety"),
                "dr_restore_metrics_enabled": False,
                "dr_restore_fetch_dir": str(tmp / "fetched"),
                "dr_restore_assertions": [
                    {
                        "name": "workflows",
                        "database": "app",
                        "sql": "SELECT count(*) FROM workflows",
                        "expected": 1000,
                        "compare": "ge",
                    }
                ],
            },
            env,
        )
        timings["database restored and verified"] = time.monotonic() - lost_at
        # Roles, database owners and grants came with the backup: nothing is left to do by hand.
        timings["RTO (loss to recovered database)"] = time.monotonic() - lost_at
        after = snapshot(host_b["address"], password)
        report = recovered.result("locksmith.ops.dr_restore : Restore the backup and verify it")["report"]
        print("\nlost VM recovery, seconds after host A was destroyed:")
        for name, seconds in timings.items():
            print(f"  {name:<36} {seconds:7.1f}")
        print(f"  dr_restore report: RTO {report['rto_seconds']} s, phases {report['phases']}")
        yield {
            "before": before,
            "after": after,
            "report": report,
            "timings": timings,
            "host_b": host_b,
            "inventory_b": inventory_b,
            "env": env,
            "password": password,
            "hosts": hosts,
        }
    finally:
        hosts.remove_all()


def test_lost_vm_recovered_with_same_data_roles_and_grants(lost_vm):
    before, after = lost_vm["before"], lost_vm["after"]
    assert before["tables"]["public.tasks"][0] == 20000
    assert after["tables"] == before["tables"]
    assert after["roles"] == before["roles"] == [("app_owner", False), ("app_reader", True)]
    assert after["database_owner"] == before["database_owner"] == [("app_owner",)]
    assert after["extensions"] == before["extensions"]
    report = lost_vm["report"]
    assert report["verified"] and report["mode"] == "recover" and report["database"] == "all-databases"
    assert "app" in report["target_database"].split(", ")
    assert {"app_owner", "app_reader"} <= set(report["globals"]["roles_created"])
    counted = {c["subject"]: c["actual"] for c in report["checks"] if c["check"] == "row_count"}
    assert counted == {"app:" + table: before["tables"][table][0] for table in TABLES}
    assert {c["subject"] for c in report["checks"] if c["check"] == "role"} >= {"app_owner", "app_reader"}
    assert lost_vm["timings"]["RTO (loss to recovered database)"] < 1800


def test_recover_service_restarts_a_stopped_cluster_and_leaves_a_healthy_one(lost_vm):
    from tests.harness.ansible import run_playbook

    host, env = lost_vm["host_b"], lost_vm["env"]
    extra = {"recover_service_hosts": host["name"]}
    subprocess.run(
        ["podman", "exec", host["name"], "systemctl", "stop", "postgresql@15-main.service"],
        env=podman_env(), check=True, capture_output=True,
    )  # fmt: skip
    path = REPO / "playbooks/recover_service.yml"
    predicted = run_playbook(path, inventory=lost_vm["inventory_b"], extra_vars=extra, env=env, check=True)
    assert predicted.rc == 0 and predicted.changed(host["name"]) == 1, predicted.stdout[-3000:]
    restarted = run_playbook(path, inventory=lost_vm["inventory_b"], extra_vars=extra, env=env)
    assert restarted.rc == 0, restarted.stdout[-3000:]
    report = restarted.result("Record the outcome as the fact recover_service_report", host["name"])
    outcome = report["ansible_facts"]["recover_service_report"]
    assert outcome["was_ready"] is False and outcome["restarted"] is True and outcome["ready"] is True
    print(f"\nrecover_service.yml: PostgreSQL back in {outcome['seconds']} s (MTTR of the playbook)")
    assert query(host["address"], lost_vm["password"], "SELECT count(*) FROM workflows", dbname="app") == [(1000,)]
    again = run_playbook(path, inventory=lost_vm["inventory_b"], extra_vars=extra, env=env)
    assert again.rc == 0 and again.changed(host["name"]) == 0, again.stdout[-3000:]
    healthy = again.result("Record the outcome as the fact recover_service_report", host["name"])
    assert healthy["ansible_facts"]["recover_service_report"]["restarted"] is False
