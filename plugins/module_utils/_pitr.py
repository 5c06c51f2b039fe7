# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Point-in-time recovery with pgBackRest into a new data directory, started on its own port and promoted.

The restored server never archives (archive_mode=off on its command line), so it cannot write into the
stanza of the cluster it was restored from.
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
import re
import shutil
import socket
import subprocess  # nosec B404 - runs pgbackrest/pg_ctl with argv lists, never a shell
import time

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres
from ansible_collections.locksmith.ops.plugins.module_utils import _restore as R
from ansible_collections.locksmith.ops.plugins.module_utils import _restore_checks as C
from ansible_collections.locksmith.ops.plugins.module_utils._backup import iso
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._pg_dump import find_tool

TARGET_TYPES = ["immediate", "time", "lsn"]
PROMOTE_TIMEOUT_SECONDS = 120
# pgBackRest writes the stanza, config path and data directory unquoted into restore_command in
# postgresql.auto.conf, and pg_ctl hands -D, -l and -o to /bin/sh: only characters that mean nothing to
# either (no quotes, spaces, $, `, backslash, %, ',' or control characters) may appear in them.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_.@+/-]*\Z")
_SAFE_STANZA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
# The time forms pgBackRest reads, with the zone required: without one it assumes the host's local time.
_TARGET_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(\.\d{1,3})?([+-]\d{2}(:?\d{2})?)\Z")
_TARGET_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}\Z")
# sun_path holds 108 bytes with its terminating NUL; the server's socket is <pitr_data_dir>/.s.PGSQL.<port>.
MAX_SOCKET_PATH_BYTES = 107
LOG_TAIL_CHARS = 1500


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


def safe_path(value, option):
    """An absolute, normalised path with no character restore_command or /bin/sh would read as syntax."""
    if not os.path.isabs(value):
        raise R.RestoreError("%s %r must be an absolute path" % (option, value), option=option)
    trimmed = value.rstrip("/") or "/"
    if not _SAFE_PATH.match(trimmed) or os.path.normpath(trimmed) != trimmed:
        raise R.RestoreError(
            "%s %r must be a plain absolute path: letters, digits and _ . @ + - between single '/', with no '.' "
            "or '..' component; pgBackRest writes it unquoted into restore_command and pg_ctl passes it through "
            "/bin/sh, so quotes, spaces, $, `, backslashes, %%, ',' and control characters are refused; "
            "nothing was restored" % (option, value),
            option=option,
        )
    return trimmed


def check_target(target_type, target):
    """pitr_target in the form pgBackRest and PostgreSQL both read for ``target_type``; raise RestoreError if not."""
    if target_type == "immediate":
        if target:
            raise R.RestoreError(
                "pitr_target %r is set but pitr_target_type is immediate, which restores to the end of the newest "
                "backup and ignores it; set pitr_target_type to time or lsn, or remove pitr_target" % target,
                option="pitr_target_type",
            )
        return None
    if not target:
        raise R.RestoreError(
            "pitr_target_type=%s needs pitr_target (a timestamp with time zone, or an LSN like 0/3A000028)"
            % target_type,
            option="pitr_target",
        )
    if target_type == "time":
        match = _TARGET_TIME.match(target)
        try:
            valid = bool(match) and datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S") is not None
        except ValueError:
            valid = False
        if not valid:
            raise R.RestoreError(
                "pitr_target %r is not a time pgBackRest reads for pitr_target_type=time: give "
                "'YYYY-MM-DD HH:MM:SS[.mmm]+HH[:MM]' with the zone (for UTC '+00'); nothing was restored" % target,
                option="pitr_target",
            )
    elif not _TARGET_LSN.match(target):
        raise R.RestoreError(
            "pitr_target %r is not an LSN for pitr_target_type=lsn: give two hexadecimal parts like 0/3A000028 "
            "(pg_current_wal_lsn()); nothing was restored" % target,
            option="pitr_target",
        )
    return target


def check_options(params):
    """Every mode=pitr option that needs no I/O: (stanza, data_dir, config); raise RestoreError naming the option."""
    for option in ("pgbackrest_stanza", "pitr_data_dir"):
        if not params.get(option):
            raise R.RestoreError("mode=pitr needs %s" % option, option=option)
    stanza = params["pgbackrest_stanza"]
    if not _SAFE_STANZA.match(stanza):
        raise R.RestoreError(
            "pgbackrest_stanza %r must be letters, digits, '_', '-' and '.' (starting with a letter or digit, at "
            "most 100); pgBackRest writes it unquoted into restore_command; nothing was restored" % stanza,
            option="pgbackrest_stanza",
        )
    check_target(params["pitr_target_type"], params.get("pitr_target"))
    data_dir = safe_path(params["pitr_data_dir"], "pitr_data_dir")
    config = safe_path(params["pgbackrest_config"], "pgbackrest_config") if params.get("pgbackrest_config") else None
    port = params["pitr_port"]
    if not 1024 <= port <= 65535:
        raise R.RestoreError(
            "pitr_port %d is not a port the restored server can listen on as postgres: choose a free port "
            "between 1024 and 65535" % port,
            option="pitr_port",
        )
    socket_path = os.path.join(data_dir, ".s.PGSQL.%d" % port)
    if len(socket_path.encode("utf-8")) > MAX_SOCKET_PATH_BYTES:
        raise R.RestoreError(
            "pitr_data_dir '%s' is too long: the restored server's socket '%s' would exceed %d bytes, so it could "
            "not start; choose a shorter pitr_data_dir" % (data_dir, socket_path, MAX_SOCKET_PATH_BYTES),
            option="pitr_data_dir",
        )
    return stanza, data_dir, config


def enclosing_data_dir(path):
    """The PostgreSQL data directory (a parent holding PG_VERSION) that ``path`` lies in, or None."""
    parent = os.path.dirname(os.path.realpath(path))
    while True:
        if os.path.isfile(os.path.join(parent, "PG_VERSION")):
            return parent
        if parent == os.path.dirname(parent):
            return None
        parent = os.path.dirname(parent)


def port_in_use(host, port, timeout=1.0):
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _run(argv, describe):
    try:
        proc = subprocess.run(  # noqa: S603 # nosec B603
            as_postgres(argv), capture_output=True, text=True, errors="replace", check=False
        )
    except OSError as err:
        raise R.RestoreError("%s could not run (%s)" % (describe, err)) from err
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
        if params.get("target_database"):
            raise R.RestoreError(
                "target_database does not apply to mode=pitr, which restores the whole cluster into pitr_data_dir "
                "and checks database '%s' there; omit target_database" % self.database,
                option="target_database",
            )
        stanza, self.data_dir, config = check_options(params)
        R.check_names(params.get("roles") or [], "roles")
        R.check_names(params.get("extensions") or [], "extensions")
        self.pgbackrest = shutil.which("pgbackrest")
        if self.pgbackrest is None:
            raise R.RestoreError("pgbackrest not found on PATH; install it (apt-get install pgbackrest)")
        self.pg_ctl = find_tool("pg_ctl", params.get("pg_bin_dir"))
        self.base = [self.pgbackrest, "--stanza=%s" % stanza]
        if config:
            self.base.insert(1, "--config=%s" % config)
        self.server = R.Server(dict(params, login_port=params["pitr_port"]))
        self.newest = None

    def plan(self):
        """Newest pgBackRest backup (for the RPO) and an empty target directory; changes nothing."""
        data_dir = self.data_dir
        self._check_empty_dir(data_dir)
        inside = enclosing_data_dir(data_dir)
        if inside is not None:
            raise R.RestoreError(
                "pitr_data_dir '%s' lies inside the PostgreSQL data directory '%s'; restore into a directory of "
                "its own, outside any cluster" % (data_dir, inside),
                option="pitr_data_dir",
            )
        host = self.params.get("login_host")
        host = "127.0.0.1" if not host or host.startswith("/") else host
        if port_in_use(host, self.params["pitr_port"]):
            raise R.RestoreError(
                "pitr_port %d is in use on %s (the source cluster or another server listens there); the restored "
                "server could not start on it and the checks would run on the wrong server: choose a free pitr_port"
                % (self.params["pitr_port"], host),
                option="pitr_port",
            )
        try:
            info = json.loads(_run([*self.base, "--output=json", "info"], "pgbackrest info") or "[]")
        except (R.RestoreError, ValueError) as err:
            raise R.RestoreError(
                "%s; check pgbackrest_config (%s) and pgbackrest_stanza '%s'"
                % (
                    err,
                    self.params.get("pgbackrest_config") or "pgBackRest's default",
                    self.params["pgbackrest_stanza"],
                ),
                option="pgbackrest_config",
            ) from err
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
        checks, failure, restored = [], None, False
        data_dir = self.data_dir
        try:
            with phases.timed("restore"):
                created = self._prepare_dir(data_dir)
                try:
                    argv = [*self.base, "--pg1-path=%s" % data_dir, "--type=%s" % self.params["pitr_target_type"]]
                    if self.params["pitr_target_type"] != "immediate":
                        argv.append("--target=%s" % self.params["pitr_target"])
                    _run(
                        [*argv, "--target-action=promote", "restore"],
                        "pgbackrest restore (newest backup %s stopped at %s)"
                        % (self.newest["label"], iso(self.newest["timestamp"]["stop"])),
                    )
                    self._start_and_promote(data_dir)
                except LocksmithError as err:
                    raise self._discard(data_dir, created, err) from err
                restored = True
            with phases.timed("verify"):
                checks += C.run_assertions(
                    self.server.params, self.database, self.params.get("assertions") or [], self.server.queries
                )
                checks += C.check_present(
                    self.server, self.database, self.params.get("extensions") or [], self.params.get("roles") or []
                )
        except LocksmithError as err:
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
            "target_fate": "running, promoted"
            if verified
            else ("running, left for inspection" if restored else "removed: the restore failed"),
            **R.measured_report(started, verified, phases, rto, rpo, self.params, checks, errors),
        }
        result = {"report": report}
        if self.params.get("report_dir"):
            result["report_files"] = C.write_report(self.params["report_dir"], report)
        return result

    def _check_empty_dir(self, data_dir):
        """pitr_data_dir is missing or an empty real directory (not a symlink, not a file)."""
        if os.path.islink(data_dir):
            raise R.RestoreError(
                "pitr_data_dir '%s' is a symlink (to '%s'); name the real directory, which must not exist or be "
                "empty" % (data_dir, os.readlink(data_dir)),
                option="pitr_data_dir",
            )
        if not os.path.exists(data_dir):
            return
        if not os.path.isdir(data_dir):
            raise R.RestoreError(
                "pitr_data_dir '%s' exists and is not a directory; name a new or empty directory" % data_dir,
                option="pitr_data_dir",
            )
        if os.listdir(data_dir):
            raise R.RestoreError(
                "pitr_data_dir '%s' is not empty; PITR restores only into a new, empty data directory" % data_dir,
                option="pitr_data_dir",
            )

    def _prepare_dir(self, data_dir):
        """Create (or take over the empty) pitr_data_dir, 0700 and owned by postgres; True if it was created.

        The mode and owner are set through a descriptor opened with O_NOFOLLOW, so a symlink put in its place
        after the check (in /tmp, say) makes this fail instead of handing its target to postgres.
        """
        self._check_empty_dir(data_dir)  # again: time passed since plan()
        created = False
        try:
            os.makedirs(os.path.dirname(data_dir), exist_ok=True)
            try:
                os.mkdir(data_dir, 0o700)
                created = True
            except FileExistsError:
                pass
            handle = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                if os.listdir(handle):
                    raise R.RestoreError(
                        "pitr_data_dir '%s' is not empty; PITR restores only into a new, empty data directory"
                        % data_dir,
                        option="pitr_data_dir",
                    )
                os.fchmod(handle, 0o700)
                if os.geteuid() == 0:
                    pg = pwd.getpwnam("postgres")
                    os.fchown(handle, pg.pw_uid, pg.pw_gid)
            finally:
                os.close(handle)
        except (OSError, KeyError) as err:
            raise R.RestoreError(
                "pitr_data_dir '%s' cannot be prepared for the restore (%s); choose a directory the module can "
                "create and give to the postgres user, whose parents no other user can write" % (data_dir, err),
                option="pitr_data_dir",
            ) from err
        return created

    def _discard(self, data_dir, created, err):
        """Stop a server started here and remove what the restore wrote; the error, with the server log's tail."""
        log = os.path.join(data_dir, "pitr-start.log")
        tail = ""
        try:
            with open(log, encoding="utf-8", errors="replace") as handle:
                tail = handle.read()[-LOG_TAIL_CHARS:].strip()
        except OSError:
            pass
        details = dict(err.details)
        if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
            stop = subprocess.run(  # noqa: S603 # nosec B603
                as_postgres([self.pg_ctl, "-D", data_dir, "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                text=True,
                errors="replace",
                check=False,
            )
            if stop.returncode != 0 and os.path.exists(os.path.join(data_dir, "postmaster.pid")):
                # Never delete the files of a server that may still run: say what to do instead.
                return R.RestoreError(
                    "%s; the restored server in pitr_data_dir '%s' could not be stopped (%s): stop it with "
                    "pg_ctl -D %s -m immediate stop, then delete the directory"
                    % (err, data_dir, (stop.stderr or stop.stdout).strip(), data_dir),
                    **details,
                )
        left = []
        for name in os.listdir(data_dir) if os.path.isdir(data_dir) else []:
            path = os.path.join(data_dir, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError:
                left.append(name)
        if created and not left:
            try:
                os.rmdir(data_dir)
            except OSError:
                pass
        if left:
            fate = "removing it failed for %s; delete pitr_data_dir '%s' before the next run" % (left, data_dir)
        else:
            fate = "its files were removed from pitr_data_dir '%s'" % data_dir
        message = "%s; no server was left running and %s" % (err, fate)
        if tail:
            message += "; server log: %s" % tail
        return R.RestoreError(message, **details)

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
                if not os.path.exists(os.path.join(data_dir, "postmaster.pid")):
                    raise R.RestoreError(
                        "restored server in '%s' stopped during recovery (pitr_target not reached, or WAL missing "
                        "from the stanza)" % data_dir
                    ) from err
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
