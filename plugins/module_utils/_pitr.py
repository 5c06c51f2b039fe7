# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Point-in-time recovery with pgBackRest into a new data directory, started on its own port and promoted.

The restored server never archives (archive_mode=off on its command line), so it cannot write into the
stanza of the cluster it was restored from.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess  # nosec B404 - runs pgbackrest/pg_ctl with argv lists, never a shell
import time

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres
from ansible_collections.locksmith.ops.plugins.module_utils import _restore as R
from ansible_collections.locksmith.ops.plugins.module_utils import _restore_checks as C
from ansible_collections.locksmith.ops.plugins.module_utils._backup import iso
from ansible_collections.locksmith.ops.plugins.module_utils._pg_dump import find_tool

TARGET_TYPES = ["immediate", "time", "lsn"]
PROMOTE_TIMEOUT_SECONDS = 120


def pitr_argument_spec():
    """Options only mode=pitr uses."""
    return dict(
        pgbackrest_stanza=dict(type="str"),
        pgbackrest_config=dict(type="path"),
        pitr_target_type=dict(type="str", default="immediate", choices=TARGET_TYPES),
        pitr_target=dict(type="str"),
        pitr_data_dir=dict(type="path"),
        pitr_port=dict(type="int", default=5433),
    )


def as_postgres(argv):
    """PostgreSQL programs refuse root; run them as postgres when we are root."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv, describe):
    proc = subprocess.run(as_postgres(argv), capture_output=True, text=True, check=False)  # noqa: S603 # nosec B603
    if proc.returncode != 0:
        raise R.RestoreError(
            "%s failed (exit %d): %s" % (describe, proc.returncode, (proc.stderr or proc.stdout).strip())
        )
    return proc.stdout


class PitrJob:
    """mode=pitr: pgbackrest restore --type=<target> into pitr_data_dir, start on pitr_port, promote, verify."""

    def __init__(self, params, warnings, clock=time.time):
        self.params = params
        self.warnings = warnings
        self.clock = clock
        self.database = _postgres.validate_identifier(params["database"], "database")
        for option in ("pgbackrest_stanza", "pitr_data_dir"):
            if not params.get(option):
                raise R.RestoreError("mode=pitr needs %s" % option, option=option)
        if params["pitr_target_type"] != "immediate" and not params.get("pitr_target"):
            raise R.RestoreError(
                "pitr_target_type=%s needs pitr_target (a timestamp with time zone, or an LSN like 0/3A000028)"
                % params["pitr_target_type"],
                option="pitr_target",
            )
        if not os.path.isabs(params["pitr_data_dir"]):
            raise R.RestoreError("pitr_data_dir '%s' must be an absolute path" % params["pitr_data_dir"])
        self.pgbackrest = shutil.which("pgbackrest")
        if self.pgbackrest is None:
            raise R.RestoreError("pgbackrest not found on PATH; install it (apt-get install pgbackrest)")
        self.pg_ctl = find_tool("pg_ctl", params.get("pg_bin_dir"))
        self.base = [self.pgbackrest, "--stanza=%s" % params["pgbackrest_stanza"]]
        if params.get("pgbackrest_config"):
            self.base.insert(1, "--config=%s" % params["pgbackrest_config"])
        self.server = R.Server(dict(params, login_port=params["pitr_port"]))
        self.newest = None

    def plan(self):
        """Newest pgBackRest backup (for the RPO) and an empty target directory; changes nothing."""
        data_dir = self.params["pitr_data_dir"]
        if os.path.exists(data_dir) and os.listdir(data_dir):
            raise R.RestoreError(
                "pitr_data_dir '%s' is not empty; PITR restores only into a new, empty data directory" % data_dir,
                option="pitr_data_dir",
            )
        info = json.loads(_run([*self.base, "--output=json", "info"], "pgbackrest info") or "[]")
        backups = [b for stanza in info for b in stanza.get("backup", [])]
        if not backups:
            raise R.RestoreError(
                "stanza '%s' has no backup; take one with pgbackrest backup" % self.params["pgbackrest_stanza"],
                option="pgbackrest_stanza",
            )
        self.newest = max(backups, key=lambda b: b["timestamp"]["stop"])
        return {
            "mode": "pitr",
            "id": self.newest["label"],
            "source": "pgbackrest stanza %s" % self.params["pgbackrest_stanza"],
            "location": data_dir,
            "backup_ended_at": iso(self.newest["timestamp"]["stop"]),
            "target_database": self.database,
            "target_exists": False,
            "target": {"type": self.params["pitr_target_type"], "value": self.params.get("pitr_target")},
            "skipped": [],
        }

    def apply(self):
        started = self.clock()
        phases = R.Phases()
        checks, failure = [], None
        data_dir = self.params["pitr_data_dir"]
        try:
            with phases.timed("restore"):
                self._prepare_dir(data_dir)
                argv = [*self.base, "--pg1-path=%s" % data_dir, "--type=%s" % self.params["pitr_target_type"]]
                if self.params["pitr_target_type"] != "immediate":
                    argv.append("--target=%s" % self.params["pitr_target"])
                _run(
                    [*argv, "--target-action=promote", "restore"],
                    "pgbackrest restore (newest backup %s stopped at %s)"
                    % (self.newest["label"], iso(self.newest["timestamp"]["stop"])),
                )
                self._start_and_promote(data_dir)
            with phases.timed("verify"):
                checks += C.run_assertions(
                    self.server.params, self.database, self.params.get("assertions") or [], self.server.queries
                )
                checks += C.check_present(
                    self.server, self.database, self.params.get("extensions") or [], self.params.get("roles") or []
                )
        except R.RestoreError as err:
            failure = err
        ended = self.clock()
        failed = [c for c in checks if not c["ok"]]
        errors = ([str(failure)] if failure else []) + [
            "%s %s: expected %s, got %s" % (c["check"], c["subject"], c["expected"], c["actual"]) for c in failed
        ]
        verified = failure is None and not failed
        rto, rpo = round(ended - started, 3), round(started - self.newest["timestamp"]["stop"], 3)
        report = {
            "mode": "pitr",
            "database": self.database,
            "backup_id": self.newest["label"],
            "source": "pgbackrest stanza %s" % self.params["pgbackrest_stanza"],
            "backup_ended_at": iso(self.newest["timestamp"]["stop"]),
            "target_database": "%s on port %d" % (data_dir, self.params["pitr_port"]),
            "target_fate": "running, promoted" if verified else "left for inspection",
            **R.measured_report(started, verified, phases, rto, rpo, self.params, checks, errors),
        }
        result = {"report": report}
        if self.params.get("report_dir"):
            result["report_files"] = C.write_report(self.params["report_dir"], report)
        return result

    def _prepare_dir(self, data_dir):
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        os.chmod(data_dir, 0o700)
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(data_dir, pg.pw_uid, pg.pw_gid)

    def _start_and_promote(self, data_dir):
        # The clone must not archive into the source's stanza, and must not take the source's port or socket.
        options = "-c port=%d -c archive_mode=off -c unix_socket_directories='%s'" % (
            self.params["pitr_port"],
            data_dir,
        )
        log = os.path.join(data_dir, "pitr-start.log")
        _run([self.pg_ctl, "-D", data_dir, "-l", log, "-o", options, "-w", "-t", "300", "start"], "pg_ctl start")
        deadline = self.clock() + PROMOTE_TIMEOUT_SECONDS
        while True:
            try:
                rows = self.server.run("postgres", "SELECT pg_is_in_recovery() AS r", rows=True)
                if not rows[0]["r"]:
                    return
            except R.RestoreError:
                raise
            except Exception as err:
                if self.clock() > deadline:
                    raise R.RestoreError(
                        "restored server on port %d never accepted connections: %s" % (self.params["pitr_port"], err)
                    ) from err
            if self.clock() > deadline:
                raise R.RestoreError(
                    "restored server in '%s' did not finish recovery within %ds; see %s"
                    % (data_dir, PROMOTE_TIMEOUT_SECONDS, log)
                )
            time.sleep(0.5)
