"""DR drill RTO against plain `pg_restore -j2` and `pgbackrest restore`, side by side on the same data.

Data: pgbench at --scale (50 is about 750 MB) with random-hex filler (benchmarks/pg_backup_vs_pg_dump.py
prepares it). One pg_backup (zstd:3, exact row counts) is taken; then, in one run:
  * the drill: pg_backup_restore mode=drill, jobs=2 (fetch + SHA-256, decrypt/decompress, pg_restore -j2,
    verify row counts against the manifest), its RTO and phases;
  * `pg_restore -j2` of the same dump, already decompressed on local disk (the bare floor of a logical restore);
  * `pgbackrest restore` of a full pgBackRest backup of the same cluster into a new data directory (files only;
    starting the server and replaying WAL come on top).

    .venv/bin/python benchmarks/dr_drill.py             # quick: scale 10
    .venv/bin/python benchmarks/dr_drill.py --scale 50  # the figures in docs/dr.md
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from pg_backup_vs_pg_dump import as_postgres, pg_env, prepare, run_pg_backup, run_pgbackrest  # noqa: E402

import tests.conftest  # noqa: E402, F401 # pylint: disable=unused-import
from ansible_collections.locksmith.ops.plugins.module_utils import _restore, _restore_flows  # noqa: E402
from tests.harness.postgres import PG_BIN_DIR, PostgresCluster  # noqa: E402


def drill(cluster, backups, workdir):
    params = {k: v.get("default") for k, v in _restore.restore_argument_spec().items()}
    params.update(
        database="bench",
        login_host=cluster.host,
        login_port=cluster.port,
        ssl_mode="disable",
        pg_bin_dir=str(PG_BIN_DIR),
        destinations=[{"type": "local", "path": str(backups)}],
        jobs=2,
        work_dir=str(workdir),
    )
    job = _restore_flows.RestoreJob(params, [])
    job.plan()
    report = job.apply()["report"]
    if not report["verified"]:
        raise RuntimeError("drill failed: %s" % report["errors"])
    return report


def plain_pg_restore(cluster, backups, workdir):
    artefact = next(backups.rglob("bench.dump.zst"))
    plain = workdir / "plain.dump"
    subprocess.run(["zstd", "-d", "-q", "-f", str(artefact), "-o", str(plain)], check=True)
    cluster.query("CREATE DATABASE plain_restore")
    start = time.monotonic()
    subprocess.run(
        [str(PG_BIN_DIR / "pg_restore"), "-j2", "--exit-on-error", "-d", "plain_restore", str(plain)],
        env=pg_env(cluster),
        check=True,
    )
    seconds = time.monotonic() - start
    cluster.query("DROP DATABASE plain_restore")
    plain.unlink()
    return seconds


def pgbackrest_restore(cluster, workdir):
    run_pgbackrest(cluster, workdir)()
    target = workdir / "pgbackrest-restored"
    target.mkdir(mode=0o700)
    pg = pwd.getpwnam("postgres")
    os.chown(target, pg.pw_uid, pg.pw_gid)
    argv = ["pgbackrest", f"--config={workdir / 'pgbackrest.conf'}", "--stanza=bench", f"--pg1-path={target}"]
    start = time.monotonic()
    subprocess.run(as_postgres([*argv, "--process-max=2", "restore"]), check=True, capture_output=True)
    return time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (50 for the documented figures)")
    args = parser.parse_args()
    for tool in ("zstd", "pgbackrest"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found; apt-get install {tool}")
    workdir = Path(tempfile.mkdtemp(prefix="locksmith-drill-bench-"))
    cluster = PostgresCluster().start()
    try:
        start = time.monotonic()
        size = prepare(cluster, args.scale)
        print(f"pgbench scale {args.scale}, random hex filler: database {size / 1e6:.0f} MB", flush=True)
        backups = workdir / "backups"
        backups.mkdir()
        destination = {"type": "local", "path": str(backups)}
        stored = run_pg_backup(cluster, destination)()
        print(f"pg_backup zstd:3: {stored / 1e6:.1f} MB (prepared in {time.monotonic() - start:.0f} s)\n", flush=True)
        report = drill(cluster, backups, workdir)
        bare = plain_pg_restore(cluster, backups, workdir)
        backrest = pgbackrest_restore(cluster, workdir)
        phases = ", ".join(f"{name} {report['phases'][name]:.2f}" for name in _restore.PHASES)
        print(f"  {'':<44} {'seconds':>8} {'x pg_restore':>13}")
        rows = [
            ("drill RTO (fetch+decrypt+restore+verify)", report["rto_seconds"]),
            ("pg_restore -j2 (plain dump on disk)", bare),
            ("pgbackrest restore (files only, 2 procs)", backrest),
        ]
        for label, seconds in rows:
            print(f"  {label:<44} {seconds:8.2f} {seconds / bare:13.2f}")
        print(f"\ndrill phases (s): {phases}; RPO {report['rpo_seconds']:.0f} s")
        print(f"rows verified: {sum(1 for c in report['checks'] if c['check'] == 'row_count' and c['ok'])} tables")
        print(
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: wall times are only comparable when idle"
        )
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
