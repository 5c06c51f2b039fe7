"""pg_backup_restore fed hostile and broken inputs against a real PostgreSQL 15 and pgBackRest.

Every input is refused with a message naming the option, nothing runs on the server, no command runs
through a shell, and a PITR that fails after pgBackRest wrote files leaves no data directory that looks
valid and no server running.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.harness.ansible import run_module_inprocess
from tests.integration import test_dr_restore

pytestmark = pytest.mark.postgres
# The PITR fixture of test_dr_restore: a cluster archiving into a pgBackRest stanza, with one backup.
archived_cluster = test_dr_restore.archived_cluster
pitr_args = test_dr_restore.pitr_args

PAYLOAD = "users'; DROP TABLE x --"


def conn(cluster):
    return {"login_host": cluster.host, "login_port": cluster.port, "ssl_mode": "disable", "connect_timeout": 3}


def postmasters_in(directory):
    """PIDs of postgres servers whose data directory lies under ``directory``."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "postgres -D %s" % directory in line]


# ---- mode=pitr ----------------------------------------------------------------------------------
def test_pitr_hostile_inputs_are_refused_before_anything_runs(archived_cluster):
    cluster, conf, work, _base = archived_cluster
    marker = Path("/tmp") / ("locksmith-owned-%s" % uuid.uuid4().hex[:8])  # postgres can write there
    live = str(cluster.datadir)
    os.symlink(live, work / "link-to-live")
    os.symlink(work / "missing", work / "dangling")
    (work / "a-file").write_text("x")

    def args(**changes):
        return pitr_args(cluster, conf, **dict({"pitr_data_dir": str(work / "restored")}, **changes))

    cases = [
        # pg_ctl hands -D to /bin/sh: this ran `touch` as postgres; pgBackRest wrote it into restore_command.
        ("pitr_data_dir", {"pitr_data_dir": str(work / ("r$(touch %s)" % marker))}),
        ("pitr_data_dir", {"pitr_data_dir": str(work / "r'x")}),
        ("pitr_data_dir", {"pitr_data_dir": str(work / ("r\nrecovery_end_command='touch %s'" % marker))}),
        ("pitr_data_dir", {"pitr_data_dir": str(work / ".." / os.path.relpath(live, work.parent))}),
        ("pitr_data_dir", {"pitr_data_dir": str(work / "link-to-live")}),
        ("pitr_data_dir", {"pitr_data_dir": str(work / "dangling")}),  # was a FileExistsError traceback
        ("pitr_data_dir", {"pitr_data_dir": str(work / "a-file")}),  # was a NotADirectoryError traceback
        ("pitr_data_dir", {"pitr_data_dir": live + "/pg_notify"}),  # was restored and started inside the live one
        ("pitr_data_dir", {"pitr_data_dir": "restored"}),
        ("pitr_data_dir", {"pitr_data_dir": "/"}),
        ("pgbackrest_stanza", {"pgbackrest_stanza": "pitr'; touch %s #" % marker}),
        ("pgbackrest_stanza", {"pgbackrest_stanza": "pitr\nx"}),
        ("pgbackrest_stanza", {"pgbackrest_stanza": None}),
        ("pitr_port", {"pitr_port": 0}),
        ("pitr_port", {"pitr_port": 70000}),
        ("pitr_port", {"pitr_port": cluster.port}),
        ("pitr_target", {"pitr_target_type": "time", "pitr_target": "yesterday"}),
        ("pitr_target", {"pitr_target_type": "time", "pitr_target": "2026-11-27 02:00:00"}),  # no zone
        (
            "pitr_target",
            {"pitr_target_type": "time", "pitr_target": "2026-11-27 02:00:00+00\nrestore_command='touch %s'" % marker},
        ),
        ("pitr_target", {"pitr_target_type": "lsn", "pitr_target": "0/0' recovery_end_command='touch %s" % marker}),
        ("pitr_target", {"pitr_target_type": "lsn", "pitr_target": "zz/yy"}),
        ("pitr_target", {"pitr_target_type": "time", "pitr_target": "2026-11-27 02:00:00+25"}),  # no such zone
        # Older than every backup: pgBackRest wrote the files, then the server stopped short of the target.
        ("pitr_target", {"pitr_target_type": "time", "pitr_target": "2000-01-01 00:00:00+00"}),
        ("pitr_target", {"pitr_target_type": "lsn", "pitr_target": "0/1"}),
        # Becomes listen_addresses on the command line pg_ctl hands to /bin/sh.
        ("login_host", {"login_host": "127.0.0.1' -c archive_command='touch %s" % marker}),
        ("pitr_target_type", {"pitr_target": "2026-11-27 02:00:00+00"}),  # was silently restored to the backup end
        ("roles", {"roles": ["a\x00b"]}),
        ("target_database", {"target_database": PAYLOAD}),  # was ignored while the restore ran
        ("pgbackrest_config", {"pgbackrest_config": str(work / "missing.conf")}),
    ]
    before = sorted(os.listdir(work))
    for option, changes in cases:
        for check in (True, False):
            result = run_module_inprocess("pg_backup_restore", args(**changes), check=check)
            assert result.get("failed") and option in result["msg"], (option, changes, result)
            assert "report" not in result and result["executed_queries"] == [], result
    assert not marker.exists(), "a command ran through a shell"
    assert sorted(os.listdir(work)) == before, "a refused run created something"
    assert os.listdir(live + "/pg_notify") == []
    assert postmasters_in(work) == []
    assert cluster.query("SELECT count(*) FROM t", dbname="app")[0][0] == 100


def test_pitr_that_fails_after_pgbackrest_wrote_files_leaves_nothing_that_looks_valid(archived_cluster):
    cluster, conf, work, _base = archived_cluster
    # FF/0 is never reached: recovery ends before it and the server stops.
    args = pitr_args(cluster, conf, pitr_target_type="lsn", pitr_target="FF/0")
    created = work / "restored"
    kept = work / "empty-before"
    kept.mkdir()
    for data_dir in (created, kept):
        result = run_module_inprocess("pg_backup_restore", dict(args, pitr_data_dir=str(data_dir)))
        assert result["failed"] and "no server was left running" in result["msg"], result
        assert "server log:" in result["msg"] and "FF/0" in result["msg"], result
        assert result["report"]["target_fate"] == "removed: the restore failed"
        assert postmasters_in(data_dir) == []
    # A directory the module created is gone; one the operator made stays, empty, so the next run can use it.
    assert not created.exists()
    assert kept.is_dir() and os.listdir(kept) == []


# ---- names and work_dir, single database and all-databases -----------------------------------------
@pytest.fixture
def backed_up(pg_cluster, pg_database, tmp_path):
    pg_cluster.query(
        "CREATE TABLE x (id int, filler text); "
        "INSERT INTO x SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 20000) g; ANALYZE",
        dbname=pg_database,
    )
    backups = tmp_path / "backups"
    backups.mkdir()
    destinations = [{"type": "local", "path": str(backups)}]
    made = run_module_inprocess(
        "pg_backup", dict(conn(pg_cluster), database=pg_database, destinations=destinations, min_interval_seconds=0)
    )
    assert made["changed"], made
    return pg_database, destinations, made["backup"]


def databases(cluster):
    return {row[0] for row in cluster.query("SELECT datname FROM pg_database")}


@pytest.mark.parametrize(
    ("option", "changes"),
    [
        ("roles", {"roles": [PAYLOAD + "\n"]}),
        ("roles", {"roles": [""]}),
        ("roles", {"roles": ["a\x00b"]}),
        ("roles", {"roles": ["r" * 64]}),
        ("extensions", {"extensions": [PAYLOAD]}),
        ("extensions", {"extensions": ["../../../etc/passwd"]}),
        ("extensions", {"extensions": ["a\x00b"]}),
        ("databases", {"databases": [PAYLOAD]}),
        ("databases", {"database": "all-databases", "databases": [PAYLOAD]}),
        ("databases", {"database": "all-databases", "databases": ['a"b']}),
        ("databases", {"database": "all-databases", "databases": ["d" * 64]}),
        ("databases", {"database": "all-databases", "databases": [""]}),
        ("databases", {"database": "all-databases", "databases": ["a\x00b"]}),
        ("roles", {"database": "all-databases", "roles": ["a\x00b"]}),
        ("target_database", {"target_database": PAYLOAD}),
        ("target_database", {"target_database": "a" * 64}),
        ("database", {"database": "../../../etc/passwd"}),
        ("work_dir", {"work_dir": "relative/work"}),
        ("work_dir", {"work_dir": "/nonexistent/work"}),
    ],
)
def test_bad_names_and_work_dirs_fail_naming_the_option_before_anything_runs(
    pg_cluster, backed_up, option, changes, tmp_path
):
    database, destinations, _manifest = backed_up
    before = databases(pg_cluster)
    args = dict(conn(pg_cluster), database=database, destinations=destinations)
    args.update(changes)
    for check in (True, False):  # check mode predicts the real run's failure
        result = run_module_inprocess("pg_backup_restore", args, check=check)
        assert result.get("failed") and "%s" % option in result["msg"], result
        assert "report" not in result and result["executed_queries"] == [], result
        # the all-databases wording blamed the backup ("the manifest was altered") for the operator's input
        assert "manifest was altered" not in result["msg"]
    assert databases(pg_cluster) == before
    assert pg_cluster.query("SELECT count(*) FROM x", dbname=database)[0][0] == 20000


def _tmpfs(path, size_bytes):
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=%d" % size_bytes, "tmpfs", str(path)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % mounted.stderr.decode().strip())


@pytest.mark.parametrize("phase", ["fetch", "decrypt"])
def test_a_full_work_dir_fails_naming_work_dir_and_leaves_no_partial_files(pg_cluster, backed_up, tmp_path, phase):
    database, destinations, manifest = backed_up
    size = manifest["artefacts"][0]["size_bytes"]
    assert size > 300_000, manifest  # the decompressed dump is larger still
    work = tmp_path / "small"
    # Room for less than the fetched artefact, or for it and a sliver of the decompressed dump.
    _tmpfs(work, size // 2 if phase == "fetch" else size + 64 * 1024)
    before = databases(pg_cluster)
    try:
        result = run_module_inprocess(
            "pg_backup_restore",
            dict(conn(pg_cluster), database=database, destinations=destinations, work_dir=str(work)),
        )
        # Was an OSError traceback (fetch), or "cannot be decrypted ... the key may be wrong" (decrypt).
        assert result.get("failed") and "No space left on device" in result["msg"], result
        assert "work_dir" in result["msg"] and str(work) in result["msg"], result
        assert "key may be wrong" not in result["msg"]
        assert os.listdir(work) == [], "partial files left in work_dir"
        assert databases(pg_cluster) == before
    finally:
        subprocess.run(["umount", str(work)], capture_output=True, check=False)
