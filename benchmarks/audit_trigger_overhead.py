"""pgbench TPC-B-like TPS with no audit, our row audit (full and diff_only), and a naive reference trigger.

One throwaway PostgreSQL 15 cluster, one pgbench database (scale 10), 2 clients, a fixed number of
transactions per client. The four variants run interleaved (ABCD ABCD ...) for several rounds on the same
data so that drift and the machine's other load hit them alike; before every run both logs are emptied,
pgbench's history is truncated, its small tables vacuumed and a CHECKPOINT taken, so every run starts from
the same state. The median TPS and the median server CPU per transaction of each variant are compared,
side by side, with the load average of the machine during the runs.

The reference is written here, in the style of supabase's supa_audit: a plpgsql trigger that stores
to_jsonb(NEW) and to_jsonb(OLD) whole into one unpartitioned table (bigserial primary key, BRIN on the
time, btree on the table oid). Ours is installed by module_utils/_audit.py exactly as the module does.

    .venv/bin/python benchmarks/audit_trigger_overhead.py [--transactions 2000] [--rounds 5] [--fsync]
    .venv/bin/python benchmarks/audit_trigger_overhead.py --per-row    # where a row's cost goes
    .venv/bin/python benchmarks/audit_trigger_overhead.py --wide       # the case diff_only is for

--wide runs the same comparison on another workload: a table of 40 columns (integers, text, timestamps,
booleans; 100 000 rows) where each transaction updates one integer column of one random row. The TPC-B
rows are narrow and mostly change, so diff_only saves little there; here it stores one column of forty.

--per-row measures, instead, the CPU time of one backend (from /proc/PID/schedstat, which other load on
the machine disturbs far less than wall time) per row of one UPDATE of 20 000 rows, for the triggers and
for stripped-down trigger functions that isolate one cost each: the INSERT into a copy of the log without
indexes, with our two indexes, into the partitioned log itself, and our function without its SET
clauses (extra_float_digits alone, and both); and the WHEN clause a table with exclude_columns gets, on an
UPDATE that is logged and on one that touches only the excluded column (the clause runs, the function does
not). Minimum of 5 runs in each of 2 interleaved passes.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder  # noqa: E402

from tests.harness.ansible import ensure_collection_path  # noqa: E402
from tests.harness.postgres import PostgresCluster  # noqa: E402

# Resolve ansible_collections.locksmith.ops.* to this checkout, as ansible itself does.
_AnsibleCollectionFinder(paths=[str(ensure_collection_path())])._install()
from ansible_collections.locksmith.ops.plugins.module_utils import _audit, _audit_schema, _postgres  # noqa: E402

TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")
WIDE_ROWS = 100_000
# 40 columns: the key, 10 integers, 20 short texts, 5 timestamps, 4 booleans, filled by their defaults.
WIDE_COLUMNS = (
    [f"n{i} integer NOT NULL DEFAULT (random() * 1000)::integer" for i in range(1, 11)]
    + [f"t{i} text NOT NULL DEFAULT md5(random()::text)" for i in range(1, 21)]
    + [f"ts{i} timestamptz NOT NULL DEFAULT now() - random() * interval '365 days'" for i in range(1, 6)]
    + [f"b{i} boolean NOT NULL DEFAULT random() < 0.5" for i in range(1, 5)]
)
WIDE = [
    (f"CREATE TABLE wide (id integer PRIMARY KEY, {', '.join(WIDE_COLUMNS)})", None),
    ("INSERT INTO wide (id) SELECT g FROM generate_series(1, %s) AS g", (WIDE_ROWS,)),
    ("VACUUM ANALYZE wide", None),
]
WIDE_SCRIPT = f"\\set id random(1, {WIDE_ROWS})\nUPDATE wide SET n1 = n1 + 1 WHERE id = :id;\n"
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
        tables=list(TABLES),
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


def set_variant(cluster, variant, tables=TABLES):
    """Leave exactly one kind of audit trigger (or none) on the benchmark's tables."""
    params = module_params(cluster, tables=list(tables), state="absent" if variant in ("none", "naive") else "present")
    if variant == "diff_only":
        params["diff_only"] = True
    conn = _postgres.connect(params, "bench")
    try:
        _audit.apply_plan(conn, _audit.plan_audit(conn, params)["steps"], check_mode=False)
    finally:
        conn.close()
    for table in tables:
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


def reset(cluster, vacuum="pgbench_branches, pgbench_tellers"):
    """Same starting state for every run: empty logs and history, vacuumed updated tables, a checkpoint."""
    for statement in (
        "TRUNCATE audit.log, naive_audit.record_version, pgbench_history",
        f"VACUUM {vacuum}",
        "CHECKPOINT",
    ):
        cluster.query(statement, dbname="bench")


def backends_gone(cluster):
    """Wait until pgbench's backends have exited and been reaped, so their CPU time is counted."""
    for _attempt in range(100):
        if not cluster.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgbench'"):
            break
        time.sleep(0.05)
    time.sleep(0.2)


def run_once(cluster, transactions, workload):
    """(TPS, server CPU microseconds per transaction) of one pgbench run: workload's script and tables to vacuum."""
    reset(cluster, ", ".join(workload["vacuum"]))
    before = server_cpu_seconds(cluster)
    out = pgbench(cluster, "-n", "-c", "2", "-j", "2", "-t", str(transactions), *workload["script"], "bench")
    backends_gone(cluster)
    cpu = server_cpu_seconds(cluster) - before
    tps = float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out).group(1))
    return tps, cpu * 1e6 / (2 * transactions)


def log_size(cluster, variant):
    """(rows, pretty size) of the log the variant writes, right after its run."""
    if variant == "naive":
        query = (
            "SELECT count(*), pg_size_pretty(pg_total_relation_size('naive_audit.record_version')) "
            "FROM naive_audit.record_version"
        )
    else:
        query = (
            "SELECT (SELECT count(*) FROM audit.log), pg_size_pretty(sum(pg_total_relation_size(inhrelid))) "
            "FROM pg_inherits WHERE inhparent = 'audit.log'::regclass"
        )
    return tuple(cluster.query(query, dbname="bench")[0])


def paired(results, variant, base):
    """Median of the per-round ratios variant/base: runs of one round are seconds apart, so drift cancels."""
    return statistics.median(a / b for a, b in zip(results[variant], results[base], strict=True))


PER_ROW_SETUP = [
    "CREATE SCHEMA parts",
    "CREATE TABLE parts.bare (LIKE audit.log INCLUDING DEFAULTS)",
    "CREATE TABLE parts.indexed (LIKE audit.log INCLUDING DEFAULTS)",
    "CREATE INDEX ON parts.indexed USING brin (logged_at)",
    "CREATE INDEX ON parts.indexed (schema_name, table_name, record_key)",
]
# The same INSERT our function runs, minus the row data: only the cost of writing one entry.
INSERT_ONLY = """CREATE FUNCTION parts.insert_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {table} (transaction_id, operation, capture, schema_name, table_name, record_key, db_role,
                         session_role, application_name, client_addr, app_user_id)
    VALUES (txid_current(), TG_OP, 'row', TG_TABLE_SCHEMA, TG_TABLE_NAME, jsonb_build_object('aid', NEW.aid),
            current_user, session_user, current_setting('application_name'), inet_client_addr(), NULL);
    RETURN NULL;
END $$"""
FULL_ARGS = "'false', 'app.user_id', '{}', '{}', 'aid'"


def per_row(cluster, rows=20000, repeat=5):
    """Backend CPU microseconds per updated row of pgbench_accounts, per trigger function."""
    for statement in PER_ROW_SETUP:
        cluster.query(statement, dbname="bench")
    for name, table in (("bare", "parts.bare"), ("indexed", "parts.indexed"), ("log", "audit.log")):
        cluster.query(INSERT_ONLY.format(name=name, table=table), dbname="bench")
    # Our function without one or both of its SET clauses (pg_get_functiondef prints each on a line of its own).
    body = cluster.query("SELECT pg_get_functiondef('audit.log_row'::regproc)", dbname="bench")[0][0]
    for name, dropped in (
        ("no_float_digits", ("extra_float_digits",)),
        ("no_set", ("search_path", "extra_float_digits")),
    ):
        lines = [line for line in body.splitlines() if not any(line.startswith(" SET " + g) for g in dropped)]
        cluster.query("\n".join(lines).replace("audit.log_row()", "parts.log_row_%s()" % name), dbname="bench")
        # Run as the same owner as ours: a superuser's function would skip the privilege checks ours pays for.
        cluster.query(
            "ALTER FUNCTION parts.log_row_%s() OWNER TO %s" % (name, _audit_schema.WRITER_ROLE), dbname="bench"
        )
    set_variant(cluster, "diff_only")
    raw = cluster.query(
        "SELECT encode(tgargs, 'escape'), tgnargs FROM pg_trigger WHERE tgname = 'locksmith_audit_update' "
        "AND tgrelid = 'pgbench_accounts'::regclass",
        dbname="bench",
    )[0]
    diff_args = ", ".join("'%s'" % a.replace("'", "''") for a in raw[0].split("\\000")[: raw[1]])
    # With exclude_columns the UPDATE trigger carries the WHEN clause that calls audit.row_changed(): taken from
    # the catalog as the module made it, so the figure is for the clause users get.
    excluded = module_params(cluster, tables=["pgbench_accounts"], exclude_columns=["filler"])
    conn = _postgres.connect(excluded, "bench")
    try:
        _audit.apply_plan(conn, _audit.plan_audit(conn, excluded)["steps"], check_mode=False)
    finally:
        conn.close()
    with_when = cluster.query(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'locksmith_audit_update' "
        "AND tgrelid = 'pgbench_accounts'::regclass",
        dbname="bench",
    )[0][0].replace("TRIGGER locksmith_audit_update ", "TRIGGER per_row ", 1)
    if " WHEN (" not in with_when:
        raise SystemExit("expected a WHEN clause on the UPDATE trigger of a table with exclude_columns: " + with_when)
    set_variant(cluster, "none")
    counted = "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= %s"
    # Touches only the excluded column: the WHEN clause runs, the function does not.
    excluded_only = "UPDATE pgbench_accounts SET filler = filler WHERE aid <= %s"
    cases = [
        ("no trigger", None, "", counted),
        ("naive reference", "naive_audit.log()", "", counted),
        ("ours, full", "audit.log_row", FULL_ARGS, counted),
        ("ours, diff_only", "audit.log_row", diff_args, counted),
        ("ours, full, no SET extra_float_digits", "parts.log_row_no_float_digits", FULL_ARGS, counted),
        ("ours, full, no SET at all", "parts.log_row_no_set", FULL_ARGS, counted),
        ("ours, full, exclude_columns WHEN clause", with_when, "", counted),
        ("no trigger, excluded column only", None, "", excluded_only),
        ("WHEN clause, excluded column only", with_when, "", excluded_only),
        ("INSERT only: log copy, no index", "parts.insert_bare", "", counted),
        ("INSERT only: copy + BRIN + btree", "parts.insert_indexed", "", counted),
        ("INSERT only: partitioned log", "parts.insert_log", "", counted),
    ]
    conn = cluster.connect("bench")
    results = {}
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            stat = Path("/proc/%d/schedstat" % cur.fetchone()[0])
            for _pass in range(2):
                for label, function, args, update in cases:
                    cur.execute("DROP TRIGGER IF EXISTS per_row ON pgbench_accounts")
                    if function and function.startswith("CREATE TRIGGER"):
                        cur.execute(function)
                    elif function:
                        cur.execute(
                            "CREATE TRIGGER per_row AFTER UPDATE ON pgbench_accounts FOR EACH ROW "
                            "EXECUTE FUNCTION %s(%s)" % (function.replace("()", ""), args)
                        )
                    for _run in range(repeat):
                        before = int(stat.read_text().split()[0])
                        cur.execute(update, (rows,))
                        used = (int(stat.read_text().split()[0]) - before) / 1000 / rows
                        results[label] = min(results.get(label, used), used)
                    cur.execute("TRUNCATE audit.log, naive_audit.record_version, parts.bare, parts.indexed")
                    cur.execute("CHECKPOINT")
    finally:
        conn.close()
    print(
        f"backend CPU per updated row, one UPDATE of {rows} rows, min of {repeat} x 2 passes; load average "
        f"{' '.join('%.2f' % x for x in os.getloadavg())}"
    )
    for label, _function, _args, update in cases:
        base = results["no trigger" if update == counted else "no trigger, excluded column only"]
        print(f"{label:>40}: {results[label]:6.1f} us/row, trigger {results[label] - base:6.1f} us/row")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2000, help="transactions per client per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fsync", action="store_true", help="run with fsync=on (the harness default is off)")
    parser.add_argument("--per-row", action="store_true", help="measure where one row's trigger cost goes")
    parser.add_argument("--wide", action="store_true", help="one column of a 40-column row updated per transaction")
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
        if args.per_row:
            per_row(cluster)
            return
        workload = {"tables": TABLES, "script": [], "vacuum": ["pgbench_branches", "pgbench_tellers"]}
        title = "pgbench scale 10 (TPC-B-like)"
        if args.wide:
            for statement, params in WIDE:
                cluster.query(statement, params, dbname="bench")
            script = cluster.datadir.parent / "wide.sql"
            script.write_text(WIDE_SCRIPT)
            workload = {"tables": ("wide",), "script": ["-f", str(script)], "vacuum": ["wide"]}
            title = f"one column of a 40-column row updated per transaction ({WIDE_ROWS} rows)"
        variants = ["none", "full", "diff_only", "naive"]
        tps = {v: [] for v in variants}
        cpu = {v: [] for v in variants}
        sizes = {}
        load_before = os.getloadavg()
        for _round in range(args.rounds):
            for variant in variants:
                set_variant(cluster, variant, workload["tables"])
                result = run_once(cluster, args.transactions, workload)
                tps[variant].append(result[0])
                cpu[variant].append(result[1])
                if variant != "none":
                    sizes[variant] = log_size(cluster, variant)
        load_after = os.getloadavg()
        med = {v: statistics.median(r) for v, r in tps.items()}
        cpu_med = {v: statistics.median(r) for v, r in cpu.items()}
        print(
            f"{title}, 2 clients, {args.transactions} transactions/client, {args.rounds} rounds, "
            f"fsync={'on' if args.fsync else 'off'}; load average (1, 5, 15 min) before "
            f"{' '.join('%.2f' % x for x in load_before)}, after {' '.join('%.2f' % x for x in load_after)}"
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
                f"{label:>16}: TPS ratio {tps_ratio:.3f} (cost {1 - tps_ratio:.1%}), same-round ratios' median "
                f"{paired(tps, variant, 'none'):.3f}; CPU ratio {cpu_ratio:.3f} (cost {1 - cpu_ratio:.1%})"
            )
        print(
            f"diff_only vs naive: TPS ratio {med['diff_only'] / med['naive']:.3f}, same-round ratios' median "
            f"{paired(tps, 'diff_only', 'naive'):.3f}, CPU ratio {cpu_med['naive'] / cpu_med['diff_only']:.3f} "
            "(target >= 1.0)"
        )
        print("targets: full row audit cost <= 25%; diff_only no slower than naive")
        for variant in ("full", "diff_only", "naive"):
            print(f"log after one {variant} run: {sizes[variant][0]} rows, {sizes[variant][1]}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
