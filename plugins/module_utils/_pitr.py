# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Point-in-time recovery with pgBackRest into a new data directory, started on its own port and promoted.

The restored server never archives (archive_mode=off on its command line), so it cannot write into the
stanza of the cluster it was restored from, and it listens only where the checks reach it: its own socket
directory (pitr_data_dir), or the TCP host named by login_host.
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
# Recovery may replay WAL for hours; it is given up only when it stops advancing for this long.
STALL_TIMEOUT_SECONDS = 120
# pgBackRest writes the stanza, config path and data directory unquoted into restore_command in
# postgresql.auto.conf, and pg_ctl hands -D, -l and -o to /bin/sh: only characters that mean nothing to
# either (no quotes, spaces, $, `, backslash, %, ',' or control characters) may appear in them.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_.@+/-]*\Z")
_SAFE_STANZA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
# The time forms pgBackRest reads, with the zone required: without one it assumes the host's local time.
_TARGET_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(\.\d{1,3})?([+-]\d{2}(:?\d{2})?)\Z")
_TARGET_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}\Z")
# login_host becomes listen_addresses on the command line pg_ctl hands to /bin/sh: a host name or address only.
_SAFE_HOST = re.compile(r"^(?!-)[A-Za-z0-9.:_-]{1,253}\Z")
# sun_path holds 108 bytes with its terminating NUL; the server's socket is <pitr_data_dir>/.s.PGSQL.<port>.
MAX_SOCKET_PATH_BYTES = 107
LOG_TAIL_CHARS = 1500
# A server recovering with hot_standby stops unless these are at least the source's, which pg_control records
# (pg_controldata label -> setting); a minimal postgresql.conf must carry them or a tuned source cannot restore.
CONTROL_SETTINGS = {
    "max_connections setting": "max_connections",
    "max_worker_processes setting": "max_worker_processes",
    "max_wal_senders setting": "max_wal_senders",
    "max_prepared_xacts setting": "max_prepared_transactions",
    "max_locks_per_xact setting": "max_locks_per_transaction",
}
# pg_ctl -w returns once the server accepts connections, at the end of the backup's own WAL; the replay after it
# is followed by the stall check.
START_TIMEOUT_SECONDS = 3600
# A backup of a Debian-layout cluster lacks these (Debian keeps them in /etc/postgresql/<version>/<cluster>), and
# the restored server cannot start without them. Written only where missing: settings then come from the restored
# postgresql.auto.conf and the command line; root and postgres may log in as postgres on the restored server's
# own socket (in the 0700 pitr_data_dir only they can enter), anyone else with a password from this host.
MINIMAL_CONFIG = {
    "postgresql.conf": "# Written by locksmith.ops (pg_backup_restore mode=pitr): the backup held none.\n",
    "pg_hba.conf": (
        "# Written by locksmith.ops (pg_backup_restore mode=pitr): the backup held no pg_hba.conf.\n"
        "local all all peer map=locksmith_pitr\n"
        "host all all samehost scram-sha-256\n"
    ),
    "pg_ident.conf": (
        "# Written by locksmith.ops (pg_backup_restore mode=pitr): the backup held no pg_ident.conf.\n"
        "locksmith_pitr root postgres\n"
        "locksmith_pitr postgres postgres\n"
    ),
}


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


def target_epoch(target):
    """The epoch seconds of a pitr_target time, or None when it is not in the form pgBackRest reads.

    Raises ValueError for a date, time or zone offset that does not exist (2026-02-30, +25).
    """
    match = _TARGET_TIME.match(target)
    if not match:
        return None
    moment = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    zone = match.group(3).replace(":", "")
    hours, minutes = int(zone[1:3]), int(zone[3:5] or 0)
    if minutes >= 60:
        raise ValueError("zone offset minutes out of range")
    offset = datetime.timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
    return moment.replace(tzinfo=datetime.timezone(offset)).timestamp() + float(match.group(2) or 0)


def lsn_number(lsn):
    """An LSN as one integer, for comparing two of them."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


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
        try:
            valid = target_epoch(target) is not None
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


def control_settings(text):
    """The settings pg_controldata reports that a recovering server must match or exceed, as name -> value."""
    found = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if sep and label.strip() in CONTROL_SETTINGS and value.strip().isdigit():
            found[CONTROL_SETTINGS[label.strip()]] = int(value.strip())
    return found


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


class LoginRefused(R.RestoreError):
    """The restored server is up but refuses the checks' login: nothing about the recovery is known yet."""


# libpq's words for a server that answered and refused the login (not one still starting).
_REFUSED = ("authentication failed", "no pg_hba.conf entry", "does not exist")


def _run(argv, describe, env=None):
    try:
        proc = subprocess.run(  # noqa: S603 # nosec B603
            as_postgres(argv), capture_output=True, text=True, errors="replace", check=False, env=env
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
        # The checks must reach the restored server and nothing else: through its own socket, or on the TCP
        # host login_host names, which is then the only address it listens on.
        host = params.get("login_host") or ""
        if not host or host.startswith("/"):
            self.listen = ""
            server_params = dict(params, login_host=None, login_unix_socket=self.data_dir)
        elif _SAFE_HOST.match(host):
            self.listen = host
            server_params = dict(params)
        else:
            raise R.RestoreError(
                "login_host %r is not a host name or address; for mode=pitr the restored server listens on it "
                "(pg_ctl passes it through /bin/sh): give one like 127.0.0.1, or omit it to check through the "
                "restored server's socket in pitr_data_dir" % host,
                option="login_host",
            )
        self.server = R.Server(dict(server_params, login_port=params["pitr_port"]))
        self.backup = self.newest = None
        self.config_written = []
        self.fate = None

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
        host = self.listen or "127.0.0.1"
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
        self.backup = self._choose_backup(backups)
        self.newest = max(backups, key=lambda b: b["timestamp"]["stop"])
        return {
            "mode": "pitr",
            "id": self.backup["label"],
            "source": "pgbackrest stanza %s" % self.params["pgbackrest_stanza"],
            "location": data_dir,
            "backup_ended_at": iso(self.backup["timestamp"]["stop"]),
            "target_database": self.database,
            "target_exists": False,
            "target": {"type": self.params["pitr_target_type"], "value": self.params.get("pitr_target")},
            "skipped": [],
        }

    def _choose_backup(self, backups):
        """The backup pgBackRest restores from: the newest one that ended before the target.

        It is passed to pgBackRest as --set, so the report names the backup actually restored, and a target
        older than every backup is refused here, before any file is written.
        """
        target_type, target = self.params["pitr_target_type"], self.params.get("pitr_target")
        if target_type == "time":
            limit = target_epoch(target)
            usable = [b for b in backups if b["timestamp"]["stop"] < limit]
        elif target_type == "lsn":
            limit = lsn_number(target)
            usable = [
                b
                for b in backups
                if _TARGET_LSN.match(str(b.get("lsn", {}).get("stop"))) and lsn_number(b["lsn"]["stop"]) <= limit
            ]
        else:
            usable = backups
        if not usable:
            oldest = min(backups, key=lambda b: b["timestamp"]["stop"])
            raise R.RestoreError(
                "pitr_target %s is before the end of the oldest backup in stanza '%s' (%s, which ended at %s, LSN "
                "%s): no backup can recover to it; choose a later pitr_target; nothing was restored"
                % (
                    target,
                    self.params["pgbackrest_stanza"],
                    oldest["label"],
                    iso(oldest["timestamp"]["stop"]),
                    oldest.get("lsn", {}).get("stop", "unknown"),
                ),
                option="pitr_target",
            )
        return max(usable, key=lambda b: b["timestamp"]["stop"])

    def apply(self):
        started = self.clock()
        phases = R.Phases()
        checks, failure, restored = [], None, False
        data_dir = self.data_dir
        try:
            with phases.timed("restore"):
                created = self._prepare_dir(data_dir)
                try:
                    argv = [
                        *self.base,
                        "--pg1-path=%s" % data_dir,
                        "--set=%s" % self.backup["label"],
                        "--type=%s" % self.params["pitr_target_type"],
                    ]
                    if self.params["pitr_target_type"] != "immediate":
                        argv.append("--target=%s" % self.params["pitr_target"])
                    _run(
                        [*argv, "--target-action=promote", "restore"],
                        "pgbackrest restore (backup %s, which ended at %s)"
                        % (self.backup["label"], iso(self.backup["timestamp"]["stop"])),
                    )
                    self._complete_config(data_dir)
                    self._start_and_promote(data_dir)
                except LoginRefused:
                    restored = True  # the server runs and may have recovered: left for inspection
                    raise
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
        # The RPO is how far back the stanza's newest backup is, whatever point in time was asked for: a
        # deliberate recovery to last week must not read as a stale backup.
        rto, rpo = round(ended - started, 3), round(started - self.newest["timestamp"]["stop"], 3)
        if verified:
            fate = "running, promoted"
        elif restored:
            fate = "running, left for inspection"
        else:
            fate = self.fate or "removed: the restore failed"
        report = {
            "mode": "pitr",
            "database": self.database,
            "backup_id": self.backup["label"],
            "source": "pgbackrest stanza %s" % self.params["pgbackrest_stanza"],
            "backup_ended_at": iso(self.backup["timestamp"]["stop"]),
            "target_database": "%s on port %d" % (data_dir, self.params["pitr_port"]),
            "target_fate": fate,
            "config_written": list(self.config_written),
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
        try:
            entries = os.listdir(data_dir)
        except OSError as err:
            raise R.RestoreError(
                "pitr_data_dir '%s' cannot be read (%s); name a new or empty directory the module can enter"
                % (data_dir, err.strerror),
                option="pitr_data_dir",
            ) from err
        if entries:
            raise R.RestoreError(
                "pitr_data_dir '%s' is not empty; PITR restores only into a new, empty data directory" % data_dir,
                option="pitr_data_dir",
            )

    def _complete_config(self, data_dir):
        """Write the configuration files the restored directory lacks (a Debian-layout backup), owned by postgres."""
        owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        for name, text in MINIMAL_CONFIG.items():
            path = os.path.join(data_dir, name)
            if os.path.lexists(path):
                continue
            if name == "postgresql.conf":
                text += self._source_limits(data_dir)
            try:
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    out.write(text)
                if owner is not None:
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            except OSError as err:
                raise R.RestoreError(
                    "%s cannot be written into pitr_data_dir '%s' (%s)" % (name, data_dir, err)
                ) from err
            self.config_written.append(name)
        if self.config_written:
            self.warnings.append(
                "backup %s holds no %s (a Debian-layout cluster keeps them in /etc/postgresql): minimal ones were "
                "written into pitr_data_dir '%s' so the restored server could start; it runs with PostgreSQL's "
                "defaults for settings not in its postgresql.auto.conf"
                % (self.backup["label"], ", ".join(self.config_written), data_dir)
            )

    def _source_limits(self, data_dir):
        """postgresql.conf lines with the source's limits from the restored pg_control (max_connections, ...)."""
        controldata = find_tool("pg_controldata", self.params.get("pg_bin_dir"))
        report = _run([controldata, data_dir], "pg_controldata", env=dict(os.environ, LC_ALL="C"))
        settings = control_settings(report)
        if not settings:
            raise R.RestoreError(
                "pg_controldata printed none of %s for pitr_data_dir '%s', which the restored server needs at least "
                "as high as the source's; check pg_bin_dir" % (", ".join(CONTROL_SETTINGS.values()), data_dir)
            )
        return "".join("%s = %d\n" % item for item in sorted(settings.items()))

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
                self.fate = "running, could not be stopped after the failure"
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
            self.fate = "partly removed: %s left in pitr_data_dir" % ", ".join(left)
            fate = "removing it failed for %s; delete pitr_data_dir '%s' before the next run" % (left, data_dir)
        else:
            fate = "its files were removed from pitr_data_dir '%s'" % data_dir
        message = "%s; no server was left running and %s" % (err, fate)
        if tail:
            message += "; server log: %s" % tail
        return R.RestoreError(message, **details)

    def _start_and_promote(self, data_dir):
        # The clone must not archive into the source's stanza, nor take the source's port, socket or addresses.
        options = "-c port=%d -c archive_mode=off -c unix_socket_directories='%s' -c listen_addresses='%s'" % (
            self.params["pitr_port"],
            data_dir,
            self.listen,
        )
        log = os.path.join(data_dir, "pitr-start.log")
        _run(
            [self.pg_ctl, "-D", data_dir, "-l", log, "-o", options, "-w", "-t", str(START_TIMEOUT_SECONDS), "start"],
            "pg_ctl start",
        )
        # Replaying a day of WAL can take hours: wait while the replay advances, give up when it stalls.
        progress, stalled_since = None, self.clock()
        while True:
            try:
                rows = self.server.run(
                    "postgres", "SELECT pg_is_in_recovery() AS r, pg_last_wal_replay_lsn()::text AS lsn", rows=True
                )
                if not rows[0]["r"]:
                    return
                if rows[0]["lsn"] != progress:
                    progress, stalled_since = rows[0]["lsn"], self.clock()
                reason = "its WAL replay stayed at %s" % progress
            except R.RestoreError:
                raise
            except LocksmithError as err:
                if not os.path.exists(os.path.join(data_dir, "postmaster.pid")):
                    raise R.RestoreError(
                        "restored server in '%s' stopped during recovery (pitr_target not reached, or WAL missing "
                        "from the stanza)" % data_dir
                    ) from err
                if any(words in str(err).lower() for words in _REFUSED):
                    raise LoginRefused(
                        "the restored server in '%s' on port %d runs, but refuses the checks' login: %s; it reads "
                        "%s: set login_host (127.0.0.1) with login_user and login_password, or run the module as "
                        "postgres; the server was left running for inspection (stop it with pg_ctl -D %s stop)"
                        % (
                            data_dir,
                            self.params["pitr_port"],
                            err,
                            "the minimal pg_hba.conf written here (root and postgres as postgres on its socket)"
                            if "pg_hba.conf" in self.config_written
                            else "the backup's pg_hba.conf",
                            data_dir,
                        )
                    ) from err
                reason = "it accepted no connection (%s)" % err
            if self.clock() - stalled_since > STALL_TIMEOUT_SECONDS:
                raise R.RestoreError(
                    "restored server in '%s' on port %d did not finish recovery: for %ds %s; see %s"
                    % (data_dir, self.params["pitr_port"], STALL_TIMEOUT_SECONDS, reason, log)
                )
            time.sleep(0.5)
