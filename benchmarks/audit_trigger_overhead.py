"""pgbench TPC-B-like TPS with no audit, our row audit (full and diff_only), and a naive reference trigger.

One throwaway PostgreSQL 15 cluster, one pgbench database (scale 10), 2 clients, a fixed number of
transactions per client. The four variants run interleaved for several rounds on the same data so that
drift (log growth, the machine's other load) hits them alike; the median TPS of each is compared.

The reference is written here, in the style of supabase's supa_audit: a plpgsql trigger that stores
to_jsonb(NEW) and to_jsonb(OLD) whole into one unpartitioned table (bigserial primary key, BRIN on the
time, btree on the table oid). Ours is installed by module_utils/_audit.py exactly as the module does.

    .venv/bin/python benchmarks/audit_trigger_overhead.py [--transactions 1000] [--rounds 5] [--fsync]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder  # noqa: E402

from tests.harness.ansible import ensure_collection_path  # noqa: E402
from tests.harness.postgres import PostgresCluster  # noqa: E402

# Resolve ansible_collections.locksmith.ops.* to this checkout, as ansible itself does.
_AnsibleCollectionFinder(paths=[str(ensure_collection_path())])._install()
from ansible_collections.locksmith.ops.plugins.module_utils import _audit, _postgres  # noqa: E402

TABLES = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"]
NAIVE = [
    "CREATE SCHEMA naive_audit",
    """CREATE TABLE naive_audit.record_version (
        id bigserial PRIMARY KEY, op text NOT NULL, ts timestamptz NOT NULL DEFAULT now(),
        table_oid oid NOT NULL, table_schema name NOT NULL, table_name name NOT NULL,
        record jsonb, old_record jsonb)""",
    "CREATE INDEX ON naive_audit.record_version USING brin (ts)",
    "CREATE INDEX ON naive_audit.record_version (table_oid)",
    """CREATE FUNCTION naive_audit.log() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
    BEGIN
        INSERT INTO naive_audit.record_version (op, table_oid, table_schema, table_name, record, old_record)
        VALUES (TG_OP, TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME,
                CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END,
                CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END);
        RETURN NULL;
    END $$""",
]


def module_params(cluster, **over):
    params = {k: v.get("default") for k, v in _postgres.postgres_argument_spec().items()}
    params.update(login_host=cluster.host, login_port=cluster.port, ssl_mode="disable")
    params.update(
        database="bench",
        tables=TABLES,
        schema=None,
        state="present",
        capture="row",
        operations=["insert", "update", "delete"],
        exclude_columns=[],
        diff_only=False,
        audit_schema="audit",
        app_user_setting="app.user_id",
        retention_days=90,
        partitions_ahead=2,
        auditor_role=None,
        drop_log=False,
    )
    params.update(over)
    return params


def set_variant(cluster, variant):
    """Leave exactly one kind of audit trigger (or none) on the pgbench tables."""
    params = module_params(cluster, state="absent" if variant in ("none", "naive") else "present")
    if variant == "diff_only":
        params["diff_only"] = True
    conn = _postgres.connect(params, "bench")
    try:
        _audit.apply_plan(conn, _audit.plan_audit(conn, params)["steps"], check_mode=False)
    finally:
        conn.close()
    for table in TABLES:
        cluster.query(f"DROP TRIGGER IF EXISTS naive_audit ON {table}", dbname="bench")
        if variant == "naive":
            cluster.query(
                f"CREATE TRIGGER naive_audit AFTER INSERT OR UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION naive_audit.log()",
                dbname="bench",
            )


def pgbench(cluster, *args):
    argv = [str(cluster.bin_dir / "pgbench"), "-h", cluster.host, "-p", str(cluster.port), "-U", "postgres", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def server_cpu_seconds(cluster):
    """CPU time of the postmaster's exited children (the pgbench backends once they disconnect)."""
    pid = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def run_once(cluster, transactions):
    """(TPS, server CPU microseconds per transaction) of one pgbench run."""
    before = server_cpu_seconds(cluster)
    out = pgbench(cluster, "-n", "-c", "2", "-j", "2", "-t", str(transactions), "bench")
    cpu = server_cpu_seconds(cluster) - before
    tps = float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out).group(1))
    return tps, cpu * 1e6 / (2 * transactions)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1000, help="transactions per client per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fsync", action="store_true", help="run with fsync=on (the harness default is off)")
    args = parser.parse_args()
    cluster = PostgresCluster().start()
    try:
        if args.fsync:
            cluster.query("ALTER SYSTEM SET fsync = on")
            cluster.query("SELECT pg_reload_conf()")
        cluster.create_database("bench")
        pgbench(cluster, "-i", "-q", "-s", "10", "bench")
        for statement in NAIVE:
            cluster.query(statement, dbname="bench")
        set_variant(cluster, "full")  # creates the audit schema once, outside the timed runs
        variants = ["none", "full", "diff_only", "naive"]
        tps = {v: [] for v in variants}
        cpu = {v: [] for v in variants}
        for _round in range(args.rounds):
            for variant in variants:
                set_variant(cluster, variant)
                result = run_once(cluster, args.transactions)
                tps[variant].append(result[0])
                cpu[variant].append(result[1])
        med = {v: statistics.median(r) for v, r in tps.items()}
        cpu_med = {v: statistics.median(r) for v, r in cpu.items()}
        print(
            f"pgbench scale 10, 2 clients, {args.transactions} transactions/client, {args.rounds} rounds, "
            f"fsync={'on' if args.fsync else 'off'}"
        )
        print(f"{'variant':>10}  {'TPS median':>10}  {'server CPU us/txn':>17}  TPS per round")
        for variant in variants:
            runs = ", ".join(f"{t:.0f}" for t in tps[variant])
            print(f"{variant:>10}  {med[variant]:10.1f}  {cpu_med[variant]:17.0f}  ({runs})")
        for variant, label in (
            ("full", "full row audit"),
            ("diff_only", "diff_only audit"),
            ("naive", "naive reference"),
        ):
            tps_ratio = med[variant] / med["none"]
            cpu_ratio = cpu_med["none"] / cpu_med[variant]
            print(
                f"{label:>16}: TPS ratio {tps_ratio:.3f} (cost {1 - tps_ratio:.1%}); "
                f"CPU ratio {cpu_ratio:.3f} (cost {1 - cpu_ratio:.1%})"
            )
        print(
            f"diff_only vs naive: TPS ratio {med['diff_only'] / med['naive']:.3f}, "
            f"CPU ratio {cpu_med['naive'] / cpu_med['diff_only']:.3f} (target >= 1.0)"
        )
        print("targets: full row audit cost <= 25%; diff_only no slower than naive")
        rows = cluster.query("SELECT count(*) FROM audit.log", dbname="bench")[0][0]
        size = cluster.query(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits "
            "WHERE inhparent = 'audit.log'::regclass",
            dbname="bench",
        )[0][0]
        naive_size = cluster.query(
            "SELECT pg_size_pretty(pg_total_relation_size('naive_audit.record_version'))", dbname="bench"
        )[0][0]
        print(f"audit.log: {rows} rows, {size}; naive table: {naive_size}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
