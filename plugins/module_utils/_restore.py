# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Restoring a pg_backup backup: choose it, fetch and check it, decrypt it, pg_restore it, time each phase.

The phases run one after the other on files in a work directory, so each is timed on its own (the
drill's RTO breakdown) and a corrupt artefact is caught by its SHA-256 before any database is touched.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess  # nosec B404 - runs pg_restore/pg_dump with argv lists, never a shell
import tempfile
import time
from contextlib import contextmanager

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres
from ansible_collections.locksmith.ops.plugins.module_utils._audit_schema import WRITER_ROLE
from ansible_collections.locksmith.ops.plugins.module_utils._backup import filters_take, parse_filters, partial_filters
from ansible_collections.locksmith.ops.plugins.module_utils._backup import iso as iso_utc
from ansible_collections.locksmith.ops.plugins.module_utils._backup_verify import artefact_suffixes, plain_chunks
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._pg_dump import READ_SIZE, dump_env, stream_command
from ansible_collections.locksmith.ops.plugins.module_utils._restore_globals import (
    _CONTROL,
    _UNSAFE_NAME,
    MAX_NAME_BYTES,
)
from ansible_collections.locksmith.ops.plugins.module_utils._storage import ALL_DATABASES_LABEL, storage_argument_spec

MODES = ["drill", "recover", "tables", "pitr"]
PHASES = ("fetch", "decrypt", "restore", "verify")
CONFIRM_TEXT = "I understand this overwrites %s"
# A drill older than this is overdue (locksmith_drill_max_age_seconds): twice the weekly schedule of
# playbooks/awx_configure.yml plus a day, so one missed run is tolerated and a second is not.
DRILL_MAX_AGE_SECONDS = 2 * 7 * 86400 + 86400
COMPARISONS = {
    "eq": lambda a, e: a == e,
    "ne": lambda a, e: a != e,
    "ge": lambda a, e: a >= e,
    "gt": lambda a, e: a > e,
    "le": lambda a, e: a <= e,
    "lt": lambda a, e: a < e,
}
_USER_RELATIONS = (
    "SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'"
)
# `pg_restore --list` lines: "<id>; <oid> <oid> <TYPE words> <schema|-> <name> <owner>"
_OWNED = ("TABLE", "SCHEMA", "SEQUENCE", "VIEW", "TYPE", "DOMAIN")
# Routines are listed with their argument types, which may hold spaces: "FUNCTION audit log_row() owner",
# "FUNCTION public f(integer, text) owner".
_ROUTINE = re.compile(r"^(?:FUNCTION|PROCEDURE|AGGREGATE) \S+ \S.*\) (?P<owner>\S+)$")
_TOC_LINE = re.compile(r"^\d+;\s+\d+\s+\d+\s+(?P<rest>.+)$")
# Roles this collection makes itself, which restored objects may belong to: name -> CREATE ROLE attributes.
OWN_ROLES = {WRITER_ROLE: "NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOLOGIN NOREPLICATION NOBYPASSRLS"}


class RestoreError(LocksmithError):
    """A backup could not be chosen, fetched, decrypted, restored or verified."""


class StatementRefused(RestoreError):
    """The server refused one statement (its reason in the message); a check may count it as failed."""


def restore_argument_spec():
    """pg_backup_restore's options: connection and destination fragments plus its own."""
    spec = _postgres.postgres_argument_spec()
    spec.update(storage_argument_spec())
    spec.update(
        mode=dict(type="str", default="drill", choices=MODES),
        database=dict(type="str", required=True),
        backup_id=dict(type="str"),
        target_database=dict(type="str"),
        confirm=dict(type="str", default=""),
        allow_nonempty=dict(type="bool", default=False),
        safety_backup_dir=dict(type="path"),
        tables=dict(type="list", elements="str", default=[]),
        target_schema=dict(type="str"),
        assertions=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                name=dict(type="str", required=True),
                sql=dict(type="str", required=True),
                expected=dict(type="raw", required=True),
                compare=dict(type="str", default="eq", choices=sorted(COMPARISONS)),
                database=dict(type="str"),
            ),
        ),
        databases=dict(type="list", elements="str", default=[]),
        restore_globals=dict(type="bool", default=True),
        extensions=dict(type="list", elements="str", default=[]),
        roles=dict(type="list", elements="str", default=[]),
        check_row_counts=dict(type="bool", default=True),
        row_count_tolerance=dict(type="float", default=0.1),
        no_owner=dict(type="bool", default=False),
        jobs=dict(type="int", default=1),
        keep_scratch=dict(type="bool", default=False),
        encryption_key=dict(type="str", no_log=True),
        encryption_key_file=dict(type="path", no_log=False),
        pg_bin_dir=dict(type="path"),
        work_dir=dict(type="path"),
        report_dir=dict(type="path"),
        metrics_dir=dict(type="path"),
        rto_target_seconds=dict(type="int", default=1800),
        rpo_target_seconds=dict(type="int", default=86400),
        fail_on_missed_targets=dict(type="bool", default=True),
        drill_max_age_seconds=dict(type="int", default=DRILL_MAX_AGE_SECONDS),
    )
    from ansible_collections.locksmith.ops.plugins.module_utils._pitr import pitr_argument_spec

    spec.update(pitr_argument_spec())
    return spec


class Phases:
    """Wall time per phase; phases run in sequence so the sum is the restore's RTO before cleanup."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.seconds = {name: 0.0 for name in PHASES}

    @contextmanager
    def timed(self, name):
        started = self.clock()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + self.clock() - started, 3)


def confirm_text(target):
    """The exact sentence recover mode requires in ``confirm``."""
    return CONFIRM_TEXT % target


def scratch_name(database, backup_id, mode):
    """A scratch database name: recognisable, unique per backup, at most 63 bytes."""
    tag = hashlib.sha256(("%s/%s/%s" % (database, backup_id, time.time())).encode()).hexdigest()[:6]
    prefix = "drill" if mode == "drill" else "restore"
    return "%s_%s_%s" % (prefix, database[:40], tag)


def choose_backup(
    destinations, label, backup_id=None, stat_check=True, all_databases=False, partial_ok=False, tables=()
):
    """(entry, skipped): the named backup, or the newest complete one whose artefacts pass the metadata check.

    Unless named or ``partial_ok`` (a tables restore), a backup taken with schema or table filters is passed
    over: restoring a one-table export as the database would replace the database with one table. Given
    ``tables`` ((schema, table) pairs a tables restore wants), a partial backup is taken, named or not, only
    when its filters took every one of them.

    ``skipped`` lists newer backups passed over, with why, so the report shows what was not restorable.
    """
    if label == ALL_DATABASES_LABEL and not all_databases:
        raise RestoreError(
            "database 'all-databases': an all-databases backup is not supported by the single-database restore; "
            "it restores through _restore_cluster (database: all-databases)",
            option="database",
        )
    candidates = []
    for destination in destinations:
        destination.check_access(False)
        candidates.extend(destination.list_backups(label))
    if backup_id:
        candidates = [e for e in candidates if e.backup_id == backup_id]
        if not candidates:
            raise RestoreError(
                "backup_id '%s' of '%s' is at no destination; list them with locksmith.ops.pg_backup_info"
                % (backup_id, label),
                option="backup_id",
            )
    skipped = []
    for entry in sorted(candidates, key=lambda e: e.sort_key, reverse=True):
        if not entry.complete:
            # A manifest that is there but malformed says which field is wrong.
            reason = getattr(entry, "manifest_error", None) or "incomplete"
            skipped.append({"id": entry.backup_id, "destination": entry.destination.name, "reason": reason})
            continue
        partial = partial_filters(entry.manifest)
        if partial and not backup_id and not partial_ok:
            skipped.append(
                {
                    "id": entry.backup_id,
                    "destination": entry.destination.name,
                    "reason": "partial (taken with %s): restored only when named with backup_id"
                    % ", ".join("%s %s" % (k, v) for k, v in sorted(partial.items())),
                }
            )
            continue
        # Any filter may have left a wanted table out, an exclude one too (a whole-database backup without its log).
        recorded = entry.manifest.get("filters")
        missing = tables and recorded and missing_tables(recorded, tables)
        if missing:
            taken = recorded.items() if isinstance(recorded, dict) else [("filters", recorded)]
            skipped.append(
                {
                    "id": entry.backup_id,
                    "destination": entry.destination.name,
                    "reason": "partial (taken with %s): %s"
                    % (", ".join("%s %s" % (k, v) for k, v in sorted(taken) if v), missing),
                }
            )
            continue
        problems = metadata_problems(entry) if stat_check else []
        if problems:
            skipped.append(
                {"id": entry.backup_id, "destination": entry.destination.name, "reason": "; ".join(problems)}
            )
            continue
        return entry, skipped
    raise RestoreError(
        "no complete, intact backup of '%s'%s at any destination (%s); take one with locksmith.ops.pg_backup"
        % (
            label,
            " with id '%s'" % backup_id if backup_id else "",
            "; ".join("%s %s: %s" % (s["destination"], s["id"], s["reason"]) for s in skipped) or "none found",
        ),
        skipped=skipped,
    )


def missing_tables(recorded, tables):
    """Why a backup taken with the filters ``recorded`` in its manifest (excludes included) cannot restore
    ``tables`` ((schema, table) pairs), or '' when pg_dump's filters took every one of them."""
    try:
        filters = parse_filters(recorded)
    except _postgres.InvalidIdentifier as err:
        return "its filters cannot be read (%s)" % err.msg
    lacking = [_postgres.written(schema, table) for schema, table in tables if not filters_take(filters, schema, table)]
    return "does not hold %s" % ", ".join(lacking) if lacking else ""


def metadata_problems(entry):
    """Missing artefacts, wrong sizes or S3 stored checksums, from metadata only."""
    problems = []
    for artefact in entry.manifest.get("artefacts", []):
        stat = entry.destination.stat(entry.label, entry.backup_id, artefact["name"])
        if stat is None:
            problems.append("%s: missing" % artefact["name"])
        elif stat["size"] != artefact["size_bytes"]:
            problems.append("%s: size %d, manifest says %d" % (artefact["name"], stat["size"], artefact["size_bytes"]))
        elif artefact.get("s3_checksum_sha256") and entry.destination.kind == "s3" and not stat.get("checksum"):
            problems.append("%s: no stored checksum, manifest has one (object replaced?)" % artefact["name"])
        elif stat.get("checksum") and artefact.get("s3_checksum_sha256"):
            if stat["checksum"] != artefact["s3_checksum_sha256"]:
                problems.append("%s: stored checksum differs from the manifest" % artefact["name"])
    return problems


def safe_relpath(name, what):
    """An artefact path from the manifest: relative, no '..', so it stays inside the work directory."""
    plain = isinstance(name, str) and bool(name) and not name.startswith("/")
    if not plain or any(p in ("", ".", "..") for p in name.replace("\\", "/").split("/")):
        raise RestoreError(
            "%s %r in the manifest is not a plain relative name; the manifest was altered: restore another "
            "backup (backup_id)" % (what, name),
            option="backup_id",
        )
    return name


def check_artefacts(entry):
    """Every artefact of the manifest is an object whose name and plain_name are plain relative paths.

    The storage's shape check (manifest_problem) refuses a name or plain_name that is no string; a string
    such as '../x' in a damaged manifest would otherwise place a file outside the work directory.
    """
    for index, artefact in enumerate(entry.manifest.get("artefacts", [])):
        what = "backup %s: artefacts[%d]" % (entry.backup_id, index)
        if not isinstance(artefact, dict):
            raise RestoreError(
                "%s in the manifest is not an object; the manifest was altered: restore another backup (backup_id)"
                % what,
                option="backup_id",
            )
        safe_relpath(artefact.get("name"), what + ".name")
        safe_relpath(artefact.get("plain_name"), what + ".plain_name")


def dump_artefacts(entry):
    """The manifest's dump artefacts, in name order (directory format has one per file)."""
    check_artefacts(entry)
    artefacts = [a for a in entry.manifest.get("artefacts", []) if a.get("kind") == "dump"]
    if not artefacts:
        raise RestoreError("backup %s has no dump artefact in its manifest; it cannot be restored" % entry.backup_id)
    return sorted(artefacts, key=lambda a: a["name"])


def fetch(entry, fetched_dir):
    """Copy every dump artefact into ``fetched_dir``, hashing on the way; raise on a size or SHA-256 mismatch."""
    checks = []
    for artefact in dump_artefacts(entry):
        path = os.path.join(fetched_dir, artefact["name"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        digest, size = hashlib.sha256(), 0
        handle = _create(path)
        try:
            for chunk in entry.destination.read_chunks(entry.label, entry.backup_id, artefact["name"]):
                digest.update(chunk)
                size += len(chunk)
                _write(handle, path, chunk)
        finally:
            os.close(handle)
        ok = digest.hexdigest() == artefact["sha256"] and size == artefact["size_bytes"]
        checks.append(
            {
                "check": "checksum",
                "subject": artefact["name"],
                "expected": artefact["sha256"],
                "actual": digest.hexdigest(),
                "ok": ok,
            }
        )
        if not ok:
            raise RestoreError(
                "backup %s at %s: artefact '%s' is corrupt: sha256 %s (%d bytes), manifest says %s (%d bytes); "
                "nothing was restored; restore another backup (backup_id) or repair the copy"
                % (
                    entry.backup_id,
                    entry.destination.name,
                    artefact["name"],
                    digest.hexdigest(),
                    size,
                    artefact["sha256"],
                    artefact["size_bytes"],
                ),
                checks=checks,
            )
    return checks


class _FetchedCopy:
    """The fetched files seen as a destination, so _backup_verify.plain_chunks decrypts them."""

    def __init__(self, root):
        self.root = root

    def read_chunks(self, label, backup_id, name):
        with open(os.path.join(self.root, name), "rb") as handle:
            yield from iter(lambda: handle.read(READ_SIZE), b"")


def decrypt(entry, fetched_dir, plain_dir, key):
    """Decrypt and decompress the fetched artefacts into ``plain_dir``; returns the path pg_restore reads."""
    copy = _FetchedCopy(fetched_dir)
    artefacts = dump_artefacts(entry)
    for artefact in artefacts:
        source = os.path.join(fetched_dir, artefact["name"])
        target = os.path.join(plain_dir, artefact["plain_name"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not artefact_suffixes(artefact):
            os.replace(source, target)  # stored as pg_dump wrote it: nothing to undo
            continue
        handle = _create(target)
        try:
            for chunk in plain_chunks(copy, entry.label, entry.backup_id, artefact, key):
                _write(handle, target, chunk)
        except RestoreError:
            raise
        except LocksmithError as err:
            raise RestoreError("artefact '%s': %s" % (artefact["name"], err), option="encryption_key") from err
        except Exception as err:  # a bad stream raises library errors of many kinds
            raise RestoreError(
                "artefact '%s' cannot be decrypted or decompressed (%s); the key may be wrong "
                "(manifest key_id %s) or the artefact damaged"
                % (artefact["name"], err, (entry.manifest.get("encryption") or {}).get("key_id")),
                option="encryption_key",
            ) from err
        finally:
            os.close(handle)
        os.unlink(source)
    first = artefacts[0]["plain_name"]
    if "/" in first:
        return os.path.join(plain_dir, first.split("/", 1)[0])
    return os.path.join(plain_dir, first)


def toc(pg_restore, plain_path):
    """Extensions, owners and tables named in the archive's table of contents (`pg_restore --list`)."""
    # Names are printed in the archive's encoding (LATIN1 databases exist): bytes that are not UTF-8 are kept
    # as surrogates and such names left out below, never a decoding traceback.
    proc = subprocess.run(  # noqa: S603 # nosec B603
        [pg_restore, "--list", plain_path], capture_output=True, encoding="utf-8", errors="surrogateescape", check=False
    )
    if proc.returncode != 0:
        raise RestoreError("pg_restore --list '%s' failed: %s" % (plain_path, proc.stderr.strip()))
    return parse_toc(proc.stdout)


def _utf8(text):
    """Whether text came from valid UTF-8 (holds no surrogate standing for a byte that was not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_toc(text):
    """{'extensions': [...], 'owners': [...], 'tables': [(schema, table), ...]} from a --list listing."""
    extensions, owners, tables = set(), set(), set()
    for line in text.splitlines():
        match = _TOC_LINE.match(line.strip())
        if not match or not _utf8(line):  # a name in another encoding: not checked, rather than misread
            continue
        words = match.group("rest").split()
        routine = _ROUTINE.match(match.group("rest"))
        if routine:
            owners.add(routine.group("owner"))
        elif words[0] == "EXTENSION" and len(words) >= 3:
            extensions.add(words[2])
        elif words[0] in _OWNED and len(words) == 4:
            owners.add(words[3])
            if words[0] == "TABLE":
                tables.add((words[1], words[2]))
    return {"extensions": sorted(extensions), "owners": sorted(owners), "tables": sorted(tables)}


# ---- databases ----------------------------------------------------------------------------------
class Server:
    """The PostgreSQL server restored into; every statement goes into executed_queries."""

    def __init__(self, params):
        self.params = params
        self.queries = []

    def run(self, dbname, statement, args=None, rows=False):
        conn = _postgres.connect(self.params, dbname, autocommit=True)
        try:
            text = _postgres.rendered(conn, statement)
            self.queries.append(text)
            if rows:
                return _postgres.fetch_all(conn, statement, args)
            with conn.cursor() as cur:
                cur.execute(statement, args)
            return None
        except _postgres.psycopg2.Error as err:
            # The server refused it (objects that depend on a table, a database in use): its words, and DETAIL.
            raise StatementRefused(
                "%s in database '%s' was refused: %s" % (text, dbname, refusal(err)), statement=text
            ) from err
        finally:
            conn.close()

    def database_exists(self, name):
        found = self.run("postgres", "SELECT 1 AS one FROM pg_database WHERE datname = %s", (name,), rows=True)
        return bool(found)

    def user_relations(self, name):
        return self.run(name, _USER_RELATIONS, rows=True)[0]["n"]

    def table_exists(self, dbname, schema, table):
        found = self.run(
            dbname,
            "SELECT 1 AS one FROM pg_tables WHERE schemaname = %s AND tablename = %s",
            (schema, table),
            rows=True,
        )
        return bool(found)

    def create_database(self, name):
        self.run("postgres", _sql().SQL("CREATE DATABASE {}").format(_postgres.identifier(name)))

    def drop_database(self, name):
        self.run("postgres", _sql().SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_postgres.identifier(name)))

    def create_own_roles(self, owners):
        """Create this collection's roles that the archive's objects belong to and the server lacks; [names].

        A database audited by audit_trigger holds trigger functions owned by the audit writer role, which has no
        login and no privilege outside that database's audit schema: a restore server without it could not take
        their ownership, so it is made here rather than asked of every restore host.
        """
        made = []
        for name in sorted(set(owners) & set(OWN_ROLES)):
            found = self.run("postgres", "SELECT 1 AS one FROM pg_roles WHERE rolname = %s", (name,), rows=True)
            if not found:
                self.run("postgres", _sql().SQL("CREATE ROLE {} " + OWN_ROLES[name]).format(_postgres.identifier(name)))
                made.append(name)
        return made


def refusal(err):
    """Why the server refused a statement: its message and DETAIL, never the whole error text.

    libpq adds a LINE excerpt of the statement as it ran to that text, and the statement may hold a password
    hash or a setting's value that executed_queries shows redacted.
    """
    diag = getattr(err, "diag", None)
    reason = getattr(diag, "message_primary", None) or (str(err).strip().splitlines() or [type(err).__name__])[0]
    detail = (getattr(diag, "message_detail", None) or "").strip().replace("\n", "; ")
    return "%s%s" % (reason.strip(), " (%s)" % detail if detail else "")


def _sql():
    from psycopg2 import sql

    return sql


def pg_restore_argv(pg_restore, target, plain_path, params, schema=None, tables=()):
    """pg_restore arguments: restore into ``target``; stop at the first error so nothing half-restored passes."""
    # libpq reads a --dbname holding '=' (or a URI prefix) as a connection string, so a database named
    # "port=5999 dbname=x" would go elsewhere: the name is given as a quoted connection-string value.
    quoted = target.replace("\\", "\\\\").replace("'", "\\'")
    argv = [pg_restore, "--no-password", "--exit-on-error", "--dbname=dbname='%s'" % quoted]
    if params.get("no_owner"):
        argv += ["--no-owner", "--no-acl"]
    if params.get("jobs", 1) > 1 and not tables:
        argv.append("--jobs=%d" % params["jobs"])
    if schema:
        argv.append("--schema=%s" % schema)
    for table in tables:
        argv.append("--table=%s" % table)
    argv.append(plain_path)
    return argv


def run_pg_restore(argv, params, target, describe):
    """Run pg_restore; any error line fails it (stream_command's rule)."""
    stream_command(argv, dump_env(params, target), lambda data: True, describe)


def tables_by_schema(tables):
    """{'schema': ['table', ...]} from 'schema.table' / 'table' entries, validated (a name with a dot is written
    quoted: '"v1.2".orders'); the names are kept apart, never joined into one string to be split again."""
    grouped = {}
    for index, name in enumerate(tables):
        schema, table = _postgres.split_qualified(name, "tables[%d]" % index, quoted=True)
        if table not in grouped.setdefault(schema, []):
            grouped[schema].append(table)
    return grouped


def check_names(values, option):
    """``roles``, ``extensions`` or ``databases`` entries: names a catalog can hold; raise RestoreError naming one.

    ``databases`` entries must also be free of quotes, ';' and backslashes, as the manifest's names are. The
    names are compared with the catalogs as values, never put into SQL, by the same rules _restore_globals
    judges a backup's names with.
    """
    for index, value in enumerate(values):
        problem = None
        if not isinstance(value, str) or not value:
            problem = "is empty"
        elif len(value.encode("utf-8")) > MAX_NAME_BYTES:
            problem = "is longer than %d bytes, which PostgreSQL cuts names to" % MAX_NAME_BYTES
        elif _CONTROL.search(value):
            problem = "holds a control character (NUL, newline, ...)"
        elif option == "extensions" and ("/" in value or "--" in value):
            problem = "holds '/' or '--', which no extension name may"
        elif option == "databases" and _UNSAFE_NAME.search(value):
            problem = "holds quotes, ';' or a backslash, which no backed-up database name does"
        if problem:
            raise RestoreError(
                "%s[%d] %r %s; fix or remove it; nothing was restored" % (option, index, value, problem),
                option=option,
            )
    return values


def check_work_dir(work_dir):
    """work_dir, when set, is an existing absolute directory the module can write; reads only (also in check mode)."""
    if not work_dir:
        return
    problem = None
    if not os.path.isabs(work_dir):
        problem = "is not an absolute path"
    elif not os.path.isdir(work_dir):
        problem = "is not a directory" if os.path.exists(work_dir) else "does not exist"
    elif not os.access(work_dir, os.W_OK | os.X_OK):
        problem = "is not writable"
    if problem:
        raise RestoreError(
            "work_dir '%s' %s; set work_dir to an existing absolute directory with room for twice the backup's "
            "size, or omit it to use %s" % (work_dir, problem, tempfile.gettempdir()),
            option="work_dir",
        )


def work_dir_error(path, err):
    """A write under the work directory failed (full disk, quota, I/O): the RestoreError that names work_dir."""
    return RestoreError(
        "writing '%s' failed (%s); work_dir needs room for about twice the backup's size: free space there or set "
        "work_dir to another directory; the partial files were removed" % (path, err.strerror or err),
        option="work_dir",
    )


def local_error(err, work):
    """The RestoreError for an OSError of a local file step: a work_dir one when the path lies in ``work``."""
    path = err.filename or work
    if work and str(path).startswith(work):
        return work_dir_error(path, err)
    return RestoreError("'%s': %s" % (path, err.strerror or err))


def _create(path):
    """A new file only this user can read (O_EXCL: never one that was already there); a raw fd, so no write is
    buffered past the point where a full disk reports it."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise work_dir_error(path, err) from err


def _write(handle, path, data):
    """All of ``data`` to the raw fd ``handle``; a failed write raises the RestoreError that names work_dir."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(handle, view) :]
        except OSError as err:
            raise work_dir_error(path, err) from err


def make_work_dir(work_dir):
    """A private directory for fetched and plain files; removed by the caller."""
    try:
        return tempfile.mkdtemp(prefix=".locksmith-restore-", dir=work_dir)
    except OSError as err:
        raise RestoreError(
            "work_dir '%s' cannot hold the restore files (%s); create it or choose one with room for twice "
            "the backup's size" % (work_dir or tempfile.gettempdir(), err.strerror),
            option="work_dir",
        ) from err


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def entry_age(entry, now):
    """RPO: seconds between the backup's end and ``now``."""
    return round(now - entry.ended, 3)


def measured_report(started, verified, phases, rto, rpo, params, checks, errors, skipped=None, cleanup=None):
    """The part of every restore report that measures it: checks, RTO and RPO against their targets."""
    rto_target, rpo_target = params["rto_target_seconds"], params["rpo_target_seconds"]
    return {
        "started_at": iso_utc(started),
        "started_epoch": round(started, 3),
        "verified": verified,
        "phases": dict(phases.seconds),
        "rto_seconds": rto,
        "rto_target_seconds": rto_target,
        "rto_met": rto <= rto_target,
        "rpo_seconds": rpo,
        "rpo_target_seconds": rpo_target,
        "rpo_met": rpo <= rpo_target,
        "passed": verified and rto <= rto_target and rpo <= rpo_target,
        "checks": checks,
        "skipped_backups": list(skipped or []),
        "cleanup": dict(cleanup or {}),
        "errors": errors,
    }
