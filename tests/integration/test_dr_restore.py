"""pg_backup_restore and the dr_restore role against a real PostgreSQL 15 and a moto S3 server."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.harness.ansible import run_module_inprocess

pytestmark = pytest.mark.postgres

KEY_HEX = "7a" * 32


def conn(cluster):
    return {"login_host": cluster.host, "login_port": cluster.port, "ssl_mode": "disable", "connect_timeout": 3}


def pitr_args(cluster, conf, **changes):
    """mode=pitr of the archived cluster's stanza onto a free port; ``changes`` override."""
    from tests.harness.process import free_port

    values = dict(
        conn(cluster),
        database="app",
        destinations=[],
        mode="pitr",
        pgbackrest_stanza="pitr",
        pgbackrest_config=str(conf),
        pitr_port=free_port(),
    )
    values.update(changes)
    return values


def local(path):
    return {"type": "local", "path": str(path)}


def s3(moto, bucket):
    return dict(
        type="s3",
        bucket=bucket,
        prefix="pg",
        region="eu-west-1",
        endpoint_url=moto.endpoint_url,
        access_key="testing",
        secret_key="testing",
    )


def seed(cluster, database, rows=3000):
    cluster.query(
        "CREATE EXTENSION IF NOT EXISTS pgcrypto; CREATE SCHEMA sales; "
        "CREATE TABLE public.users (id int PRIMARY KEY, name text); "
        "CREATE TABLE sales.orders (id int, user_id int, total numeric); "
        "INSERT INTO public.users SELECT g, 'user ' || g FROM generate_series(1, %(rows)s) g; "
        "INSERT INTO sales.orders SELECT g, g %% 100, g * 1.5 FROM generate_series(1, %(rows)s) g; ANALYZE",
        {"rows": rows},
        dbname=database,
    )


def backup(cluster, database, destinations, **extra):
    args = dict(conn(cluster), database=database, destinations=destinations, min_interval_seconds=0, **extra)
    result = run_module_inprocess("pg_backup", args)
    assert result.get("changed") is True, result
    return result["backup"]


def restore(cluster, database, destinations, check=False, **extra):
    args = dict(conn(cluster), database=database, destinations=destinations, **extra)
    return run_module_inprocess("pg_backup_restore", args, check=check, diff=True)


def databases(cluster):
    return {row[0] for row in cluster.query("SELECT datname FROM pg_database")}


@pytest.fixture
def seeded(pg_cluster, pg_database):
    seed(pg_cluster, pg_database)
    return pg_database


@pytest.fixture
def dirs(tmp_path):
    paths = {name: tmp_path / name for name in ("backups", "reports", "metrics", "safety")}
    for name in ("backups", "reports", "metrics"):
        paths[name].mkdir()
    return paths


def test_drill_round_trip_from_encrypted_s3(pg_cluster, seeded, moto, s3_bucket, dirs):
    manifest = backup(pg_cluster, seeded, [s3(moto, s3_bucket)], encryption_key=KEY_HEX, exact_row_counts=True)
    assert manifest["row_counts"][seeded] == {"public.users": 3000, "sales.orders": 3000}
    before = databases(pg_cluster)

    predicted = restore(pg_cluster, seeded, [s3(moto, s3_bucket)], check=True, encryption_key=KEY_HEX)
    # A drill drops what it restored: no change predicted, none made (the report is its output).
    assert predicted["changed"] is False and predicted["restore"]["id"] == manifest["id"], predicted
    assert databases(pg_cluster) == before, "check mode created a database"

    result = restore(
        pg_cluster,
        seeded,
        [s3(moto, s3_bucket)],
        encryption_key=KEY_HEX,
        report_dir=str(dirs["reports"]),
        metrics_dir=str(dirs["metrics"]),
        assertions=[{"name": "users", "sql": "SELECT count(*) FROM public.users", "expected": 3000, "compare": "ge"}],
    )
    assert not result.get("failed") and result["changed"] is False, result
    report = result["report"]
    assert report["verified"] and report["passed"] and report["backup_id"] == manifest["id"]
    kinds = {(c["check"], c["subject"]): c for c in report["checks"]}
    assert kinds[("row_count", "public.users")]["actual"] == 3000
    assert kinds[("row_count", "public.users")]["note"] == "manifest exact"
    assert kinds[("row_count", "sales.orders")]["ok"]
    assert kinds[("checksum", manifest["artefacts"][0]["name"])]["ok"]
    assert kinds[("extension", "pgcrypto")]["ok"] and kinds[("role", "postgres")]["ok"]
    assert kinds[("assertion", "users")]["actual"] == 3000
    assert all(report["phases"][p] > 0 for p in ("fetch", "decrypt", "restore", "verify")), report["phases"]
    assert 0 < report["rto_seconds"] < 1800 and 0 <= report["rpo_seconds"] < 600
    # The scratch database is gone; the key appears nowhere in the result.
    assert report["cleanup"]["dropped"] == result["restore"]["target_database"]
    assert databases(pg_cluster) == before
    assert KEY_HEX not in json.dumps(result)
    # Report files and metrics, read back independently.
    saved = json.loads(open(result["report_files"]["json"], encoding="utf-8").read())
    assert saved["passed"] is True and saved["backup_id"] == manifest["id"]
    assert "PASSED" in open(result["report_files"]["markdown"], encoding="utf-8").read()
    prom = (dirs["metrics"] / f"locksmith_drill_{seeded}.prom").read_text()
    assert f'locksmith_drill_last_status{{database="{seeded}"}} 1' in prom
    assert f'locksmith_drill_phase_seconds{{database="{seeded}",phase="restore"}}' in prom
    assert f'locksmith_drill_rto_target_seconds{{database="{seeded}"}} 1800' in prom


def test_a_drill_that_keeps_its_scratch_database_reports_a_change(pg_cluster, seeded, dirs):
    backup(pg_cluster, seeded, [local(dirs["backups"])])
    before = databases(pg_cluster)
    predicted = restore(pg_cluster, seeded, [local(dirs["backups"])], check=True, keep_scratch=True)
    assert predicted["changed"] is True, predicted
    result = restore(pg_cluster, seeded, [local(dirs["backups"])], keep_scratch=True)
    scratch = result["restore"]["target_database"]
    try:
        assert not result.get("failed") and result["changed"] is True, result
        assert result["report"]["cleanup"] == {"kept": scratch}
        assert databases(pg_cluster) == before | {scratch}
    finally:
        pg_cluster.drop_database(scratch)


def test_a_drill_of_an_audited_database_on_a_fresh_server_creates_the_audit_writer(pg_cluster, seeded, dirs):
    """audit_trigger's functions belong to locksmith_audit_writer (a role of the cluster, not of the database): a
    restore server that never ran audit_trigger lacks it, and pg_restore failed on their OWNER TO."""
    from tests.harness.postgres import PostgresCluster

    audited = run_module_inprocess("audit_trigger", dict(conn(pg_cluster), database=seeded, tables=["public.users"]))
    assert audited["changed"] is True, audited
    backup(pg_cluster, seeded, [local(dirs["backups"])])
    fresh = PostgresCluster().start()
    try:
        writer = "SELECT rolcanlogin, rolsuper, rolinherit FROM pg_roles WHERE rolname = 'locksmith_audit_writer'"
        assert fresh.query(writer) == []
        result = restore(fresh, seeded, [local(dirs["backups"])])
        assert not result.get("failed"), result.get("msg")
        assert result["roles_created"] == ["locksmith_audit_writer"], result
        assert result["report"]["passed"] is True, result["report"]
        assert fresh.query(writer) == [(False, False, False)]
        again = restore(fresh, seeded, [local(dirs["backups"])])
        assert not again.get("failed") and again["roles_created"] == [], again
    finally:
        fresh.stop()


def test_corrupt_backup_fails_the_drill_before_restoring(pg_cluster, seeded, dirs):
    manifest = backup(pg_cluster, seeded, [local(dirs["backups"])])
    artefact = dirs["backups"] / seeded / manifest["id"] / manifest["artefacts"][0]["name"]
    data = bytearray(artefact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artefact.write_bytes(bytes(data))
    before = databases(pg_cluster)

    result = restore(
        pg_cluster, seeded, [local(dirs["backups"])], report_dir=str(dirs["reports"]), metrics_dir=str(dirs["metrics"])
    )
    assert result["failed"] and "is corrupt" in result["msg"] and manifest["id"] in result["msg"], result
    assert manifest["artefacts"][0]["name"] in result["msg"] and "nothing was restored" in result["msg"]
    assert result["report"]["passed"] is False and result["report"]["phases"]["restore"] == 0
    assert databases(pg_cluster) == before
    prom = (dirs["metrics"] / f"locksmith_drill_{seeded}.prom").read_text()
    assert f'locksmith_drill_last_status{{database="{seeded}"}} 0' in prom


def test_failing_assertion_and_missed_targets_fail_the_drill(pg_cluster, seeded, dirs):
    manifest = backup(pg_cluster, seeded, [local(dirs["backups"])])
    assert "row_counts" not in manifest, "manifests without exact_row_counts must stay as they were"
    result = restore(
        pg_cluster,
        seeded,
        [local(dirs["backups"])],
        report_dir=str(dirs["reports"]),
        assertions=[
            {"name": "enough users", "sql": "SELECT count(*) FROM public.users", "expected": 5000, "compare": "ge"},
            {"name": "bad sql", "sql": "SELECT count(*) FROM no_such_table", "expected": 0},
        ],
    )
    assert result["failed"] and "assertion enough users: expected ge 5000, got 3000" in result["msg"], result
    assert "no_such_table" in result["msg"]
    assert "FAILED" in open(result["report_files"]["markdown"], encoding="utf-8").read()

    slow = restore(pg_cluster, seeded, [local(dirs["backups"])], rto_target_seconds=0)
    assert slow["failed"] and "missed its targets: RTO" in slow["msg"], slow
    lenient = restore(pg_cluster, seeded, [local(dirs["backups"])], rto_target_seconds=0, fail_on_missed_targets=False)
    assert not lenient.get("failed") and lenient["report"]["rto_met"] is False, lenient


def test_assertions_that_are_not_one_query_are_refused_before_anything_runs(pg_cluster, seeded, dirs, tmp_path):
    # Both ran before: the COMMIT ended the read-only transaction, and COPY TO PROGRAM is allowed in one.
    backup(pg_cluster, seeded, [local(dirs["backups"])])
    marker = tmp_path / "copy-to-program-ran"
    before = databases(pg_cluster)
    for sql in (
        "COMMIT; ALTER ROLE postgres CONNECTION LIMIT 99; SELECT 1",
        "COPY (SELECT 1) TO PROGRAM 'touch %s'" % marker,
        "SELECT 1; CREATE TABLE public.oops (id int)",
    ):
        result = restore(
            pg_cluster, seeded, [local(dirs["backups"])], assertions=[{"name": "sneaky", "sql": sql, "expected": 1}]
        )
        assert result["failed"] and "assertions[0] (sneaky): sql must be one query" in result["msg"], result
    assert not marker.exists() and databases(pg_cluster) == before
    assert pg_cluster.query("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'postgres'")[0][0] == -1
    fine = restore(
        pg_cluster,
        seeded,
        [local(dirs["backups"])],
        assertions=[
            {"name": "quoted ;", "sql": "SELECT count(*) FROM public.users WHERE name <> ';' -- ;", "expected": 3000}
        ],
    )
    assert not fine.get("failed"), fine


def test_row_count_mismatch_fails_the_drill(pg_cluster, seeded, dirs):
    manifest = backup(pg_cluster, seeded, [local(dirs["backups"])])
    # Tamper with the manifest's counts the way a silently lossy dump would look.
    path = dirs["backups"] / seeded / manifest["id"] / "manifest.json"
    body = json.loads(path.read_text())
    body["row_counts"] = {seeded: {"public.users": 3001, "sales.orders": 3000}}
    path.write_text(json.dumps(body))
    result = restore(pg_cluster, seeded, [local(dirs["backups"])])
    assert result["failed"] and "row_count public.users: expected 3001, got 3000" in result["msg"], result


def test_recover_interlocks_then_recovers_with_a_safety_backup(pg_cluster, seeded, dirs):
    manifest = backup(pg_cluster, seeded, [local(dirs["backups"])])
    pg_cluster.query("DELETE FROM public.users WHERE id > 10", dbname=seeded)
    destinations = [local(dirs["backups"])]

    refused = restore(pg_cluster, seeded, destinations, mode="recover")
    assert refused["failed"] and f"'I understand this overwrites {seeded}'" in refused["msg"], refused
    sloppy = restore(pg_cluster, seeded, destinations, mode="recover", confirm=f"i understand this overwrites {seeded}")
    assert sloppy["failed"] and "set confirm to exactly" in sloppy["msg"]
    confirm = f"I understand this overwrites {seeded}"
    nonempty = restore(pg_cluster, seeded, destinations, mode="recover", confirm=confirm)
    assert nonempty["failed"] and "is not empty" in nonempty["msg"] and "allow_nonempty" in nonempty["msg"]
    no_safety = restore(pg_cluster, seeded, destinations, mode="recover", confirm=confirm, allow_nonempty=True)
    assert no_safety["failed"] and "safety_backup_dir" in no_safety["msg"]
    assert pg_cluster.query("SELECT count(*) FROM public.users", dbname=seeded)[0][0] == 10

    checked = restore(
        pg_cluster,
        seeded,
        destinations,
        check=True,
        mode="recover",
        confirm=confirm,
        allow_nonempty=True,
        safety_backup_dir=str(dirs["safety"]),
    )
    assert checked["changed"] and not dirs["safety"].exists()
    done = restore(
        pg_cluster,
        seeded,
        destinations,
        mode="recover",
        confirm=confirm,
        allow_nonempty=True,
        safety_backup_dir=str(dirs["safety"]),
    )
    assert not done.get("failed") and done["report"]["verified"], done
    assert done["report"]["backup_id"] == manifest["id"]
    assert pg_cluster.query("SELECT count(*) FROM public.users", dbname=seeded)[0][0] == 3000
    safety = dirs["safety"] / seeded / done["safety_backup"]["id"] / "manifest.json"
    assert json.loads(safety.read_text())["row_estimates"][seeded]["public.users"] in (10, None, 3000)


def test_recover_into_a_new_database_needs_no_safety_backup(pg_cluster, seeded, dirs):
    backup(pg_cluster, seeded, [local(dirs["backups"])])
    target = f"n_{uuid.uuid4().hex[:10]}"
    try:
        done = restore(
            pg_cluster,
            seeded,
            [local(dirs["backups"])],
            mode="recover",
            target_database=target,
            confirm=f"I understand this overwrites {target}",
        )
        assert not done.get("failed") and "safety_backup" not in done, done
        assert pg_cluster.query("SELECT count(*) FROM sales.orders", dbname=target)[0][0] == 3000
    finally:
        pg_cluster.drop_database(target)


def test_tables_mode_restores_only_the_chosen_tables(pg_cluster, seeded, dirs):
    backup(pg_cluster, seeded, [local(dirs["backups"])])
    pg_cluster.query("DELETE FROM public.users; DELETE FROM sales.orders WHERE id > 5", dbname=seeded)
    destinations = [local(dirs["backups"])]

    refused = restore(pg_cluster, seeded, destinations, mode="tables", tables=["public.users"])
    assert refused["failed"] and "table public.users exists" in refused["msg"], refused

    aside = restore(pg_cluster, seeded, destinations, mode="tables", tables=["users"], target_schema="restored")
    assert not aside.get("failed") and aside["report"]["verified"], aside
    assert pg_cluster.query("SELECT count(*) FROM restored.users", dbname=seeded)[0][0] == 3000
    tables = pg_cluster.query("SELECT tablename FROM pg_tables WHERE schemaname = 'restored'", dbname=seeded)
    assert tables == [("users",)]
    assert pg_cluster.query("SELECT count(*) FROM public.users", dbname=seeded)[0][0] == 0
    assert pg_cluster.query("SELECT count(*) FROM sales.orders", dbname=seeded)[0][0] == 5

    replaced = restore(pg_cluster, seeded, destinations, mode="tables", tables=["sales.orders"], allow_nonempty=True)
    assert not replaced.get("failed"), replaced
    assert pg_cluster.query("SELECT count(*) FROM sales.orders", dbname=seeded)[0][0] == 3000
    assert pg_cluster.query("SELECT count(*) FROM public.users", dbname=seeded)[0][0] == 0
    assert not [d for d in databases(pg_cluster) if d.startswith("restore_")], "scratch database left behind"


def test_tables_mode_never_drops_what_depends_on_a_replaced_table(pg_cluster, seeded, dirs):
    backup(pg_cluster, seeded, [local(dirs["backups"])])
    # A view and a foreign key of tables not being restored: DROP ... CASCADE took them with it, silently.
    pg_cluster.query(
        "CREATE VIEW public.v_users AS SELECT id FROM public.users; "
        "CREATE TABLE sales.refs (uid int REFERENCES public.users (id)); DELETE FROM sales.orders",
        dbname=seeded,
    )
    destinations = [local(dirs["backups"])]
    refused = restore(
        pg_cluster, seeded, destinations, mode="tables", tables=["public.users", "sales.orders"], allow_nonempty=True
    )
    assert refused["failed"] and "was refused: cannot drop desired object(s) because other objects" in refused["msg"]
    assert "(view v_users depends on table users; constraint refs_uid_fkey on table sales.refs" in refused["msg"]
    assert "exception" not in refused and refused["changed"] is False
    assert refused["report"]["target_fate"] == "unchanged: the restore stopped before it dropped anything"
    # One statement: the table listed first was not dropped before the refusal either.
    assert pg_cluster.query("SELECT count(*) FROM public.v_users", dbname=seeded)[0][0] == 3000
    assert pg_cluster.query("SELECT count(*) FROM sales.orders", dbname=seeded)[0][0] == 0
    fks = "SELECT count(*) FROM pg_constraint WHERE conrelid = 'sales.refs'::regclass AND contype = 'f'"
    assert pg_cluster.query(fks, dbname=seeded)[0][0] == 1
    assert not [d for d in databases(pg_cluster) if d.startswith("restore_")], "scratch database left behind"


def test_names_that_need_quoting_are_backed_up_and_restored_as_written(pg_cluster, seeded, dirs):
    # ORMs and hand-made schemas give such names; one with a quote and pattern characters (* ?) too.
    pg_cluster.query(
        'CREATE SCHEMA "Shop Data"; CREATE TABLE "Shop Data"."Order Items" (id int); '
        'CREATE TABLE "Shop Data"."a""b*?" (id int); CREATE TABLE "Shop Data"."aXb" (id int); '
        'INSERT INTO "Shop Data"."Order Items" SELECT generate_series(1, 7); '
        'INSERT INTO "Shop Data"."a""b*?" VALUES (1)',
        dbname=seeded,
    )
    manifest = backup(
        pg_cluster,
        seeded,
        [local(dirs["backups"])],
        schemas=['"Shop Data"'],
        exclude_tables=['"Shop Data"."a""b*?"'],
        exact_row_counts=True,
    )
    # Exact names: the quote is the table's, and * ? match nothing else ("aXb" stays in).
    assert manifest["row_counts"][seeded] == {"Shop Data.Order Items": 7, "Shop Data.aXb": 0}, manifest
    pg_cluster.query('DELETE FROM "Shop Data"."Order Items"', dbname=seeded)
    done = restore(
        pg_cluster,
        seeded,
        [local(dirs["backups"])],
        mode="tables",
        tables=['"Shop Data"."Order Items"'],
        target_schema='"Restored Items"',
    )
    assert not done.get("failed") and done["report"]["verified"], done
    assert pg_cluster.query('SELECT count(*) FROM "Restored Items"."Order Items"', dbname=seeded)[0][0] == 7
    unquoted = restore(pg_cluster, seeded, [local(dirs["backups"])], mode="tables", tables=["Shop Data.Order Items"])
    assert unquoted["failed"] and unquoted["msg"].startswith("tables[0] 'Shop Data.Order Items' is not a valid")
    assert "double quotes" in unquoted["msg"], unquoted["msg"]


def test_names_with_a_dot_are_restored_and_counted_as_the_names_they_are(pg_cluster, seeded, dirs):
    # A schema "v1.2" and a table "a.b": joined as "schema.table" and split again, they became other names.
    pg_cluster.query(
        'CREATE SCHEMA "v1.2"; CREATE TABLE "v1.2".orders (id int); CREATE SCHEMA shop; '
        'CREATE TABLE shop."a.b" (id int); INSERT INTO "v1.2".orders SELECT generate_series(1, 4); '
        'INSERT INTO shop."a.b" SELECT generate_series(1, 6)',
        dbname=seeded,
    )
    destinations = [local(dirs["backups"])]
    manifest = backup(pg_cluster, seeded, destinations, exact_row_counts=True)
    assert manifest["row_counts"][seeded]["v1.2.orders"] == 4 and manifest["row_counts"][seeded]["shop.a.b"] == 6
    pg_cluster.query('DELETE FROM "v1.2".orders; DELETE FROM shop."a.b"', dbname=seeded)

    aside = restore(
        pg_cluster, seeded, destinations, mode="tables", tables=['"v1.2".orders', 'shop."a.b"'], target_schema='"x.y"'
    )
    assert not aside.get("failed") and "exception" not in aside and aside["report"]["verified"], aside
    assert pg_cluster.query('SELECT count(*) FROM "x.y".orders', dbname=seeded)[0][0] == 4
    assert pg_cluster.query('SELECT count(*) FROM "x.y"."a.b"', dbname=seeded)[0][0] == 6
    counted = {c["subject"]: c for c in aside["report"]["checks"] if c["check"] == "row_count"}
    assert {s: (c["expected"], c["actual"], c["ok"]) for s, c in counted.items()} == {
        "x.y.a.b": (6, 6, True),
        "x.y.orders": (4, 4, True),
    }, aside["report"]["checks"]

    in_place = restore(
        pg_cluster, seeded, destinations, mode="tables", tables=['"v1.2".orders', 'shop."a.b"'], allow_nonempty=True
    )
    assert not in_place.get("failed") and in_place["report"]["verified"], in_place
    assert pg_cluster.query('SELECT count(*) FROM "v1.2".orders', dbname=seeded)[0][0] == 4
    assert pg_cluster.query('SELECT count(*) FROM shop."a.b"', dbname=seeded)[0][0] == 6
    assert all(c["ok"] for c in in_place["report"]["checks"]), in_place["report"]["checks"]

    # A drill counts them too (the names come from the archive's table of contents).
    drill = restore(pg_cluster, seeded, destinations, mode="drill")
    assert not drill.get("failed") and drill["report"]["passed"], drill
    subjects = {c["subject"]: c["ok"] for c in drill["report"]["checks"] if c["check"] == "row_count"}
    assert subjects["v1.2.orders"] is True and subjects["shop.a.b"] is True, drill["report"]["checks"]
    assert not [d for d in databases(pg_cluster) if d.startswith("restore_")], "scratch database left behind"


def test_a_tables_restore_takes_a_partial_backup_only_when_it_holds_the_tables(pg_cluster, seeded, dirs):
    # A full backup, then newer exports that do not hold public.users: the restore of users takes the full one.
    destinations = [local(dirs["backups"])]
    full = backup(pg_cluster, seeded, destinations)
    orders = backup(pg_cluster, seeded, destinations, tables=["sales.orders"])
    sales = backup(pg_cluster, seeded, destinations, schemas=["sales"])
    no_users = backup(pg_cluster, seeded, destinations, exclude_tables=["users"])
    pg_cluster.query("DELETE FROM public.users", dbname=seeded)

    users = restore(pg_cluster, seeded, destinations, mode="tables", tables=["users"], target_schema="restored")
    assert not users.get("failed") and users["report"]["backup_id"] == full["id"], users
    assert pg_cluster.query("SELECT count(*) FROM restored.users", dbname=seeded)[0][0] == 3000
    reasons = {s["id"]: s["reason"] for s in users["report"]["skipped_backups"]}
    assert set(reasons) == {orders["id"], sales["id"], no_users["id"]}, reasons
    for reason in reasons.values():
        assert reason.startswith("partial (taken with ") and reason.endswith("): does not hold public.users"), reasons

    # All of them hold sales.orders: the newest (without public.users) is taken.
    pg_cluster.query("DELETE FROM sales.orders", dbname=seeded)
    taken = restore(pg_cluster, seeded, destinations, mode="tables", tables=["sales.orders"], allow_nonempty=True)
    assert not taken.get("failed") and taken["report"]["backup_id"] == no_users["id"], taken
    assert pg_cluster.query("SELECT count(*) FROM sales.orders", dbname=seeded)[0][0] == 3000

    # Named, a backup that does not hold the table is refused before anything is made.
    before = databases(pg_cluster)
    named = restore(
        pg_cluster, seeded, destinations, mode="tables", tables=["users"], target_schema="again", backup_id=orders["id"]
    )
    assert named["failed"] and "does not hold public.users" in named["msg"] and "exception" not in named, named
    assert databases(pg_cluster) == before


def test_a_one_table_export_is_never_taken_for_the_whole_database(pg_cluster, seeded, dirs):
    # An ad-hoc export of one table, newer than the full backup, at the same destination.
    destinations = [local(dirs["backups"])]
    full = backup(pg_cluster, seeded, destinations)
    export = backup(pg_cluster, seeded, destinations, tables=["public.users"])
    listed = run_module_inprocess("pg_backup_info", dict(destinations=destinations, database=seeded))
    assert listed["newest_good"][seeded]["id"] == full["id"], listed["newest_good"]  # the RPO is the full one's

    drill = restore(pg_cluster, seeded, destinations, mode="drill")
    assert not drill.get("failed") and drill["report"]["backup_id"] == full["id"], drill
    assert [s["id"] for s in drill["report"]["skipped_backups"]] == [export["id"]], drill["report"]["skipped_backups"]
    assert "partial (taken with tables ['public.users'])" in drill["report"]["skipped_backups"][0]["reason"]

    # A tables restore may use it, and naming it restores it.
    pg_cluster.query("DELETE FROM public.users", dbname=seeded)
    aside = restore(pg_cluster, seeded, destinations, mode="tables", tables=["users"], target_schema="restored")
    assert not aside.get("failed") and aside["report"]["backup_id"] == export["id"], aside
    named = restore(pg_cluster, seeded, destinations, mode="drill", backup_id=export["id"])
    assert not named.get("failed") and named["report"]["backup_id"] == export["id"], named


def test_recover_refuses_the_maintenance_and_template_databases(pg_cluster, seeded, dirs):
    backup(pg_cluster, seeded, [local(dirs["backups"])])
    for target in ("postgres", "template1"):
        for check in (True, False):
            result = restore(
                pg_cluster,
                seeded,
                [local(dirs["backups"])],
                check=check,
                mode="recover",
                target_database=target,
                confirm=f"I understand this overwrites {target}",
                allow_nonempty=True,
                safety_backup_dir=str(dirs["safety"]),
            )
            assert (
                result["failed"] and f"target_database '{target}' is the maintenance or a template" in (result["msg"])
            ), result
            assert "exception" not in result and not dirs["safety"].exists()


def test_a_recover_that_fails_after_the_drop_says_so(pg_cluster, seeded, dirs):
    pg_cluster.query("CREATE ROLE r_reader; GRANT SELECT ON public.users TO r_reader", dbname=seeded)
    backup(pg_cluster, seeded, [local(dirs["backups"])])
    pg_cluster.query("REVOKE SELECT ON public.users FROM r_reader; DROP ROLE r_reader", dbname=seeded)
    result = restore(
        pg_cluster,
        seeded,
        [local(dirs["backups"])],
        mode="recover",
        confirm=f"I understand this overwrites {seeded}",
        allow_nonempty=True,
        safety_backup_dir=str(dirs["safety"]),
        report_dir=str(dirs["reports"]),
    )
    # The GRANT to a role the server no longer has stops pg_restore after the old database was dropped.
    assert result["failed"] and result["changed"] is True, result
    assert result["report"]["target_fate"].startswith("incomplete: the restore stopped after it had dropped")
    assert result["safety_backup"]["id"]
    written = json.loads(next(dirs["reports"].glob("*.json")).read_text())
    assert written["target_fate"] == result["report"]["target_fate"]


def test_errors_name_the_input(pg_cluster, seeded, dirs, moto, s3_bucket):
    nothing = restore(pg_cluster, seeded, [local(dirs["backups"])])
    assert nothing["failed"] and "no complete, intact backup" in nothing["msg"], nothing
    manifest = backup(pg_cluster, seeded, [s3(moto, s3_bucket)], encryption_key=KEY_HEX)
    no_key = restore(pg_cluster, seeded, [s3(moto, s3_bucket)])
    assert no_key["failed"] and "encryption_key" in no_key["msg"], no_key
    wrong_id = restore(pg_cluster, seeded, [s3(moto, s3_bucket)], backup_id="20200101T000000Z-0000")
    assert wrong_id["failed"] and "backup_id '20200101T000000Z-0000'" in wrong_id["msg"]
    bad = restore(pg_cluster, seeded, [local(dirs["backups"])], target_database="x'; DROP TABLE users; --")
    assert bad["failed"] and "target_database" in bad["msg"] and "nothing was sent" in bad["msg"]
    no_tables = restore(pg_cluster, seeded, [local(dirs["backups"])], mode="tables")
    assert no_tables["failed"] and "needs tables" in no_tables["msg"]
    exists = restore(pg_cluster, seeded, [s3(moto, s3_bucket)], encryption_key=KEY_HEX, target_database=seeded)
    assert exists["failed"] and "a drill restores only into a new scratch database" in exists["msg"]
    assert manifest["id"]


def role_vars(pg_cluster, database, dirs, destination, **more):
    """The dr_restore role's variables for a drill of ``database`` on the test cluster, nothing installed."""
    return {
        "dr_restore_database": database,
        "dr_restore_login_host": pg_cluster.host,
        "dr_restore_login_port": pg_cluster.port,
        "dr_restore_ssl_mode": "disable",
        "dr_restore_destinations": [destination],
        "dr_restore_install_enabled": False,  # never apt on the test machine
        "dr_restore_report_dir": str(dirs["reports"]),
        "dr_restore_metrics_dir": str(dirs["metrics"]),
        "dr_restore_work_dir": str(dirs["reports"]),
        **more,
    }


def test_role_drill_through_ansible_playbook(ansible, pg_cluster, seeded, dirs):
    manifest = backup(pg_cluster, seeded, [local(dirs["backups"])])
    before = databases(pg_cluster)
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "roles": [
            {
                "role": "dr_restore",
                "vars": role_vars(
                    pg_cluster,
                    seeded,
                    dirs,
                    local(dirs["backups"]),
                    dr_restore_assertions=[
                        {"name": "users", "sql": "SELECT count(*) FROM users", "expected": 3000, "compare": "eq"}
                    ],
                ),
            }
        ],
    }
    # --check on a new restore host: the report directory is only predicted, and the drill is predicted all the same.
    fresh = dict(play["roles"][0]["vars"], dr_restore_report_dir=str(dirs["reports"] / "new"))
    predicted = ansible.run_playbook([dict(play, roles=[dict(play["roles"][0], vars=fresh)])], check=True)
    assert predicted.rc == 0, predicted.stdout[-3000:] + predicted.stderr[-2000:]
    assert not (dirs["reports"] / "new").exists()

    run = ansible.run_playbook([play])
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    result = run.result("dr_restore : Restore the backup and verify it")
    assert result["report"]["passed"] and result["report"]["backup_id"] == manifest["id"]
    assert databases(pg_cluster) == before
    assert list(dirs["reports"].glob(f"{seeded}-drill-*.json"))

    recover = dict(play)
    recover["roles"] = [dict(play["roles"][0], vars=dict(play["roles"][0]["vars"], dr_restore_mode="recover"))]
    refused = ansible.run_playbook([recover])
    assert refused.rc != 0
    assert "dr_restore_confirm" in json.dumps(refused.data), refused.stdout[-2000:]


def _drill_samples(metrics_dir, database):
    from ansible_collections.locksmith.ops.plugins.module_utils import _metrics

    text = (metrics_dir / f"locksmith_drill_{database}.prom").read_text()
    return {name: value for (name, _labels), value in _metrics.parse(text).items()}


def test_a_drill_that_finds_no_backup_replaces_the_passed_drills_metrics(ansible, pg_cluster, seeded, dirs, tmp_path):
    # Before, this drill failed without writing metrics: the passed drill's status 1 stayed, DrillFailed never fired.
    from ansible_collections.locksmith.ops.plugins.filter.posture_promises import posture_promises

    backup(pg_cluster, seeded, [local(dirs["backups"])])
    evidence = dict(report_dir=str(dirs["reports"]), metrics_dir=str(dirs["metrics"]))
    passed = restore(pg_cluster, seeded, [local(dirs["backups"])], **evidence)
    assert not passed.get("failed"), passed
    before = _drill_samples(dirs["metrics"], seeded)
    assert before["locksmith_drill_last_status"] == 1 and before["locksmith_drill_rto_seconds"] > 0

    empty = tmp_path / "empty"
    empty.mkdir()
    failed = restore(pg_cluster, seeded, [local(empty)], **evidence)
    assert failed["failed"] and "no complete, intact backup of '%s'" % seeded in failed["msg"], failed
    after = _drill_samples(dirs["metrics"], seeded)
    assert after["locksmith_drill_last_status"] == 0
    assert after["locksmith_drill_last_run_timestamp_seconds"] > before["locksmith_drill_last_run_timestamp_seconds"]
    assert (
        after["locksmith_drill_max_age_seconds"] == 15 * 86400 and after["locksmith_drill_rto_target_seconds"] == 1800
    )
    for gone in ("locksmith_drill_rto_seconds", "locksmith_drill_rpo_seconds", "locksmith_drill_phase_seconds"):
        assert gone not in after, gone
    # Through the role, as the scheduled playbook runs it: the same failure, the report fetched to the controller
    # (where playbooks/posture.yml reads it) and the role's max age published.
    fetched = tmp_path / "fetched"
    drill_vars = role_vars(
        pg_cluster,
        seeded,
        dirs,
        local(empty),
        dr_restore_fetch_enabled=True,
        dr_restore_fetch_dir=str(fetched),
        dr_restore_drill_max_age_seconds=7200,
    )
    play = {"hosts": "localhost", "gather_facts": False, "roles": [{"role": "dr_restore", "vars": drill_vars}]}
    run = ansible.run_playbook([play])
    assert run.rc != 0 and "no complete, intact backup" in run.stdout, run.stdout[-3000:]
    [report] = list((fetched / "localhost").glob(f"{seeded}-drill-*.json"))
    assert json.loads(report.read_text())["verified"] is False
    # The posture report judges the newest drill of each restore host and database, fetched as posture.yml reads
    # them: this one, unmeasured, saying why.
    [promise] = posture_promises(
        {
            "drill_reports": {str(p): p.read_text() for p in fetched.rglob("*.json")},
            "drill_databases": {"localhost": [seeded]},
        }
    )
    assert promise["name"] == f"drill_rto_localhost_{seeded}" and promise["evidence"] == str(report)
    assert promise["value"] is None and promise["detail"].startswith("failed: no complete, intact backup")
    samples = _drill_samples(dirs["metrics"], seeded)
    assert samples["locksmith_drill_last_status"] == 0 and samples["locksmith_drill_max_age_seconds"] == 7200


def test_a_database_no_longer_drilled_loses_its_metrics_file(ansible, pg_cluster, seeded, dirs):
    """A database dropped from the drills kept locksmith_drill_<database>.prom with its last drill time, so
    DrillOverdue fired for ever. A drill now removes the drill files of databases not in dr_restore_drilled_databases
    (dr_drill.yml gives it dr_drill_databases), and all of them once the metrics are off; nothing else."""
    from ansible_collections.locksmith.ops.plugins.module_utils import _metrics

    backup(pg_cluster, seeded, [local(dirs["backups"])])
    retired, other = f"t_{uuid.uuid4().hex[:12]}", f"t_{uuid.uuid4().hex[:12]}"
    # Their last drills, as the module wrote them (no backup of either: status 0, which DrillFailed reads too).
    for database in (retired, other):
        failed = restore(pg_cluster, database, [local(dirs["backups"])], metrics_dir=str(dirs["metrics"]))
        assert failed.get("failed"), failed
    files = {d: dirs["metrics"] / _metrics.textfile_name("drill", d) for d in (seeded, retired, other)}
    assert files[retired].exists() and files[other].exists()
    others = ["locksmith_drillx_app.prom", _metrics.textfile_name("backup", retired), ".%s.locksmith-tmp-z8y7x6"]
    others[2] %= files[retired].name
    for name in others:
        (dirs["metrics"] / name).write_text("# planted\n")
    drill_vars = role_vars(
        pg_cluster, seeded, dirs, local(dirs["backups"]), dr_restore_drilled_databases=[seeded, other]
    )

    def play(**changes):
        return [
            {
                "hosts": "localhost",
                "gather_facts": False,
                "roles": [{"role": "dr_restore", "vars": {**drill_vars, **changes}}],
            }
        ]

    def listed():
        return sorted(p.name for p in dirs["metrics"].iterdir())

    prune = "dr_restore : Remove the metrics files of drills that no longer publish"
    check = ansible.run_playbook(play(), check=True)
    assert check.rc == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert [r["item"]["path"] for r in check.result(prune)["results"] if r.get("changed")] == [str(files[retired])]
    assert files[retired].exists()
    run = ansible.run_playbook(play())
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert listed() == sorted([files[seeded].name, files[other].name, *others])
    again = ansible.run_playbook(play())
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]

    # Without the list, a drill looks at its own file only: another database's is left to the run that drills it.
    files[retired].write_text("# planted\n")
    alone = ansible.run_playbook(play(dr_restore_drilled_databases=[]))
    assert alone.rc == 0 and alone.changed() == 0, alone.stdout[-3000:]
    assert files[retired].exists()
    files[retired].unlink()

    # Metrics off: the drilled databases' files go, the others stay.
    off = ansible.run_playbook(play(dr_restore_metrics_enabled=False))
    assert off.rc == 0, off.stdout[-3000:] + off.stderr[-2000:]
    assert listed() == sorted(others)
    quiet = ansible.run_playbook(play(dr_restore_metrics_enabled=False))
    assert quiet.rc == 0 and quiet.changed() == 0, quiet.stdout[-3000:]


# ---- PITR with pgBackRest -------------------------------------------------------------------------
def _archived(debian_layout):
    """A cluster of its own that archives WAL into a local pgBackRest stanza, with one full backup."""
    import os
    import pwd
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from tests.harness.postgres import PostgresCluster

    cluster = PostgresCluster().start()
    work = Path(tempfile.mkdtemp(prefix="locksmith-pitr-"))
    conf = work / "pgbackrest.conf"
    for sub in ("repo", "log"):
        (work / sub).mkdir()
    conf.write_text(
        f"[global]\nrepo1-path={work / 'repo'}\nlog-path={work / 'log'}\nlock-path={work / 'log'}\n"
        "compress-type=zst\nstart-fast=y\nlog-level-console=warn\n"
        f"[pitr]\npg1-path={cluster.datadir}\npg1-port={cluster.port}\npg1-socket-path={cluster.socket_dir}\n"
    )
    pg = pwd.getpwnam("postgres")
    for path in (work, work / "repo", work / "log", conf):
        os.chown(path, pg.pw_uid, pg.pw_gid)
    with open(cluster.datadir / "postgresql.auto.conf", "a", encoding="utf-8") as handle:
        handle.write(
            f"archive_mode = on\narchive_command = 'pgbackrest --config={conf} --stanza=pitr archive-push %p'\n"
        )
    runuser = ["runuser", "-u", "postgres", "--"]
    pg_ctl = [str(cluster.bin_dir / "pg_ctl"), "-l", str(cluster.log), "-w"]
    subprocess.run([*runuser, *pg_ctl, "-D", str(cluster.datadir), "stop"], check=True, capture_output=True)
    config_dir = cluster.datadir
    if debian_layout:
        # Debian keeps the configuration in /etc/postgresql/<version>/<cluster>, outside what a backup holds.
        config_dir = work / "etc"
        config_dir.mkdir()
        for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            shutil.move(cluster.datadir / name, config_dir / name)
        with open(config_dir / "postgresql.conf", "a", encoding="utf-8") as handle:
            # Tuned above the defaults, as production is: a restored server with less refuses to recover.
            handle.write(
                f"data_directory = '{cluster.datadir}'\nhba_file = '{config_dir}/pg_hba.conf'\n"
                f"ident_file = '{config_dir}/pg_ident.conf'\nmax_connections = 150\n"
            )
        for path in (config_dir, *config_dir.iterdir()):
            os.chown(path, pg.pw_uid, pg.pw_gid)
    subprocess.run([*runuser, *pg_ctl, "-D", str(config_dir), "start"], check=True, capture_output=True)
    base = [*runuser, "pgbackrest", f"--config={conf}", "--stanza=pitr"]
    cluster.create_database("app")
    cluster.query("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)", dbname="app")
    subprocess.run([*base, "stanza-create"], check=True, capture_output=True)
    subprocess.run([*base, "--type=full", "backup"], check=True, capture_output=True)
    yield cluster, conf, work, base
    restored = work / "restored"
    if (restored / "postmaster.pid").exists():
        subprocess.run(
            [*runuser, str(cluster.bin_dir / "pg_ctl"), "-D", str(restored), "-m", "immediate", "stop"], check=False
        )
    cluster.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def archived_cluster():
    """A cluster of its own (configuration in its data directory) archiving into a pgBackRest stanza."""
    yield from _archived(debian_layout=False)


@pytest.fixture
def debian_archived_cluster():
    """The same with Debian's layout: postgresql.conf, pg_hba.conf and pg_ident.conf outside the data directory."""
    yield from _archived(debian_layout=True)


def test_pitr_brings_back_deleted_rows(archived_cluster, dirs):
    import subprocess
    import time

    import psycopg2

    cluster, conf, work, base = archived_cluster
    # pgBackRest keeps backup stop times in whole seconds and needs a target strictly after one.
    time.sleep(1.1)
    cluster.query("INSERT INTO t SELECT generate_series(101, 150)", dbname="app")
    # pgBackRest reads times as YYYY-MM-DD HH:MM:SS[.mmm][+TZ] (milliseconds at most).
    target_time = cluster.query(
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') || '+00'", dbname="app"
    )[0][0]
    time.sleep(1.1)
    cluster.query("DELETE FROM t", dbname="app")
    subprocess.run([*base, "check"], check=True, capture_output=True)  # switches and archives the WAL
    args = pitr_args(
        cluster,
        conf,
        pitr_target_type="time",
        pitr_target=target_time,
        pitr_data_dir=str(work / "restored"),
        report_dir=str(dirs["reports"]),
        assertions=[{"name": "rows back", "sql": "SELECT count(*) FROM t", "expected": 150}],
    )
    port = args["pitr_port"]
    predicted = run_module_inprocess("pg_backup_restore", args, check=True)
    assert predicted["changed"] and predicted["restore"]["target"]["value"] == target_time, predicted
    assert not (work / "restored").exists()
    result = run_module_inprocess("pg_backup_restore", args)
    assert not result.get("failed") and result["report"]["verified"], result
    assert result["report"]["phases"]["restore"] > 0
    # An independent client on the restored, promoted server.
    restored = psycopg2.connect(host=cluster.host, port=port, user="postgres", dbname="app")
    try:
        with restored.cursor() as cur:
            cur.execute("SELECT count(*), pg_is_in_recovery() FROM t")
            assert cur.fetchone() == (150, False)
    finally:
        restored.close()
    assert cluster.query("SELECT count(*) FROM t", dbname="app")[0][0] == 0
    again = run_module_inprocess("pg_backup_restore", args)
    assert again["failed"] and "is not empty" in again["msg"], again


def test_pitr_left_running_after_a_failed_check_says_changed(archived_cluster):
    # The server is promoted and left running for inspection: the host changed, whatever the checks said.
    cluster, conf, work = archived_cluster[:3]
    args = pitr_args(
        cluster,
        conf,
        pitr_data_dir=str(work / "restored"),
        assertions=[{"name": "impossible", "sql": "SELECT count(*) FROM t", "expected": -1}],
    )
    result = run_module_inprocess("pg_backup_restore", args)
    assert result["failed"] and result["report"]["target_fate"] == "running, left for inspection", result
    assert result["changed"] is True


def test_pitr_names_the_backup_it_restored_not_the_newest(archived_cluster):
    # pgBackRest restores from the newest backup that ended before the target: the report must name that one.
    import subprocess
    import time

    cluster, conf, work, base = archived_cluster
    time.sleep(1.1)
    target_time = cluster.query("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') || '+00'")[0][0]
    time.sleep(1.1)
    cluster.query("INSERT INTO t SELECT generate_series(101, 150)", dbname="app")
    subprocess.run([*base, "--type=full", "backup"], check=True, capture_output=True)
    info = json.loads(subprocess.run([*base, "--output=json", "info"], check=True, capture_output=True).stdout)
    first, second = (b["label"] for b in info[0]["backup"])
    second_stop = info[0]["backup"][1]["timestamp"]["stop"]
    args = pitr_args(
        cluster,
        conf,
        pitr_target_type="time",
        pitr_target=target_time,
        pitr_data_dir=str(work / "restored"),
        assertions=[{"name": "rows then", "sql": "SELECT count(*) FROM t", "expected": 100}],
    )
    predicted = run_module_inprocess("pg_backup_restore", args, check=True)
    assert predicted["restore"]["id"] == first, (first, second, predicted)
    result = run_module_inprocess("pg_backup_restore", args)
    assert result["report"]["verified"] and result["report"]["backup_id"] == first, result
    assert result["report"]["config_written"] == [], result
    # The RPO is the age of the stanza's newest backup, not of the older one this target needed.
    assert result["report"]["rpo_seconds"] <= time.time() - second_stop + 1, result["report"]


def test_pitr_of_a_debian_layout_cluster_starts_and_checks_through_its_own_socket(debian_archived_cluster):
    # The backup holds no postgresql.conf or pg_hba.conf; with no login_host the checks must reach the restored
    # server, not the source listening in the socket directory login_unix_socket names.
    import socket

    import psycopg2

    from tests.harness.process import free_port

    cluster, conf, work = debian_archived_cluster[:3]
    port = free_port()
    args = pitr_args(
        cluster,
        conf,
        login_host=None,
        login_unix_socket=str(cluster.socket_dir),
        pitr_port=port,
        pitr_data_dir=str(work / "restored"),
        assertions=[
            {"name": "rows", "sql": "SELECT count(*) FROM t", "expected": 100},
            {"name": "promoted", "sql": "SELECT pg_is_in_recovery()::text", "expected": "false"},
            {"name": "its own port", "sql": "SELECT current_setting('port')::int", "expected": port},
            {"name": "the source's limit", "sql": "SELECT current_setting('max_connections')::int", "expected": 150},
        ],
    )
    result = run_module_inprocess("pg_backup_restore", args)
    assert not result.get("failed") and result["report"]["verified"], result
    assert result["report"]["config_written"] == ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"], result
    assert "Debian-layout" in json.dumps(result.get("warnings")), result.get("warnings")
    # It listens on its socket in the data directory only, not on TCP.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    restored = psycopg2.connect(host=str(work / "restored"), port=port, user="postgres", dbname="app")
    try:
        with restored.cursor() as cur:
            cur.execute("SELECT count(*) FROM t")
            assert cur.fetchone() == (100,)
    finally:
        restored.close()
