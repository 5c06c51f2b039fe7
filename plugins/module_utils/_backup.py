# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Logical PostgreSQL backups: plan, stream pg_dump into every destination, manifest last, retention.

One pg_dump stream is read once: compressed (by pg_dump, or here with zstd when pg_dump cannot),
optionally encrypted, hashed, and teed into every destination. A destination's copy counts only
after the destination confirms size and checksum; only then is its manifest written and only then
is retention applied there.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import tempfile
import time

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres
from ansible_collections.locksmith.ops.plugins.module_utils._backup_retention import plan_retention
from ansible_collections.locksmith.ops.plugins.module_utils._crypto_stream import (
    ALGORITHM,
    CHUNK,
    SUFFIX,
    Encryptor,
    key_id,
    load_key,
)
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._pg_dump import (
    READ_SIZE,
    dump_env,
    explain_dump_error,
    find_tool,
    stream_command,
    tool_version,
)
from ansible_collections.locksmith.ops.plugins.module_utils._storage import (
    ALL_DATABASES_LABEL,
    StorageError,
    build_destinations,
    new_backup_id,
    storage_argument_spec,
)
from ansible_collections.locksmith.ops.plugins.module_utils._stream import (
    SUFFIXES,
    Pipeline,
    Tee,
    compressor,
    plan_compression,
)

MANIFEST_FORMAT = 1
# zstd worker threads; past the cores a database host can spare for a backup, more only adds memory.
MAX_COMPRESSION_THREADS = 32
# How far in the future a backup's end may be (clocks of hosts backing up to one place differ a little).
CLOCK_SKEW_SECONDS = 300
GLOBALS_TRAILER = b"PostgreSQL database cluster dump complete"
# Directory-format staging (a plaintext dump, even when the backup is encrypted). Its run holds a lock on the
# OWNER_FILE in it, which the kernel drops when that run dies, even of SIGKILL (_lock_staging). One without that
# file (being set up, or made by an older version) is removed only after the grace period.
STAGING_PREFIX = ".locksmith-pg_backup-"
STAGING_OWNER_FILE = "owner"
STAGING_GRACE_SECONDS = 86400
# Temporary tables (other sessions' included, which no one else may read) are never dumped, so never counted.
_ROW_ESTIMATES = (
    "SELECT n.nspname AS schema, c.relname AS name, c.reltuples::bigint AS rows, c.relpersistence AS persistence "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%%' ORDER BY 1, 2"
)
_WAL_LSN = (
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text AS lsn"
)
# A backup taken with other filters (a one-table export, say) is another kind of backup: it neither makes a full
# one not due nor takes the place of one in retention.
FILTER_OPTIONS = ("schemas", "exclude_schemas", "tables", "exclude_tables")


def future_dated(where, entry, now, warnings, consequence) -> bool:
    """Whether ``entry`` ended more than CLOCK_SKEW_SECONDS from now (made while a clock was ahead: its age would be
    negative); if so, warn naming it and what this means here (``consequence``)."""
    ahead = entry.ended - now
    if ahead <= CLOCK_SKEW_SECONDS:
        return False
    warnings.append(
        "%s: backup %s of '%s' ended at %s, %ds in the future; it was made while a clock was wrong, so it %s: check "
        "NTP on the hosts that back up" % (where, entry.backup_id, entry.label, iso(entry.ended), ahead, consequence)
    )
    return True


def partial_filters(manifest) -> dict:
    """The schemas/tables filters a backup was taken with ({} for the whole database): a partial backup is never the
    newest good one nor chosen for a whole-database restore unless named. Leaving a schema or table out
    (exclude_schemas, exclude_tables: a cache, a log) still makes the database's backup."""
    recorded = (manifest or {}).get("filters")
    if not isinstance(recorded, dict):
        return {}
    return {option: recorded[option] for option in ("schemas", "tables") if recorded.get(option)}


def filter_key(filters):
    """What a backup's filters take, as names rather than as written ('users', 'public.users' and 'public."users"'
    are one table): equal keys mean the same kind of backup. A manifest's filters that do not parse get a key of
    their own."""
    if filters is not None and not isinstance(filters, dict):
        return ("unreadable",)
    try:
        parsed = parse_filters(filters)
    except _postgres.InvalidIdentifier:
        return ("unreadable", json.dumps(filters, sort_keys=True, default=str))
    return tuple(frozenset(parsed[option]) for option in FILTER_OPTIONS)


def parse_filters(values) -> dict:
    """{option: [names, ...]} from pg_backup's filter options (or a manifest's recorded ``filters``), as written:
    schemas as (schema,), tables as (schema, table); a name needing quotes is written '"My Schema"', as in SQL.

    Raises InvalidIdentifier naming the entry that is not a name.
    """
    if values is not None and not isinstance(values, dict):
        raise _postgres.InvalidIdentifier(
            "filters %r are not a mapping of option to names" % (values,), option="filters"
        )
    parsed = {}
    for option in FILTER_OPTIONS:
        names = (values or {}).get(option) or []
        if not isinstance(names, list):
            raise _postgres.InvalidIdentifier("%s must be a list of names" % option, option=option)
        if option in ("schemas", "exclude_schemas"):
            parsed[option] = [
                (_postgres.validate_identifier(name, "%s[%d]" % (option, index), quoted=True),)
                for index, name in enumerate(names)
            ]
        else:
            parsed[option] = [
                _postgres.split_qualified(name, "%s[%d]" % (option, index), quoted=True)
                for index, name in enumerate(names)
            ]
    return parsed


def filters_take(filters, schema, table) -> bool:
    """Whether pg_dump, given ``filters`` (parse_filters: exact names), dumps the table ``schema``.``table``.

    As in pg_dump, --table selects regardless of --schema and --exclude-schema, and --exclude-table wins.
    """
    if filters["tables"]:
        taken = (schema, table) in filters["tables"]
    else:
        in_schemas = not filters["schemas"] or (schema,) in filters["schemas"]
        taken = in_schemas and (schema,) not in filters["exclude_schemas"]
    return taken and (schema, table) not in filters["exclude_tables"]


_DATABASES = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"


class BackupError(LocksmithError):
    """A dump, a verification or a destination failed."""


def backup_argument_spec():
    """pg_backup's options: connection and destination fragments plus its own."""
    spec = _postgres.postgres_argument_spec()
    spec.update(storage_argument_spec())
    spec.update(
        state=dict(type="str", default="present", choices=["present", "verified"]),
        database=dict(type="str"),
        all_databases=dict(type="bool", default=False),
        format=dict(type="str", default="custom", choices=["custom", "directory"]),
        jobs=dict(type="int", default=1),
        schemas=dict(type="list", elements="str", default=[]),
        exclude_schemas=dict(type="list", elements="str", default=[]),
        tables=dict(type="list", elements="str", default=[]),
        exclude_tables=dict(type="list", elements="str", default=[]),
        compression=dict(type="str", default="zstd:3"),
        compression_threads=dict(type="int", default=1),
        pg_bin_dir=dict(type="path"),
        encryption_key=dict(type="str", no_log=True),
        encryption_key_file=dict(type="path", no_log=False),
        min_interval_seconds=dict(type="int", default=3600),
        backup_id=dict(type="str"),
        work_dir=dict(type="path"),
        metrics_dir=dict(type="path"),
        rpo_target_seconds=dict(type="int", default=93600),
        exact_row_counts=dict(type="bool", default=False),
    )
    return spec


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# ---- the job -----------------------------------------------------------------------------------
class BackupJob:
    """One pg_backup invocation: read state, plan, and (unless in check mode) apply."""

    def __init__(self, params, warnings, clock=time.time):
        self.params = params
        self.warnings = warnings
        self.clock = clock
        self.queries = []
        if params.get("all_databases"):
            self.label = ALL_DATABASES_LABEL
        else:
            self.label = _postgres.validate_identifier(params.get("database"), "database")
        # The names the filters stand for (one needing quotes is written '"My Schema"', as in SQL).
        self.filters = parse_filters(params)
        if params.get("jobs", 1) < 1:
            raise BackupError("jobs must be 1 or more (it is %s)" % params.get("jobs"), option="jobs")
        threads = params.get("compression_threads", 1)
        if threads is None or not 0 <= threads <= MAX_COMPRESSION_THREADS:
            raise BackupError(
                "compression_threads must be 0 (compress in the dump's own thread) to %d (it is %s); 1, the "
                "default, compresses beside the dump on one more core" % (MAX_COMPRESSION_THREADS, threads),
                option="compression_threads",
            )
        if params.get("jobs", 1) > 1 and params.get("format") != "directory":
            raise BackupError(
                "jobs=%d needs format=directory (pg_dump dumps in parallel only to a directory); "
                "set format: directory or jobs: 1" % params["jobs"],
                option="jobs",
            )
        self.destinations = build_destinations(params["destinations"], warnings)
        self.key = load_key(params.get("encryption_key"), params.get("encryption_key_file"), warnings)
        self.pg_dump = find_tool("pg_dump", params.get("pg_bin_dir"))
        self.pg_dump_version, major = tool_version(self.pg_dump)
        self.compression = plan_compression(params.get("compression") or "zstd:3", major)
        self.facts = {}
        self.existing = {}
        self.row_counts = {}
        self._snapshot = None

    # reads -------------------------------------------------------------------------------------
    def _query(self, conn, text, params=None):
        self.queries.append(text)
        return self._fetch(conn, text, params)

    @staticmethod
    def _fetch(conn, statement, params=None):
        """fetch_all, with the server's refusal (a count(*) on a table not granted) as an error, not a traceback."""
        try:
            return _postgres.fetch_all(conn, statement, params)
        except _postgres.psycopg2.Error as err:
            reason = (err.pgerror or str(err)).strip().splitlines()[0]
            raise BackupError(
                "PostgreSQL refused %s on database '%s': %s"
                % (_postgres.rendered(conn, statement), conn.info.dbname, explain_dump_error(reason))
            ) from err

    def inspect_database(self):
        """Server version, WAL position and the databases in scope; clear errors before pg_dump runs."""
        dbname = "postgres" if self.label == ALL_DATABASES_LABEL else self.label
        conn = _postgres.connect(self.params, dbname, autocommit=True)
        try:
            version = self._query(conn, "SELECT current_setting('server_version') AS v")[0]["v"]
            if self.label == ALL_DATABASES_LABEL:
                databases = [row["datname"] for row in self._query(conn, _DATABASES)]
            else:
                databases = [self.label]
        finally:
            conn.close()
        self.facts = {"server_version": version, "databases": databases}
        return self.facts

    def inspect_destinations(self, write=True):
        """Every destination reachable, and its backups of this label."""
        for destination in self.destinations:
            destination.check_access(write)
            self.existing[destination.index] = destination.list_backups(self.label)
        return self.existing

    def same_filters(self, entry):
        """Whether a backup was taken with filters that take what this run's take."""
        return filter_key((entry.manifest or {}).get("filters")) == self.filter_key

    @property
    def filter_key(self):
        return tuple(frozenset(self.filters[option]) for option in FILTER_OPTIONS)

    def newest_complete(self):
        """(entry, destination) of the newest complete backup across destinations, or (None, None)."""
        best = None
        for destination in self.destinations:
            for entry in self.existing.get(destination.index, []):
                if entry.complete and self.same_filters(entry) and (best is None or entry.sort_key > best.sort_key):
                    best = entry
        return best

    def due(self, now):
        """(True, reason) when a backup must run: some destination lacks one newer than min_interval_seconds."""
        interval = self.params.get("min_interval_seconds") or 0
        if interval <= 0:
            return True, "min_interval_seconds is 0: every run takes a backup"
        for destination in self.destinations:
            complete = []
            for e in self.existing.get(destination.index, []):
                if not e.complete or not self.same_filters(e):
                    continue
                # Counting it would hold off every backup until the clock catches up with it.
                if future_dated(destination.name, e, now, self.warnings, "does not count as recent"):
                    continue
                complete.append(e)
            if not complete:
                return True, "%s has no complete backup" % destination.name
            age = now - max(e.ended for e in complete)
            if age >= interval:
                return True, "%s: newest backup is %ds old (min_interval_seconds=%d)" % (
                    destination.name,
                    age,
                    interval,
                )
        return False, "every destination has a backup younger than min_interval_seconds=%d" % interval

    def retention_plan(self, destination, new_id=None, now=None):
        """(keep, prune) at one destination, counting the backup about to be made (check mode) if given."""
        policy = destination.options.get("retention")
        if not policy:
            return [], []
        entries = []
        for e in self.existing.get(destination.index, []):
            if e.manifest_error:
                # Not a leftover (its manifest, written last, is there) and never restored: left for a person to
                # look at, not counted as a good backup and not deleted.
                self.warnings.append(
                    "%s: retention left backup %s alone: %s; it is never restored: inspect it, then delete it by hand"
                    % (destination.name, e.backup_id, e.manifest_error)
                )
                continue
            if e.complete and not self.same_filters(e):
                # Another kind (a one-table export, a backup made before this job's filters were edited): another
                # job's, under that job's policy, so neither counted nor pruned here (docs/backup.md).
                continue
            entries.append({"id": e.backup_id, "when": e.ended, "complete": e.complete, "entry": e})
        if new_id is not None:
            entries.append({"id": new_id, "when": now, "complete": True, "entry": None})
        return plan_retention(entries, policy, now)

    # the dump ----------------------------------------------------------------------------------
    def _dump_args(self, fmt):
        args = [self.pg_dump, "--format=%s" % fmt, "--no-password", *self.compression["pg_dump_args"]]
        if self._snapshot:
            args.append("--snapshot=%s" % self._snapshot)
        p = self.params
        if p.get("schemas") or p.get("tables"):
            args.append("--strict-names")
        for option, flag in (
            ("schemas", "--schema"),
            ("exclude_schemas", "--exclude-schema"),
            ("tables", "--table"),
            ("exclude_tables", "--exclude-table"),
        ):
            args.extend("%s=%s" % (flag, _postgres.dump_pattern(*names)) for names in self.filters[option])
        return args

    def _row_estimates(self, database):
        conn = _postgres.connect(self.params, database, autocommit=True)
        try:
            rows = self._query(conn, _ROW_ESTIMATES)
        finally:
            conn.close()
        return {
            "%s.%s" % (r["schema"], r["name"]): (r["rows"] if r["rows"] >= 0 else None)
            for r in rows
            if self._dumped(r["schema"], r["name"])
        }

    def _dumped(self, schema, table):
        """Whether pg_dump's filters take this table: a table left out is neither counted nor listed."""
        return filters_take(self.filters, schema, table)

    def _exact_counts(self, database):
        """(open connection, exported snapshot, {table: count(*)}): pg_dump then dumps that same snapshot.

        The transaction must stay open until pg_dump has imported the snapshot; the caller closes it.
        """
        conn = _postgres.connect(self.params, database)
        try:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            snapshot = self._query(conn, "SELECT pg_export_snapshot() AS s")[0]["s"]
            standby = self._query(conn, "SELECT pg_is_in_recovery() AS r")[0]["r"]
            counts = {}
            for row in self._query(conn, _ROW_ESTIMATES):
                if not self._dumped(row["schema"], row["name"]):
                    continue
                if standby and row["persistence"] == "u":
                    # A standby has no unlogged data (count(*) is refused there) and pg_dump dumps none: 0 rows.
                    counts["%s.%s" % (row["schema"], row["name"])] = 0
                    continue
                statement = _postgres.sql.SQL("SELECT count(*) AS n FROM {}").format(
                    _postgres.identifier(row["schema"], row["name"])
                )
                self.queries.append(_postgres.rendered(conn, statement))
                counts["%s.%s" % (row["schema"], row["name"])] = self._fetch(conn, statement)[0]["n"]
        except BaseException:
            conn.close()
            raise
        return conn, snapshot, counts

    def _wal_lsn(self):
        conn = _postgres.connect(self.params, self.facts["databases"][0] if self.facts["databases"] else "postgres")
        try:
            return self._query(conn, _WAL_LSN)[0]["lsn"]
        finally:
            conn.close()

    def _stages(self, plain_method=None, level=0):
        threads = self.params.get("compression_threads", 1)
        stages = [compressor(plain_method, level, threads) if plain_method else None]
        if self.key is not None:
            stages.append(Encryptor(self.key))
        return stages

    def _artefact(self, name, writers, feed, stages, extra):
        """Stream one artefact into every live writer; returns its manifest entry."""
        sinks = {}
        for index, writer in list(writers.items()):
            try:
                sinks[index] = writer.open_artefact(name)
            except StorageError as err:
                self._fail_destination(index, writers, err)
        if not sinks:
            raise self._all_failed()
        tee = Tee(sinks, threaded=True)
        pipeline = Pipeline(stages, tee)
        try:
            feed(pipeline)
            pipeline.finish()
        except BaseException:
            tee.abort()
            raise
        results = tee.close()
        for index, err in tee.failures.items():
            self._fail_destination(index, writers, err)
        if not writers:
            raise self._all_failed()
        entry = dict(extra, name=name, size_bytes=tee.size, sha256=tee.hexdigest)
        for result in results.values():
            if result.get("s3_checksum_sha256"):
                entry["s3_checksum_sha256"] = result["s3_checksum_sha256"]
        return entry

    def _fail_destination(self, index, writers, err):
        self.failed[index] = err
        writer = writers.pop(index, None)
        if writer is not None:
            writer.abort()

    def _all_failed(self):
        messages = "; ".join(str(err) for err in self.failed.values())
        return BackupError("every destination failed: %s" % messages, failed_destinations=sorted(self.failed))

    def _feed_command(self, argv, env, describe):
        def feed(pipeline):
            def sink(data):
                pipeline.push(data)
                return pipeline.tee.alive

            self.warnings.extend(stream_command(argv, env, sink, describe))

        return feed

    def _feed_file(self, path):
        def feed(pipeline):
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(READ_SIZE), b""):
                    pipeline.push(chunk)

        return feed

    def _suffix(self, added_suffix):
        return added_suffix + (SUFFIX if self.key is not None else "")

    def _dump_database(self, database, writers):
        """Artefacts of one database: one stream (custom) or one file each (directory)."""
        env = dump_env(self.params, database)
        safe = database if _is_plain(database) else "db-%s" % _short_hash(database)
        by_us = self.compression["by"] == "locksmith"
        method = self.compression["method"] if by_us else None
        suffix = self._suffix(self.compression["suffix"])
        extra = {"kind": "dump", "database": database, "format": self.params["format"]}
        if self.params["format"] == "custom":
            name = safe + ".dump" + suffix
            feed = self._feed_command(self._dump_args("custom"), env, "pg_dump of database '%s'" % database)
            stages = self._stages(method, self.compression["level"])
            return [self._artefact(name, writers, feed, stages, dict(extra, plain_name=safe + ".dump"))]
        try:
            staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.params.get("work_dir"))
            lock = _lock_staging(staging)
        except OSError as err:
            raise BackupError(
                "work_dir '%s' cannot hold the directory-format staging area (%s); create it or choose another"
                % (self.params.get("work_dir") or tempfile.gettempdir(), err.strerror),
                option="work_dir",
            ) from err
        try:
            target = os.path.join(staging, "dump")
            argv = [*self._dump_args("directory"), "--jobs=%d" % self.params["jobs"], "--file=%s" % target]
            self.warnings.extend(stream_command(argv, env, lambda data: True, "pg_dump of database '%s'" % database))
            entries = []
            for file_name in sorted(os.listdir(target)):
                plain = "%s.dir/%s" % (safe, file_name)
                stages = self._stages(method, self.compression["level"])
                entries.append(
                    self._artefact(
                        plain + suffix,
                        writers,
                        self._feed_file(os.path.join(target, file_name)),
                        stages,
                        dict(extra, plain_name=plain),
                    )
                )
            return entries
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            os.close(lock)

    def remove_stale_staging(self):
        """Remove the plaintext staging dumps that killed runs left in the staging directory; warn for each."""
        parent = self.params.get("work_dir") or tempfile.gettempdir()
        try:
            names = [n for n in os.listdir(parent) if n.startswith(STAGING_PREFIX)]
        except OSError:
            return  # no work_dir yet: nothing left over (a directory-format dump then names the problem)
        for name in sorted(names):
            path = os.path.join(parent, name)
            if _remove_if_stale(path, self.clock()):
                self.warnings.append(
                    "removed %s, the staging area of a directory-format pg_backup run that was killed: it held the "
                    "dump unencrypted, readable by this user, until now; find out what killed that run" % path
                )

    def _dump_globals(self, writers):
        pg_dumpall = find_tool("pg_dumpall", self.params.get("pg_bin_dir"))
        method = self.compression["method"] if self.compression["method"] in SUFFIXES else None
        name = "globals.sql" + self._suffix(SUFFIXES.get(method, ""))
        argv = [pg_dumpall, "--globals-only", "--no-password", "--database=postgres"]
        feed = self._feed_command(argv, dump_env(self.params, "postgres"), "pg_dumpall --globals-only")
        stages = self._stages(method, self.compression["level"])
        return self._artefact(name, writers, feed, stages, {"kind": "globals", "plain_name": "globals.sql"})

    def run(self, backup_id=None):
        """Take the backup into every destination; returns the result dict (raises if all failed)."""
        started = self.clock()
        backup_id = backup_id or new_backup_id(started)
        self.failed = {}
        writers = {}
        for destination in self.destinations:
            try:
                writers[destination.index] = destination.open_writer(self.label, backup_id)
            except StorageError as err:
                self.failed[destination.index] = err
        if not writers:
            raise self._all_failed()
        try:
            wal_lsn = self._wal_lsn()
            artefacts, estimates = [], {}
            if self.label == ALL_DATABASES_LABEL:
                artefacts.append(self._dump_globals(writers))
            for database in self.facts["databases"]:
                estimates[database] = self._row_estimates(database)
                if not self.params.get("exact_row_counts"):
                    artefacts.extend(self._dump_database(database, writers))
                    continue
                conn, self._snapshot, self.row_counts[database] = self._exact_counts(database)
                try:
                    artefacts.extend(self._dump_database(database, writers))
                finally:
                    self._snapshot = None
                    conn.close()
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        ended = self.clock()
        manifest = self.manifest(backup_id, started, ended, wal_lsn, artefacts, estimates)
        body = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
        copies = []
        for index, writer in list(writers.items()):
            try:
                writer.commit(body, artefacts)
            except StorageError as err:
                self._fail_destination(index, writers, err)
                continue
            destination = self.destinations[index]
            copies.append(
                {
                    "destination": destination.name,
                    "location": destination.location(self.label, backup_id),
                    "status": "verified",
                    "size_bytes": manifest["size_bytes"],
                }
            )
        pruned, retention_errors = [], []
        for index in writers:
            destination = self.destinations[index]
            try:
                # Prune only where the new copy is verified, listing afresh so the new backup is counted.
                self.existing[index] = destination.list_backups(self.label)
                prune = self.retention_plan(destination, now=self.clock())[1]
                self._prune(destination, prune, protect=backup_id, done=pruned)
            except StorageError as err:
                # The copy there is verified and stays reported as such; only retention failed there.
                retention_errors.append("%s: %s" % (destination.name, err))
        for index, err in sorted(self.failed.items()):
            copies.append(
                {
                    "destination": self.destinations[index].name,
                    "location": self.destinations[index].location(self.label, backup_id),
                    "status": "failed",
                    "error": str(err),
                }
            )
        return {"backup": manifest, "copies": copies, "pruned": pruned, "retention_errors": retention_errors}

    def _prune(self, destination, prune, protect, done):
        entries = {e.backup_id: e for e in self.existing.get(destination.index, [])}
        for backup_id, reason in prune:
            if backup_id == protect:
                continue
            entry = entries.get(backup_id)
            destination.delete(self.label, backup_id, temporary_name=getattr(entry, "temp_name", None))
            done.append({"destination": destination.name, "id": backup_id, "reason": reason})

    def manifest(self, backup_id, started, ended, wal_lsn, artefacts, estimates):
        """What a restore needs to trust and use the backup; no secret ever goes in."""
        single = self.label != ALL_DATABASES_LABEL
        return {
            "manifest_format": MANIFEST_FORMAT,
            "id": backup_id,
            "label": self.label,
            "database": self.label if single else None,
            "databases": list(self.facts["databases"]),
            "globals": not single,
            "server_version": self.facts["server_version"],
            "pg_dump_version": self.pg_dump_version,
            "started_at": iso(started),
            "ended_at": iso(ended),
            "started_epoch": round(started, 3),
            "ended_epoch": round(ended, 3),
            "duration_seconds": round(ended - started, 3),
            "size_bytes": sum(a["size_bytes"] for a in artefacts),
            "format": self.params["format"],
            "compression": {k: self.compression[k] for k in ("method", "level", "by")},
            "encryption": (
                {"algorithm": ALGORITHM, "key_id": key_id(self.key), "chunk_bytes": CHUNK}
                if self.key is not None
                else None
            ),
            "wal_lsn_start": wal_lsn,
            "row_estimates": estimates,
            "filters": {k: list(self.params.get(k) or []) for k in FILTER_OPTIONS},
            "artefacts": artefacts,
            # Only with exact_row_counts, so manifests without the option stay as they were.
            **({"row_counts": self.row_counts} if self.row_counts else {}),
        }


def _lock_staging(path):
    """Hold this run's exclusive lock on a new staging directory's owner file; returns its descriptor.

    The lock is on a regular file opened for writing (NFS turns flock into a POSIX lock, which needs that). It is
    taken under a temporary name, which is then renamed to STAGING_OWNER_FILE: an owner file another run can see is
    always locked while its run lives.
    """
    fd = None
    pending = os.path.join(path, STAGING_OWNER_FILE + ".new")
    try:
        fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"%d\n" % os.getpid())
        os.rename(pending, os.path.join(path, STAGING_OWNER_FILE))
    except BaseException:
        if fd is not None:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)  # nothing was staged yet
        raise
    return fd


def _remove_if_stale(path, now):
    """Remove a staging directory that belongs to no running pg_backup; returns whether it did.

    Its owner file's lock is free (its run is gone; the kernel drops the lock even on SIGKILL), or it has no owner
    file and is older than the grace period (one made by an older version). Removed while holding that lock. A lock,
    unlike a PID, is not fooled by a reused PID or by a run in another PID namespace sharing work_dir. Only this
    user's directories are considered, and a symlink (planted in /tmp, say) is never followed.
    """
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return False
    try:
        fd = os.open(os.path.join(path, STAGING_OWNER_FILE), os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        if now - info.st_mtime <= STAGING_GRACE_SECONDS:
            return False  # being set up, or an older version's run that may still be going
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.lexists(path)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.lexists(path)
    except OSError:
        return False  # a running backup holds it (or this filesystem cannot lock: left alone)
    finally:
        os.close(fd)


def _is_plain(name):
    try:
        _postgres.validate_identifier(name, "database")
    except _postgres.InvalidIdentifier:
        return False
    return True


def _short_hash(text):
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
