"""pg_backup: findings of review c, against a real PostgreSQL 15."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from tests.harness.ansible import run_module_inprocess
from tests.harness.postgres import PG_BIN_DIR
from tests.integration.test_pg_backup import backup, info, local, seed

pytestmark = pytest.mark.postgres


@pytest.fixture
def icu_database(pg_cluster):
    name = "t_icu_%s" % uuid.uuid4().hex[:8]
    pg_cluster.query("CREATE DATABASE %s TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en'" % name)
    yield name
    pg_cluster.drop_database(name)


def test_server_warning_with_detail_and_hint_does_not_fail_the_dump(pg_cluster, icu_database, tmp_path):
    # After an OS upgrade every new connection gets WARNING + DETAIL + HINT (collation version mismatch);
    # pg_dump prints the three lines and exits 0, and the dump is good.
    pg_database = icu_database
    seed(pg_cluster, pg_database, rows=10)
    pg_cluster.query("UPDATE pg_database SET datcollversion = '0.1' WHERE datname = %s", (pg_database,))
    dest = local(tmp_path)
    result = backup(pg_cluster, pg_database, [dest])
    assert not result.get("failed"), result.get("msg")
    assert any("collation version mismatch" in str(w) for w in result.get("warnings", [])), result.get("warnings")
    assert [b["valid"] for b in info([dest], database=pg_database)["backups"]] == [True]


def test_backup_that_ended_in_the_future_does_not_make_the_next_one_not_due(pg_cluster, pg_database, tmp_path):
    # The clock was a day ahead during a backup and has been put right since (NTP, a VM restored from a snapshot):
    # that backup did not end "less than min_interval_seconds ago", so it must not hold off backups for a day.
    seed(pg_cluster, pg_database, rows=10)
    dest = local(tmp_path)
    first = backup(pg_cluster, pg_database, [dest])
    path = tmp_path / pg_database / first["backup"]["id"] / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["ended_epoch"] += 86400
    path.write_text(json.dumps(manifest))
    second = backup(pg_cluster, pg_database, [dest], min_interval_seconds=3600)
    assert second["changed"] and not second.get("failed"), second
    assert any("in the future" in str(w) for w in second.get("warnings", [])), second.get("warnings")
    third = backup(pg_cluster, pg_database, [dest], min_interval_seconds=3600)
    assert not third["changed"], third


def test_metrics_forget_a_destination_that_was_removed(pg_cluster, pg_database, tmp_path):
    # A destination taken out of the configuration (a bucket retired) must not keep its last success in the
    # textfile for ever, or BackupStale fires for it for ever; one that failed this time keeps it (staleness shows).
    from ansible_collections.locksmith.ops.plugins.module_utils import _metrics

    seed(pg_cluster, pg_database, rows=10)
    metrics_dir, kept, retired = tmp_path / "textfile", tmp_path / "kept", tmp_path / "retired"
    for path in (metrics_dir, kept, retired):
        path.mkdir()
    both = backup(pg_cluster, pg_database, [local(kept), local(retired)], metrics_dir=str(metrics_dir))
    assert not both.get("failed"), both
    one = backup(pg_cluster, pg_database, [local(kept)], metrics_dir=str(metrics_dir))
    assert not one.get("failed"), one
    samples = _metrics.parse(open(one["metrics_file"]).read())
    at = {dict(labels).get("destination") for name, labels in samples if name.endswith("_success_timestamp_seconds")}
    assert at == {"local:%s" % kept}, at
    # A failed attempt (the database is unreachable) keeps the configured destination's last success.
    failed = backup(pg_cluster, pg_database, [local(kept)], metrics_dir=str(metrics_dir), login_port=1)
    assert failed.get("failed"), failed
    samples = _metrics.parse(open(one["metrics_file"]).read())
    at = (("database", pg_database), ("destination", "local:%s" % kept))
    assert samples[("locksmith_backup_last_success_timestamp_seconds", at)]


def test_other_sessions_temporary_tables_are_neither_counted_nor_listed(pg_cluster, pg_database, tmp_path):
    # An application session holding a temporary table (connection pools keep them for hours): pg_dump leaves it
    # out, so the counts must too; count(*) on it fails ("cannot access temporary tables of other sessions").
    seed(pg_cluster, pg_database, rows=10)
    app = pg_cluster.connect(pg_database)
    try:
        with app.cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE scratch AS SELECT generate_series(1, 3) AS n; ANALYZE scratch")
        result = backup(pg_cluster, pg_database, [local(tmp_path)], exact_row_counts=True)
    finally:
        app.close()
    assert not result.get("failed"), result.get("msg")
    manifest = result["backup"]
    assert sorted(manifest["row_counts"][pg_database]) == ["public.users", "sales.orders"], manifest["row_counts"]
    assert sorted(manifest["row_estimates"][pg_database]) == ["public.users", "sales.orders"], manifest["row_estimates"]


def test_count_refused_by_the_server_fails_naming_the_table_not_a_traceback(pg_cluster, pg_database, tmp_path):
    # A backup role without SELECT on one table: with exact_row_counts the count(*) is refused before pg_dump
    # runs; that must read like pg_dump's own refusal (what, and the grant to fix it), not a psycopg2 traceback.
    seed(pg_cluster, pg_database, rows=10)
    role = "r_%s" % uuid.uuid4().hex[:8]
    pg_cluster.query("CREATE ROLE %s LOGIN; GRANT USAGE ON SCHEMA sales TO %s" % (role, role), dbname=pg_database)
    pg_cluster.query("GRANT SELECT ON sales.orders TO %s" % role, dbname=pg_database)
    try:
        result = backup(pg_cluster, pg_database, [local(tmp_path)], exact_row_counts=True, login_user=role)
    finally:
        pg_cluster.query("DROP OWNED BY %s; DROP ROLE %s" % (role, role), dbname=pg_database)
    assert result.get("failed"), result
    assert "Traceback" not in json.dumps(result) and "MODULE FAILURE" not in json.dumps(result), result
    assert "permission denied" in result["msg"] and "users" in result["msg"], result["msg"]
    assert "grant login_user read access" in result["msg"], result["msg"]
    assert not list(tmp_path.rglob("manifest.json"))


def test_a_one_table_export_neither_prunes_nor_stands_in_for_the_full_backup(pg_cluster, pg_database, tmp_path):
    # Same destination, same database: an ad-hoc export of one table must not make retention (keep_last 1) delete
    # the only full backup, nor make the scheduled full run think a backup was taken within min_interval_seconds.
    seed(pg_cluster, pg_database, rows=10)
    dest = local(tmp_path, retention={"keep_last": 1})
    full = backup(pg_cluster, pg_database, [dest])
    export = backup(pg_cluster, pg_database, [dest], tables=["public.users"])
    assert export["pruned"] == [], export["pruned"]
    scheduled = backup(pg_cluster, pg_database, [dest], min_interval_seconds=3600, check=True)
    assert scheduled["changed"] is False and scheduled["backup"]["id"] == full["backup"]["id"], scheduled
    again = backup(pg_cluster, pg_database, [dest], tables=["public.users"], min_interval_seconds=3600)
    assert again["changed"] is False and again["backup"]["id"] == export["backup"]["id"], again
    newer = backup(pg_cluster, pg_database, [dest])
    assert [p["id"] for p in newer["pruned"]] == [full["backup"]["id"]], newer["pruned"]
    ids = sorted(b["id"] for b in info([dest], database=pg_database)["backups"])
    assert ids == sorted([export["backup"]["id"], newer["backup"]["id"]]), ids


@pytest.fixture
def standby(pg_cluster):
    """A hot standby of the session cluster (pg_basebackup -R), on a port of its own."""
    import os
    import pwd

    from tests.harness.postgres import PostgresCluster, _as_postgres

    replica = PostgresCluster()
    replica.socket_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (replica.base, replica.socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    argv = [str(replica.bin_dir / "pg_basebackup"), "-h", pg_cluster.host, "-p", str(pg_cluster.port)]
    argv += ["-U", "postgres", "-D", str(replica.datadir), "-R", "-X", "stream", "--no-sync", "-c", "fast"]
    subprocess.run(_as_postgres(argv), check=True, capture_output=True)
    with open(replica.datadir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
        conf.write("port = %d\nunix_socket_directories = '%s'\n" % (replica.port, replica.socket_dir))
    replica.start()
    yield replica
    replica.stop()


def test_exact_counts_on_a_standby_with_an_unlogged_table(pg_cluster, pg_database, standby, tmp_path):
    # Backups are often taken from a hot standby. There pg_dump dumps no unlogged table data (the standby has none)
    # and count(*) on such a table is refused ("cannot access temporary or unlogged relations during recovery").
    seed(pg_cluster, pg_database, rows=10)
    pg_cluster.query("CREATE UNLOGGED TABLE cache AS SELECT generate_series(1, 5) AS n", dbname=pg_database)
    lsn = pg_cluster.query("SELECT pg_current_wal_lsn()::text")[0][0]
    for _attempt in range(100):
        if standby.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0]:
            break
        time.sleep(0.1)
    args = dict(login_host=standby.host, login_port=standby.port, ssl_mode="disable", connect_timeout=3)
    args.update(database=pg_database, destinations=[local(tmp_path)], min_interval_seconds=0, exact_row_counts=True)
    result = run_module_inprocess("pg_backup", dict(args, compression="gzip:1"))
    assert not result.get("failed"), result.get("msg")
    counts = result["backup"]["row_counts"][pg_database]
    assert counts == {"public.cache": 0, "public.users": 10, "sales.orders": 10}, counts
    # 0 is what the dump holds: pg_dump on a standby leaves unlogged table data out.
    dump = tmp_path / pg_database / result["backup"]["id"] / result["backup"]["artefacts"][0]["name"]
    listed = subprocess.run(
        [str(PG_BIN_DIR / "pg_restore"), "--list", str(dump)], capture_output=True, text=True, check=True
    )
    assert "TABLE public cache" in listed.stdout and "TABLE DATA public cache" not in listed.stdout, listed


def test_filters_written_differently_are_one_kind_and_other_kinds_are_left_to_their_job(
    pg_cluster, pg_database, tmp_path
):
    # One job's retention prunes its own kind only: backups made before its filters were edited (or an export
    # with its own policy) are another job's, and a short policy here must not delete them (docs/backup.md).
    seed(pg_cluster, pg_database, rows=10)
    dest = local(tmp_path, retention={"keep_last": 1})
    keep_all = local(tmp_path, retention={"keep_last": 5})  # the same directory, as the other job sees it
    old = [
        backup(pg_cluster, pg_database, [keep_all], exclude_tables=["sales.orders"])["backup"]["id"] for n in range(2)
    ]
    # The same filters written another way are the same kind: not due within the interval.
    same = backup(pg_cluster, pg_database, [dest], exclude_tables=['"sales"."orders"'], min_interval_seconds=3600)
    assert same["changed"] is False and same["backup"]["id"] == old[1], same
    edited = backup(
        pg_cluster, pg_database, [dest], exclude_tables=["sales.orders", "users"], min_interval_seconds=3600
    )
    assert edited["changed"] is True and edited["pruned"] == [], edited
    ids = sorted(b["id"] for b in info([dest], database=pg_database)["backups"])
    assert ids == sorted([*old, edited["backup"]["id"]]), ids
    # Leaving tables out still backs up the database: the newest is the RPO's backup.
    assert info([dest], database=pg_database)["newest_good"][pg_database]["id"] == edited["backup"]["id"]
    # The old kind's own policy, run again, prunes its own.
    pruned = backup(pg_cluster, pg_database, [dest], exclude_tables=["sales.orders"])
    assert sorted(p["id"] for p in pruned["pruned"]) == sorted(old), pruned["pruned"]
