"""pg_backup_restore of an all-databases backup between two real PostgreSQL 15 clusters.

Cluster A holds two databases with different owners and encodings, roles with attributes, a password, a
membership, table and database grants, database settings and an extension. Its all-databases backup is
restored onto the empty cluster B (recover), drilled on B (everything created is dropped again) and on A
(nothing created), and refused when the targets hold data or the manifest was altered.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil

import pytest

from tests.harness.ansible import run_module_inprocess
from tests.harness.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

ROLES_SQL = [
    "CREATE ROLE app_owner NOLOGIN",
    "CREATE ROLE billing_owner LOGIN CREATEDB CONNECTION LIMIT 5 PASSWORD 'billing-secret-1'",
    "CREATE ROLE reader LOGIN VALID UNTIL '2031-01-01 00:00:00+00'",
    'CREATE ROLE "ops admin" NOLOGIN',
    'GRANT app_owner TO "ops admin"',
    "ALTER ROLE reader SET statement_timeout TO '5s'",
    "COMMENT ON ROLE reader IS 'read-only reports'",
    "COMMENT ON ROLE postgres IS 'bootstrap of cluster A'",
    "CREATE DATABASE app OWNER app_owner",
    "CREATE DATABASE billing OWNER billing_owner TEMPLATE template0 ENCODING 'SQL_ASCII' LOCALE 'C'",
    "ALTER DATABASE app SET work_mem TO '8MB'",
    # A custom setting holding a secret (PostgREST's pattern): restored, never shown.
    """ALTER DATABASE app SET "app.jwt_secret" TO 'jwt-secret-xyz'""",
    "GRANT CONNECT ON DATABASE billing TO reader",
]
APP_SQL = (
    "CREATE EXTENSION pgcrypto; CREATE SCHEMA sales AUTHORIZATION app_owner; "
    "CREATE TABLE public.users (id int PRIMARY KEY, name text); ALTER TABLE public.users OWNER TO app_owner; "
    "CREATE TABLE sales.orders (id int, user_id int, total numeric); ALTER TABLE sales.orders OWNER TO app_owner; "
    "INSERT INTO public.users SELECT g, 'user ' || g FROM generate_series(1, 1500) g; "
    "INSERT INTO sales.orders SELECT g, g % 100, g * 1.5 FROM generate_series(1, 2500) g; "
    "GRANT SELECT ON public.users TO reader; "
    # A name PostgreSQL allows that the rule for user-given identifiers does not: counted, not refused.
    'CREATE TABLE public."order-items" (id int); ALTER TABLE public."order-items" OWNER TO app_owner; '
    'INSERT INTO public."order-items" SELECT generate_series(1, 30); ANALYZE'
)
BILLING_SQL = (
    "CREATE TABLE invoices (id int PRIMARY KEY, amount numeric); ALTER TABLE invoices OWNER TO billing_owner; "
    "INSERT INTO invoices SELECT g, g FROM generate_series(1, 700) g; GRANT SELECT ON invoices TO reader; ANALYZE"
)
CONFIRM = "I understand this overwrites all-databases"
APP_ROLES = ["app_owner", "billing_owner", "ops admin", "reader"]


def conn(cluster):
    return {"login_host": cluster.host, "login_port": cluster.port, "ssl_mode": "disable", "connect_timeout": 3}


def restore(cluster, destination, check=False, **extra):
    args = dict(conn(cluster), database="all-databases", destinations=[destination], **extra)
    return run_module_inprocess("pg_backup_restore", args, check=check, diff=True)


def snapshot(cluster, databases=("app", "billing")):
    """Everything an independent client sees of the restored state."""
    roles = cluster.query(
        "SELECT r.rolname, r.rolsuper, r.rolcanlogin, r.rolcreatedb, r.rolconnlimit, r.rolvaliduntil, "
        "a.rolpassword, r.rolconfig, shobj_description(r.oid, 'pg_authid') FROM pg_roles r "
        "JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname !~ '^pg_' ORDER BY 1"
    )
    members = cluster.query(
        "SELECT r.rolname, m.rolname FROM pg_auth_members x JOIN pg_roles r ON r.oid = x.roleid "
        "JOIN pg_roles m ON m.oid = x.member ORDER BY 1, 2"
    )
    dbs = cluster.query(
        "SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, "
        "d.datacl::text, s.setconfig FROM pg_database d LEFT JOIN pg_db_role_setting s "
        "ON s.setdatabase = d.oid AND s.setrole = 0 WHERE d.datname = ANY(%s) ORDER BY 1",
        (list(databases),),
    )
    tables = {}
    for db in databases:
        tables[db] = cluster.query(
            "SELECT n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner), c.relacl::text "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname IN ('public', 'sales') ORDER BY 1",
            dbname=db,
        )
        tables[db].append(cluster.query("SELECT array_agg(extname ORDER BY extname) FROM pg_extension", dbname=db)[0])
    counts = {
        "app.users": cluster.query("SELECT count(*) FROM public.users", dbname="app")[0][0],
        "app.orders": cluster.query("SELECT count(*), sum(total) FROM sales.orders", dbname="app")[0],
        "billing.invoices": cluster.query("SELECT count(*), sum(amount) FROM invoices", dbname="billing")[0],
    }
    return {"roles": roles, "members": members, "databases": dbs, "tables": tables, "counts": counts}


def all_databases(cluster):
    return sorted(r[0] for r in cluster.query("SELECT datname FROM pg_database"))


def all_roles(cluster):
    return sorted(r[0] for r in cluster.query("SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'"))


@pytest.fixture(scope="module")
def clusters():
    source, target = PostgresCluster().start(), PostgresCluster().start()
    try:
        yield source, target
    finally:
        source.stop()
        target.stop()


@pytest.fixture(scope="module")
def backed_up(clusters, tmp_path_factory):
    """Cluster A seeded and backed up (all databases, exact row counts) into a local destination."""
    source = clusters[0]
    for statement in ROLES_SQL:
        source.query(statement)
    source.query(APP_SQL, dbname="app")
    source.query(BILLING_SQL, dbname="billing")
    root = tmp_path_factory.mktemp("all-db-backups")
    destination = {"type": "local", "path": str(root)}
    result = run_module_inprocess(
        "pg_backup",
        dict(
            conn(source), all_databases=True, destinations=[destination], min_interval_seconds=0, exact_row_counts=True
        ),
    )
    assert result.get("changed") is True and not result.get("failed"), result
    assert result["backup"]["globals"] is True and set(result["backup"]["databases"]) >= {"app", "billing", "postgres"}
    return {"destination": destination, "manifest": result["backup"], "root": root}


def test_drill_on_an_empty_cluster_creates_then_drops_everything(clusters, backed_up, tmp_path):
    target = clusters[1]
    dbs, roles = all_databases(target), all_roles(target)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    users = {"name": "users", "database": "app", "sql": "SELECT count(*) FROM users", "expected": 1500}
    result = restore(
        target,
        backed_up["destination"],
        mode="drill",
        databases=["app", "billing"],
        metrics_dir=str(metrics),
        assertions=[users],
    )
    # Everything it created is gone again, so the drill reports no change (a converged site stays at 0).
    assert result.get("changed") is False and not result.get("failed"), result.get("msg")
    report = result["report"]
    assert report["verified"] and report["mode"] == "drill" and report["database"] == "all-databases"
    assert sorted(report["globals"]["roles_created"]) == APP_ROLES
    # A drill's roles cannot log in and carry no production password.
    assert report["globals"]["passwords_restored"] == []
    created = [q for q in result["executed_queries"] if q.startswith("CREATE ROLE")]
    assert len(created) == 4 and all("NOLOGIN" in q and "PASSWORD" not in q for q in created), created
    assert not any(" LOGIN" in q for q in created)
    counts = {c["subject"]: c["actual"] for c in report["checks"] if c["check"] == "row_count"}
    assert counts == {
        "app:public.order-items": 30,
        "app:public.users": 1500,
        "app:sales.orders": 2500,
        "billing:public.invoices": 700,
    }
    assert {c["subject"] for c in report["checks"] if c["check"] == "assertion" and c["ok"]} == {"app:users"}
    assert [(c["subject"], c["ok"]) for c in report["checks"] if c["check"] == "extension"] == [("app:pgcrypto", True)]
    assert all(d["target_database"].startswith("drill_") for d in report["databases"])
    # The drill leaves the restore server as it found it.
    assert all_databases(target) == dbs and all_roles(target) == roles
    assert report["cleanup"]["roles_dropped"]
    assert (metrics / "locksmith_drill_all-databases.prom").read_text().count("locksmith_drill_last_status") >= 1


def test_check_mode_predicts_roles_and_databases_and_changes_nothing(clusters, backed_up):
    target = clusters[1]
    before = (all_databases(target), all_roles(target))
    result = restore(target, backed_up["destination"], check=True, mode="recover", confirm=CONFIRM)
    assert result.get("changed") is True and not result.get("failed"), result.get("msg")
    plan = result["restore"]
    assert sorted(plan["globals"]["roles_created"]) == APP_ROLES
    assert plan["globals"]["roles_existing"] == ["postgres"]
    assert plan["globals"]["passwords_restored"] == ["billing_owner"]
    assert plan["globals"]["memberships_granted"] == ["app_owner TO ops admin"]
    actions = {d["database"]: d["action"] for d in plan["databases"]}
    assert actions == {"app": "create", "billing": "create", "postgres": "replace"}
    assert result["diff"]["after"]["databases"] == {"app": True, "billing": True, "postgres": True}
    assert "report" not in result and (all_databases(target), all_roles(target)) == before


def test_recover_needs_the_confirmation_naming_what_is_overwritten(clusters, backed_up):
    target = clusters[1]
    result = restore(target, backed_up["destination"], mode="recover", confirm="I understand this overwrites app")
    assert result["failed"] and "I understand this overwrites all-databases" in result["msg"]
    restricted = restore(
        target, backed_up["destination"], check=True, mode="recover", databases=["billing", "app"], confirm=CONFIRM
    )
    assert restricted["failed"] and "'I understand this overwrites billing, app'" in restricted["msg"]
    assert "app" not in all_databases(target)


def test_recover_onto_the_empty_cluster_gives_the_same_roles_owners_grants_and_rows(clusters, backed_up, ansible):
    source, target = clusters
    run = ansible.run_task(
        "locksmith.ops.pg_backup_restore",
        dict(
            conn(target),
            database="all-databases",
            destinations=[backed_up["destination"]],
            mode="recover",
            confirm=CONFIRM,
            jobs=2,
        ),
    )
    assert run.get("changed") is True and not run.get("failed"), run.get("msg")
    report = run["report"]
    assert report["verified"] and report["target_fate"] == "restored"
    assert sorted(report["globals"]["roles_created"]) == APP_ROLES
    assert {d["database"]: (d["owner"], d["encoding"]) for d in report["databases"]} == {
        "app": ("app_owner", "UTF8"),
        "billing": ("billing_owner", "SQL_ASCII"),
        "postgres": ("postgres", "UTF8"),
    }
    # The password hash is restored but never shown.
    assert "billing-secret" not in json.dumps(run) and "SCRAM-SHA-256" not in json.dumps(run)
    assert any("'<redacted>'" in q for q in run["executed_queries"])
    assert "jwt-secret-xyz" not in json.dumps(run)
    assert """ALTER DATABASE "app" SET "app.jwt_secret" TO '<redacted>'""" in run["executed_queries"]
    assert """ALTER DATABASE "app" SET "work_mem" TO '8MB'""" in run["executed_queries"]
    assert {"check": "row_count", "subject": "app:public.order-items", "expected": 30, "actual": 30} in [
        {k: c[k] for k in ("check", "subject", "expected", "actual")} for c in report["checks"]
    ]
    before, after = snapshot(source), snapshot(target)
    postgres_a = [r for r in before["roles"] if r[0] == "postgres"]
    postgres_b = [r for r in after["roles"] if r[0] == "postgres"]
    before["roles"] = [r for r in before["roles"] if r[0] != "postgres"]
    after["roles"] = [r for r in after["roles"] if r[0] != "postgres"]
    assert len(after["roles"]) == len(APP_ROLES)
    assert after == before
    # The bootstrap superuser of B is left as it was: A's comment on it did not travel.
    assert postgres_a[0][-1] == "bootstrap of cluster A" and postgres_b[0][-1] is None
    assert target.query("SELECT has_database_privilege('reader', 'billing', 'CONNECT')") == [(True,)]


def test_a_recover_that_fails_after_creating_a_database_says_incomplete_and_changed(backed_up):
    # Without the globals, billing's owner is missing on a fresh cluster: pg_restore stops at its ALTER ... OWNER
    # after the database was created.
    fresh = PostgresCluster().start()
    try:
        result = restore(
            fresh,
            backed_up["destination"],
            mode="recover",
            databases=["billing"],
            restore_globals=False,
            confirm="I understand this overwrites billing",
        )
        assert result["failed"] and result["changed"] is True, result
        assert result["report"]["target_fate"].startswith("incomplete: the recover stopped after"), result["report"]
        assert "billing" in all_databases(fresh)
    finally:
        fresh.stop()


def test_second_recover_is_refused_because_the_targets_hold_data(clusters, backed_up):
    target = clusters[1]
    before = snapshot(target)
    for check in (True, False):
        result = restore(target, backed_up["destination"], check=check, mode="recover", confirm=CONFIRM)
        assert result["failed"] and "allow_nonempty" in result["msg"], result
        assert "app, billing" in result["msg"]
    assert snapshot(target) == before


def test_recover_of_one_database_over_data_takes_a_safety_backup(clusters, backed_up, tmp_path):
    target = clusters[1]
    target.query("DELETE FROM invoices WHERE id > 100", dbname="billing")
    result = restore(
        target,
        backed_up["destination"],
        mode="recover",
        databases=["billing"],
        allow_nonempty=True,
        confirm="I understand this overwrites billing",
        safety_backup_dir=str(tmp_path / "safety"),
    )
    assert result.get("changed") is True and not result.get("failed"), result.get("msg")
    assert [s["database"] for s in result["safety_backups"]] == ["billing"]
    assert (tmp_path / "safety" / "billing").is_dir()
    assert result["report"]["globals"]["roles_created"] == []
    assert target.query("SELECT count(*) FROM invoices", dbname="billing") == [(700,)]


def test_drill_on_the_source_cluster_creates_no_role(clusters, backed_up):
    source = clusters[0]
    dbs, roles = all_databases(source), all_roles(source)
    result = restore(source, backed_up["destination"], mode="drill", databases=["app"])
    assert result.get("changed") is False and not result.get("failed"), result.get("msg")
    assert result["report"]["globals"]["roles_created"] == []
    assert sorted(result["report"]["globals"]["roles_existing"]) == sorted([*APP_ROLES, "postgres"])
    assert all_databases(source) == dbs and all_roles(source) == roles


def _altered_copy(backed_up, tmp_path, change):
    root = tmp_path / "altered"
    shutil.copytree(backed_up["root"], root)
    (manifest_path,) = root.glob("all-databases/*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    change(manifest)
    manifest_path.write_text(json.dumps(manifest))
    return {"type": "local", "path": str(root)}


def _altered_globals(backed_up, tmp_path, change):
    """A copy of the backup whose globals dump is ``change(text)``, its manifest entry made to match."""
    import zstandard

    def rewrite(manifest):
        artefact = next(a for a in manifest["artefacts"] if a["kind"] == "globals")
        assert artefact["name"] == "globals.sql.zst", artefact
        (path,) = (tmp_path / "altered").glob("all-databases/*/globals.sql.zst")
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(path.read_bytes()), read_across_frames=True)
        data = zstandard.ZstdCompressor().compress(change(reader.read().decode("utf-8")).encode("utf-8"))
        path.write_bytes(data)
        artefact.update(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    return _altered_copy(backed_up, tmp_path, rewrite)


def test_memberships_dumped_by_postgresql_16_are_granted_on_15_without_widening_them(backed_up, tmp_path):
    # The backup module may read a 16 or 17 server; only 15 is installed here, so its GRANT forms are written in.
    def to_16(text):
        line = re.search(r'^GRANT app_owner TO "ops admin" GRANTED BY postgres;$', text, re.M)
        assert line, text
        return text.replace(
            line.group(0),
            'GRANT app_owner TO "ops admin" WITH ADMIN OPTION, INHERIT TRUE GRANTED BY postgres;\n'
            "GRANT billing_owner TO reader WITH INHERIT TRUE GRANTED BY postgres;\n"
            "GRANT app_owner TO reader WITH INHERIT FALSE GRANTED BY postgres;\n"
            "GRANT reader TO billing_owner WITH INHERIT TRUE, SET FALSE GRANTED BY postgres;",
        )

    fresh = PostgresCluster().start()
    try:
        result = restore(
            fresh,
            _altered_globals(backed_up, tmp_path, to_16),
            mode="recover",
            databases=["billing"],
            confirm="I understand this overwrites billing",
        )
        assert result.get("changed") is True and not result.get("failed"), result.get("msg")
        done = result["report"]["globals"]
        assert done["skipped_statements"] == [] and done["memberships_granted"] == [
            "app_owner TO ops admin",
            "billing_owner TO reader",
        ]
        # A 15 server cannot limit one membership: granted, these would pass on more than the backup's did.
        assert done["memberships_skipped"] == [
            "app_owner TO reader (WITH INHERIT FALSE: not kept by PostgreSQL 15, not granted)",
            "reader TO billing_owner (WITH SET FALSE: not kept by PostgreSQL 15, not granted)",
        ]
        assert json.dumps(result["warnings"]).count("cannot keep: it was not granted") == 2, result["warnings"]
        members = fresh.query(
            "SELECT r.rolname, m.rolname, x.admin_option FROM pg_auth_members x JOIN pg_roles r ON r.oid = x.roleid "
            "JOIN pg_roles m ON m.oid = x.member WHERE r.rolname !~ '^pg_' ORDER BY 1, 2"
        )
        assert members == [("app_owner", "ops admin", True), ("billing_owner", "reader", False)]
    finally:
        fresh.stop()


def test_a_refused_create_role_shows_its_password_hash_nowhere(backed_up, tmp_path):
    # The server's error text quotes the statement as run (LINE 1: ... PASSWORD 'SCRAM-SHA-256$4...).
    secret = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5c3RvcmVka2V5:c2VydmVya2V5c2VydmVya2V5"

    def conflicting(text):
        assert "\nCREATE ROLE reader;\n" in text, text
        return text.replace(
            "CREATE ROLE reader;",
            "CREATE ROLE reader;\nCREATE ROLE x;\nALTER ROLE x WITH LOGIN NOLOGIN PASSWORD '%s';" % secret,
        )

    reports = tmp_path / "reports"
    reports.mkdir()
    fresh = PostgresCluster().start()
    try:
        result = restore(
            fresh,
            _altered_globals(backed_up, tmp_path, conflicting),
            mode="recover",
            databases=["billing"],
            confirm="I understand this overwrites billing",
            report_dir=str(reports),
        )
        assert result["failed"] and "creating role 'x' failed: conflicting or redundant options" in result["msg"]
        assert "PASSWORD '<redacted>'" in result["msg"]
        files = [path.read_text() for path in reports.iterdir()]
        assert len(files) == 2 and all("creating role 'x' failed" in text for text in files), files
        for text in [json.dumps(result), *files]:
            assert secret not in text and "SCRAM-SHA-256" not in text
        assert "x" not in all_roles(fresh)
    finally:
        fresh.stop()


@pytest.mark.parametrize(
    "payload",
    ['app"; DROP DATABASE postgres; --', "public'; DROP TABLE users; --"],
)
def test_a_manifest_with_an_injection_payload_is_refused(clusters, backed_up, tmp_path, payload):
    target = clusters[1]

    def change(manifest):
        manifest["databases"].append(payload)
        manifest["artefacts"].append(dict(manifest["artefacts"][-1], database=payload))

    destination = _altered_copy(backed_up, tmp_path, change)
    before = all_databases(target)
    for check in (True, False):
        result = restore(target, destination, check=check, mode="drill")
        assert result["failed"] and repr(payload) in result["msg"] and "was altered" in result["msg"], result
    assert all_databases(target) == before


def test_a_manifest_artefact_path_outside_the_backup_is_refused(clusters, backed_up, tmp_path):
    target = clusters[1]

    def change(manifest):
        manifest["artefacts"][-1]["plain_name"] = "../../../etc/passwd"

    result = restore(target, _altered_copy(backed_up, tmp_path, change), mode="drill")
    assert (
        result["failed"] and "'../../../etc/passwd'" in result["msg"] and "not a plain relative name" in result["msg"]
    )


def test_options_that_do_not_apply_to_all_databases_are_refused(clusters, backed_up):
    target = clusters[1]
    cases = [
        (dict(mode="tables", tables=["public.users"]), "mode=tables restores within one database"),
        (dict(target_database="x"), "target_database does not apply"),
        (dict(assertions=[{"name": "n", "sql": "SELECT 1", "expected": 1}]), "assertions\\[0\\] 'n' has no database"),
        (dict(databases=["nope"]), "databases nope are not in backup"),
        (dict(assertions=[{"name": "n", "sql": "SELECT 1", "expected": 1, "database": "zz"}]), "does not restore"),
    ]
    import re

    for extra, message in cases:
        result = restore(target, backed_up["destination"], check=True, **extra)
        assert result["failed"] and re.search(message, result["msg"]), (extra, result["msg"])


def test_role_drills_an_all_databases_backup_and_its_preflight_wants_the_named_confirmation(
    clusters, backed_up, ansible, tmp_path
):
    source = clusters[0]
    before = all_databases(source)
    role_vars = {
        "dr_restore_database": "all-databases",
        "dr_restore_databases": ["billing"],
        "dr_restore_login_host": source.host,
        "dr_restore_login_port": source.port,
        "dr_restore_ssl_mode": "disable",
        "dr_restore_destinations": [backed_up["destination"]],
        "dr_restore_install_enabled": False,  # never apt on the test machine
        "dr_restore_report_dir": str(tmp_path),
        "dr_restore_metrics_enabled": False,
        "dr_restore_work_dir": str(tmp_path),
        "dr_restore_assertions": [
            {"name": "invoices", "database": "billing", "sql": "SELECT count(*) FROM invoices", "expected": 700}
        ],
    }
    play = {"hosts": "localhost", "gather_facts": False, "roles": [{"role": "dr_restore", "vars": role_vars}]}
    run = ansible.run_playbook([play])
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    report = run.result("dr_restore : Restore the backup and verify it")["report"]
    assert report["passed"] and [d["database"] for d in report["databases"]] == ["billing"]
    assert list(tmp_path.glob("all-databases-drill-*.json")) and all_databases(source) == before

    wrong = dict(role_vars, dr_restore_mode="recover", dr_restore_confirm=CONFIRM)
    refused = ansible.run_playbook([dict(play, roles=[{"role": "dr_restore", "vars": wrong}])])
    assert refused.rc != 0
    assert "I understand this overwrites billing" in json.dumps(refused.data), refused.stdout[-2000:]
    assert all_databases(source) == before
