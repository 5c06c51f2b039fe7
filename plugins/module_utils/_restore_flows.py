# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""What pg_backup_restore does per mode: plan (reads only, with the interlocks), then apply and report."""

from __future__ import annotations

import os
import time

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres
from ansible_collections.locksmith.ops.plugins.module_utils import _restore as R
from ansible_collections.locksmith.ops.plugins.module_utils import _restore_checks as C
from ansible_collections.locksmith.ops.plugins.module_utils._backup import iso
from ansible_collections.locksmith.ops.plugins.module_utils._crypto_stream import load_key
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._pg_dump import dump_env, find_tool, stream_command
from ansible_collections.locksmith.ops.plugins.module_utils._storage import build_destinations, destination_spec


class RestoreJob:
    """One pg_backup_restore invocation."""

    def __init__(self, params, warnings, clock=time.time):
        self.params = params
        self.warnings = warnings
        self.clock = clock
        self.mode = params["mode"]
        self.database = _postgres.validate_identifier(params["database"], "database")
        if params.get("target_database"):
            self.target = _postgres.validate_identifier(params["target_database"], "target_database")
        else:
            self.target = None if self.mode == "drill" else self.database
        self.tables = R.tables_by_schema(params.get("tables") or [])
        if self.mode == "tables" and not self.tables:
            raise R.RestoreError("mode=tables needs tables: give 'schema.table' names to restore", option="tables")
        self.target_schema = None
        if params.get("target_schema"):
            self.target_schema = _postgres.validate_identifier(params["target_schema"], "target_schema", quoted=True)
        if params.get("jobs", 1) < 1:
            raise R.RestoreError("jobs must be 1 or more (it is %s)" % params.get("jobs"), option="jobs")
        for option in ("databases", "roles", "extensions"):
            R.check_names(params.get(option) or [], option)
        R.check_work_dir(params.get("work_dir"))
        self.destinations = build_destinations(params["destinations"], warnings)
        self.key = load_key(params.get("encryption_key"), params.get("encryption_key_file"), warnings)
        self.pg_restore = find_tool("pg_restore", params.get("pg_bin_dir"))
        self.server = R.Server(params)
        self.entry = None
        self.report = None
        self.target_exists = False
        # Set once the run has dropped or replaced something in the target: a failure after it is not "nothing".
        self.target_touched = False

    # reads and interlocks (also in check mode) ------------------------------------------------------
    def plan(self):
        """Choose the backup and check every interlock; changes nothing."""
        self.entry, self.skipped = R.choose_backup(
            self.destinations,
            self.database,
            self.params.get("backup_id"),
            partial_ok=self.mode == "tables",
            tables=[(schema, name) for schema, names in sorted(self.tables.items()) for name in names],
        )
        R.check_artefacts(self.entry)
        if self.mode == "drill" and self.target is None:
            self.target = R.scratch_name(self.database, self.entry.backup_id, "drill")
        self.target_exists = self.server.database_exists(self.target)
        getattr(self, "_interlocks_" + self.mode)()
        return {
            "mode": self.mode,
            "id": self.entry.backup_id,
            "source": self.entry.destination.name,
            "location": self.entry.destination.location(self.database, self.entry.backup_id),
            "backup_ended_at": iso(self.entry.ended),
            "target_database": self.target,
            "target_exists": self.target_exists,
            "skipped": self.skipped,
        }

    def _interlocks_drill(self):
        if self.target_exists:
            raise R.RestoreError(
                "target_database '%s' exists; a drill restores only into a new scratch database: "
                "omit target_database or name one that does not exist" % self.target,
                option="target_database",
            )

    def _interlocks_recover(self):
        if self.target in ("postgres", "template0", "template1"):
            raise R.RestoreError(
                "target_database '%s' is the maintenance or a template database, which the restore connects to or "
                "PostgreSQL cannot drop; recover into another database and point the application at it" % self.target,
                option="target_database",
            )
        wanted = R.confirm_text(self.target)
        if self.params.get("confirm") != wanted:
            raise R.RestoreError(
                "mode=recover overwrites database '%s'; set confirm to exactly %r to go on" % (self.target, wanted),
                option="confirm",
            )
        if not self.target_exists:
            return
        relations = self.server.user_relations(self.target)
        if relations and not self.params.get("allow_nonempty"):
            raise R.RestoreError(
                "target database '%s' is not empty (%d tables, views or sequences); it would be dropped and "
                "replaced: set allow_nonempty: true to do so (a safety backup is taken first)"
                % (self.target, relations),
                option="allow_nonempty",
            )
        if not self.params.get("safety_backup_dir"):
            raise R.RestoreError(
                "target database '%s' exists; set safety_backup_dir to a local directory for the safety backup "
                "taken before it is overwritten" % self.target,
                option="safety_backup_dir",
            )

    def _interlocks_tables(self):
        if not self.target_exists:
            raise R.RestoreError(
                "target_database '%s' does not exist; create it first or restore the whole database" % self.target,
                option="target_database",
            )
        for schema, names in self.tables.items():
            for name in names:
                where = self.target_schema or schema
                if self.server.table_exists(self.target, where, name) and not self.params.get("allow_nonempty"):
                    raise R.RestoreError(
                        "table %s exists in '%s'; set allow_nonempty: true to replace it, or restore into "
                        "another schema with target_schema" % (_postgres.written(where, name), self.target),
                        option="allow_nonempty",
                    )

    # the restore -----------------------------------------------------------------------------------
    def apply(self):
        """Fetch, decrypt, restore, verify; write the report; clean up (main() writes a drill's metrics)."""
        started = self.clock()
        phases = R.Phases()
        checks, failure, cleanup, result = [], None, {}, {}
        work = R.make_work_dir(self.params.get("work_dir"))
        scratch = None
        verified_at = None
        try:
            fetched, plain = os.path.join(work, "fetched"), os.path.join(work, "plain")
            os.makedirs(fetched)
            os.makedirs(plain)
            with phases.timed("fetch"):
                checks += R.fetch(self.entry, fetched)
            with phases.timed("decrypt"):
                plain_path = R.decrypt(self.entry, fetched, plain, self.key)
            toc = R.toc(self.pg_restore, plain_path)
            if self.mode == "recover" and self.target_exists:
                with phases.timed("safety_backup"):
                    result["safety_backup"] = self._safety_backup()
            with phases.timed("restore"):
                if self.mode == "tables":
                    scratch = R.scratch_name(self.database, self.entry.backup_id, "tables")
                    table_map = self._restore_tables(plain_path, scratch, work)
                else:
                    if self.target_exists:
                        self.server.drop_database(self.target)
                        self.target_touched = True
                    self.server.create_database(self.target)
                    self.target_touched = self.target_touched or self.mode == "recover"
                    if self.mode == "drill":
                        scratch = self.target
                    if not self.params.get("no_owner"):
                        result["roles_created"] = self.server.create_own_roles(toc["owners"])
                    R.run_pg_restore(
                        R.pg_restore_argv(self.pg_restore, self.target, plain_path, self.params),
                        self.params,
                        self.target,
                        "pg_restore of backup %s into '%s'" % (self.entry.backup_id, self.target),
                    )
                    table_map = {name: name for name in toc["tables"]}  # (schema, table): (schema, table)
            with phases.timed("verify"):
                checks += self._verify(table_map, toc)
            verified_at = self.clock()
        except LocksmithError as err:
            failure = err
            checks += [c for c in err.details.get("checks", []) if c not in checks]
        except OSError as err:  # a local file step (a full work_dir): reported like any failure, never a traceback
            failure = R.local_error(err, work)
        finally:
            R.remove_tree(work)
            if scratch and (self.mode == "tables" or not self.params.get("keep_scratch")):
                try:
                    self.server.drop_database(scratch)
                    cleanup["dropped"] = scratch
                except LocksmithError as err:
                    cleanup["left"] = scratch
                    self.warnings.append("scratch database '%s' was not dropped: %s" % (scratch, err))
            elif scratch:
                cleanup["kept"] = scratch
        report = self._report(started, verified_at, phases, checks, failure, cleanup)
        result.update(report=report)
        # Kept for main(), which writes a drill's metrics once it knows the outcome, also when what follows fails.
        self.report = report
        if self.params.get("report_dir"):
            result["report_files"] = C.write_report(self.params["report_dir"], report)
        return result

    def _restore_tables(self, plain_path, scratch, work):
        """Chosen tables into a scratch database, moved to target_schema there, then dumped into the target.

        Returns {(schema, table) in the backup: (schema, table) restored}: names stay apart, as a schema or table
        name may hold a dot ("v1.2".orders).
        """
        self.server.create_database(scratch)
        sql = R._sql()
        table_map, patterns = {}, []
        for schema, names in sorted(self.tables.items()):
            self.server.run(scratch, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(_postgres.identifier(schema)))
            argv = R.pg_restore_argv(
                self.pg_restore, scratch, plain_path, dict(self.params, no_owner=True), schema, names
            )
            R.run_pg_restore(
                argv, self.params, scratch, "pg_restore of tables %s from backup %s" % (names, self.entry.backup_id)
            )
            where = self.target_schema or schema
            for name in names:
                if where != schema:
                    self.server.run(
                        scratch, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(_postgres.identifier(where))
                    )
                    self.server.run(
                        scratch,
                        sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                            _postgres.identifier(schema, name), _postgres.identifier(where)
                        ),
                    )
                table_map[(schema, name)] = (where, name)
                patterns.append("--table=%s" % _postgres.dump_pattern(where, name))
        moved = os.path.join(work, "tables.dump")
        pg_dump = find_tool("pg_dump", self.params.get("pg_bin_dir"))
        argv = [pg_dump, "--format=custom", "--no-password", "--no-owner", "--file=%s" % moved, *patterns]
        stream_command(argv, dump_env(self.params, scratch), lambda data: True, "pg_dump of the restored tables")
        restored = sorted(table_map.values())
        for schema in sorted({schema for schema, _name in restored}):
            self.server.run(self.target, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(_postgres.identifier(schema)))
        # One statement, without CASCADE: all the tables go or none does, and a view, foreign key or rule of
        # another object that uses one of them makes the server refuse (naming it) instead of vanishing with it.
        self.server.run(
            self.target,
            sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.SQL(", ").join(_postgres.identifier(schema, name) for schema, name in restored)
            ),
        )
        self.target_touched = True
        argv = R.pg_restore_argv(self.pg_restore, self.target, moved, dict(self.params, no_owner=True, jobs=1))
        R.run_pg_restore(argv, self.params, self.target, "pg_restore of the chosen tables into '%s'" % self.target)
        return table_map

    def _verify(self, table_map, toc):
        checks = []
        if self.params.get("check_row_counts", True):
            checks += C.check_row_counts(
                self.server,
                self.target,
                self.entry.manifest,
                self.database,
                table_map,
                self.params["row_count_tolerance"],
            )
        checks += C.run_assertions(self.params, self.target, self.params.get("assertions") or [], self.server.queries)
        extensions = list(self.params.get("extensions") or [])
        roles = list(self.params.get("roles") or [])
        if self.mode != "tables":
            extensions += [e for e in toc["extensions"] if e not in extensions]
            if not self.params.get("no_owner"):
                roles += [r for r in toc["owners"] if r not in roles]
        checks += C.check_present(self.server, self.target, extensions, roles)
        return checks

    def _safety_backup(self):
        """pg_backup of the target as it is now, into safety_backup_dir, before it is dropped."""
        from ansible_collections.locksmith.ops.plugins.module_utils._backup import BackupJob, backup_argument_spec
        from ansible_collections.locksmith.ops.plugins.module_utils._backup_flows import apply_present

        directory = self.params["safety_backup_dir"]
        os.makedirs(directory, mode=0o700, exist_ok=True)
        params = {k: v.get("default") for k, v in backup_argument_spec().items()}
        params.update({k: self.params.get(k) for k in _postgres.postgres_argument_spec()})
        destination = {k: v.get("default") for k, v in destination_spec().items()}
        destination.update(type="local", path=directory)
        params.update(database=self.target, destinations=[destination], min_interval_seconds=0)
        params["pg_bin_dir"] = self.params.get("pg_bin_dir")
        result = apply_present(BackupJob(params, self.warnings), False, self.clock())
        copy = result["copies"][0]
        if copy["status"] != "verified":
            raise R.RestoreError(
                "safety backup of '%s' failed (%s); nothing was overwritten; fix safety_backup_dir"
                % (self.target, copy.get("error")),
                option="safety_backup_dir",
            )
        return {"id": result["backup"]["id"], "location": copy["location"]}

    def _report(self, started, verified_at, phases, checks, failure, cleanup):
        ended = verified_at if verified_at is not None else self.clock()
        rto = round(ended - started, 3)
        rpo = R.entry_age(self.entry, started)
        failed = [c for c in checks if not c["ok"]]
        errors = [str(failure)] if failure else []
        errors += [
            "%s %s: expected %s, got %s%s"
            % (c["check"], c["subject"], c["expected"], c["actual"], " (%s)" % c["note"] if c["actual"] is None else "")
            for c in failed
        ]
        verified = failure is None and not failed
        fate = "kept for inspection" if cleanup.get("kept") else ("dropped" if self.mode == "drill" else "restored")
        if failure is not None and self.mode != "drill" and not self.target_touched:
            fate = "unchanged: the restore stopped before it dropped anything"
        elif failure is not None and self.target_touched:
            fate = (
                "incomplete: the restore stopped after it had dropped what it replaces"
                " (recover again, or from the safety backup)"
                if self.mode == "recover"
                else "incomplete: the restore stopped after it had dropped the tables it replaces"
            )
        return {
            "mode": self.mode,
            "database": self.database,
            "backup_id": self.entry.backup_id,
            "source": self.entry.destination.name,
            "backup_ended_at": iso(self.entry.ended),
            "target_database": self.target,
            "target_fate": fate,
            **R.measured_report(
                started, verified, phases, rto, rpo, self.params, checks, errors, self.skipped, cleanup
            ),
        }


def stopped_report(params, started, error, entry=None, skipped=None, fate=None):
    """The report of a run that stopped before its restore could report (no backup found, the storage or the server
    unreachable, a key or an input refused): what it knows, and no RTO, since nothing was restored and verified.

    ``entry`` is the backup chosen, when the run got that far (its RPO is then known).
    """
    if entry is not None and not isinstance(entry.ended, (int, float)):
        entry = None  # chosen, but with no time to age: reported as not chosen rather than guessed
    rpo = R.entry_age(entry, started) if entry is not None else None
    return {
        "mode": params["mode"],
        "database": params["database"],
        "backup_id": entry.backup_id if entry is not None else None,
        "source": entry.destination.name if entry is not None else None,
        "backup_ended_at": iso(entry.ended) if entry is not None else None,
        "target_database": params.get("target_database"),
        "target_fate": fate or "untouched: the %s stopped before it restored anything" % params["mode"],
        "started_at": iso(started),
        "started_epoch": round(started, 3),
        "verified": False,
        "phases": {},
        "rto_seconds": None,
        "rto_target_seconds": params["rto_target_seconds"],
        "rto_met": False,
        "rpo_seconds": rpo,
        "rpo_target_seconds": params["rpo_target_seconds"],
        "rpo_met": rpo is not None and rpo <= params["rpo_target_seconds"],
        "passed": False,
        "checks": list(getattr(error, "details", {}).get("checks", [])),
        "skipped_backups": list(skipped or []),
        "cleanup": {},
        "errors": [str(error)],
    }


def outcome_error(report, fail_on_missed_targets):
    """The RestoreError that fails the module for this report, or None when it passed."""
    if not report["verified"]:
        return R.RestoreError(
            "%s of '%s' from backup %s FAILED: %s"
            % (report["mode"], report["database"], report["backup_id"], "; ".join(report["errors"])),
            report=report,
        )
    missed = []
    if not report["rto_met"]:
        missed.append("RTO %.1fs > rto_target_seconds %d" % (report["rto_seconds"], report["rto_target_seconds"]))
    if not report["rpo_met"]:
        missed.append(
            "RPO %.0fs > rpo_target_seconds %d (take backups more often)"
            % (report["rpo_seconds"], report["rpo_target_seconds"])
        )
    if missed and fail_on_missed_targets:
        return R.RestoreError(
            "%s of '%s' verified but missed its targets: %s" % (report["mode"], report["database"], "; ".join(missed)),
            report=report,
        )
    return None
