"""pg_backup: findings of review e, against a real PostgreSQL 15."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import signal

import pytest

from tests.harness.ansible import run_module_inprocess
from tests.integration import test_pg_backup
from tests.integration import test_pg_backup_latest as latest
from tests.integration.test_pg_backup import (
    KEY_HEX,
    _pg_dump_children,
    _wait_for,
    backup,
    conn,
    info,
    local,
    seed,
    start_module,
)

pytestmark = pytest.mark.postgres

OTHER_KEY_HEX = "a7" * 32
# About 25 MB, so a directory-format dump is still running when the module is killed.
big_database = test_pg_backup.big_database


def key_id_of(hex_key):
    """The key id as the manifest documents it, computed here on its own."""
    return hmac.new(bytes.fromhex(hex_key), b"locksmith.ops backup key id", hashlib.sha256).hexdigest()[:16]


def test_killed_directory_dump_leaves_no_plaintext_staging_after_the_next_run(pg_cluster, big_database, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "backups").mkdir()
    dest = local(tmp_path / "backups")
    args = dict(conn(pg_cluster), database=big_database, destinations=[dest], min_interval_seconds=0)
    args.update(format="directory", compression="none", encryption_key=KEY_HEX, work_dir=str(work))
    proc = start_module(args)
    _wait_for(lambda: _pg_dump_children(big_database))
    _wait_for(lambda: any(p.is_file() and p.stat().st_size > 0 for p in work.rglob("*")))
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    _wait_for(lambda: not _pg_dump_children(big_database), timeout=60)
    leftovers = [p for p in work.iterdir() if p.name.startswith(".locksmith-pg_backup-")]
    assert leftovers, "the kill left no staging directory; the test did not reproduce the crash"
    # The staging dump is the database in plain text, although the backup is encrypted.
    assert list(leftovers[0].rglob("toc.dat"))

    # A staging directory of a run still going (its owner holds the lock) is never touched.
    live = work / ".locksmith-pg_backup-live"
    live.mkdir(mode=0o700)
    (live / "owner").write_text("running")
    live_fd = os.open(live / "owner", os.O_RDWR)  # as a run holds it: a regular file, writable (NFS needs that)
    try:
        fcntl.flock(live_fd, fcntl.LOCK_EX)
        args.update(format="custom")
        again = run_module_inprocess("pg_backup", args)
        assert again["changed"] and not again.get("failed"), again.get("msg")
        assert not [p for p in leftovers if p.exists()], "the killed run's plaintext staging dump is still there"
        assert any("staging" in str(w) and str(leftovers[0]) in str(w) for w in again.get("warnings", [])), again.get(
            "warnings"
        )
        assert live.exists() and (live / "owner").exists()
        # A run that takes no backup (not due) removes a dead run's staging too, at once.
        dead = work / ".locksmith-pg_backup-dead"
        dead.mkdir(mode=0o700)
        (dead / "owner").write_text("12345\n")
        (dead / "toc.dat").write_text("plaintext")
        idle = run_module_inprocess("pg_backup", dict(args, min_interval_seconds=3600))
        assert idle["changed"] is False and not dead.exists(), idle
        assert live.exists()
    finally:
        os.close(live_fd)


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_key_file_readable_by_others_is_refused_and_by_group_warned(pg_cluster, pg_database, tmp_path, mode):
    seed(pg_cluster, pg_database, rows=10)
    key_file = tmp_path / "backup.key"
    key_file.write_text(KEY_HEX + "\n")
    key_file.chmod(mode)
    (tmp_path / "backups").mkdir()
    dest = local(tmp_path / "backups")
    result = backup(pg_cluster, pg_database, [dest], encryption_key_file=str(key_file))
    if mode & 0o004:
        assert result.get("failed") and str(key_file) in result["msg"] and "chmod 600" in result["msg"], result
        assert not list((tmp_path / "backups").rglob("manifest.json"))
    else:
        assert result["changed"] and not result.get("failed"), result.get("msg")
        assert any(str(key_file) in str(w) and "chmod 600" in str(w) for w in result.get("warnings", [])), result
    key_file.chmod(0o600)
    quiet = backup(pg_cluster, pg_database, [dest], encryption_key_file=str(key_file))
    assert quiet["changed"] and not quiet.get("failed"), quiet.get("msg")
    assert not [w for w in quiet.get("warnings", []) if str(key_file) in str(w)], quiet.get("warnings")


def test_backup_that_ended_in_the_future_is_no_negative_rpo(ansible, pg_cluster, pg_database, tmp_path):
    seed(pg_cluster, pg_database, rows=10)
    dest = local(tmp_path)
    good = backup(pg_cluster, pg_database, [dest])["backup"]
    ahead = backup(pg_cluster, pg_database, [dest])["backup"]
    path = tmp_path / pg_database / ahead["id"] / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["ended_epoch"] += 86400
    path.write_text(json.dumps(manifest))

    listing = info([dest], database=pg_database)
    assert listing["rpo_seconds"][pg_database] >= 0, listing["newest_good"]
    assert listing["newest_good"][pg_database]["id"] == good["id"], listing["newest_good"]
    assert [b["valid"] for b in listing["backups"]] == [True, True]
    assert any(ahead["id"] in str(w) and "in the future" in str(w) for w in listing.get("warnings", [])), listing

    run = latest.lookup_play(
        ansible, [("latest", "lookup('%s', '%s', destinations=%r)" % (latest.LOOKUP, pg_database, [dest]))]
    )
    assert run.rc == 0, run.stderr
    found = run.result("latest")["ansible_facts"]["out"]
    assert found["id"] == good["id"] and found["age_seconds"] >= 0, found


def test_wrong_key_on_verify_names_both_key_ids(pg_cluster, pg_database, tmp_path):
    seed(pg_cluster, pg_database, rows=10)
    dest = local(tmp_path)
    made = backup(pg_cluster, pg_database, [dest], encryption_key=KEY_HEX)
    assert made["backup"]["encryption"]["key_id"] == key_id_of(KEY_HEX)
    checked = backup(pg_cluster, pg_database, [dest], state="verified", encryption_key=OTHER_KEY_HEX)
    assert checked.get("failed"), checked
    assert key_id_of(KEY_HEX) in checked["msg"] and key_id_of(OTHER_KEY_HEX) in checked["msg"], checked["msg"]
    right = backup(pg_cluster, pg_database, [dest], state="verified", encryption_key=KEY_HEX)
    assert not right.get("failed"), right.get("msg")
