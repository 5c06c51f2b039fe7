# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Restoring an all-databases backup: globals first (roles, memberships, tablespaces), then each database.

Existing roles are left as they are, so the bootstrap superuser and the restoring role are never altered.
Each database is created from template0 with the owner, encoding and locale of its archive's DATABASE
entry, restored with pg_restore, and verified against the manifest as a single-database restore is.
Names read from the manifest or the dump are validated and quoted with psycopg2.sql; no SQL text from
the backup runs as written except through pg_restore, as in any restore.
"""

from __future__ import annotations

import os
import subprocess  # nosec B404 - runs pg_restore with argv lists, never a shell
import time
from types import SimpleNamespace

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres
from ansible_collections.locksmith.ops.plugins.module_utils import _restore as R
from ansible_collections.locksmith.ops.plugins.module_utils import _restore_checks as C
from ansible_collections.locksmith.ops.plugins.module_utils import _restore_globals as G
from ansible_collections.locksmith.ops.plugins.module_utils._backup import iso
from ansible_collections.locksmith.ops.plugins.module_utils._crypto_stream import load_key
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._pg_dump import find_tool
from ansible_collections.locksmith.ops.plugins.module_utils._storage import ALL_DATABASES_LABEL, build_destinations

_DATABASE_ENTRY = ("DATABASE ", "DATABASE PROPERTIES ", "ACL - DATABASE ", "COMMENT - DATABASE ")
_PROTECTED = "SELECT current_user AS me, (SELECT rolname FROM pg_roles WHERE oid = 10) AS bootstrap"
_VERSION = "SELECT current_setting('server_version_num')::int AS v"
# A membership's INHERIT and SET options (PostgreSQL 16+); older servers take neither.
GRANT_OPTIONS_SINCE = 160000


def all_databases_confirm(databases):
    """The confirmation recover mode wants: the chosen databases, or 'all-databases' for all of them."""
    return R.confirm_text(", ".join(databases) if databases else ALL_DATABASES_LABEL)


def database_list_entries(listing):
    """The `pg_restore --create --list` lines of the DATABASE entries (creation, properties, ACL, comment)."""
    keep = []
    for line in listing.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0].endswith(";") and parts[3].startswith(_DATABASE_ENTRY):
            keep.append(line)
    return keep


def drill_role(role):
    """A drill's copy of a role: no password and NOLOGIN, so production credentials never work on a restore host."""
    flags = ["NOLOGIN" if flag == "LOGIN" else flag for flag in role["flags"]]
    if "NOLOGIN" not in flags:
        flags.append("NOLOGIN")
    return dict(role, flags=flags, password=None)


def _shown_values(parts, values):
    """The values of a setting as executed_queries shows them: a custom one (app.jwt_secret) redacted."""
    custom = len(parts) > 1 or any("." in part for part in parts)
    return ["<redacted>"] * len(values) if custom else values


class ClusterRestoreJob:
    """pg_backup_restore of a backup labelled all-databases (modes drill and recover)."""

    def __init__(self, params, warnings, clock=time.time):
        self.params = params
        self.warnings = warnings
        self.clock = clock
        self.mode = params["mode"]
        # Set once a recover has dropped or created a database or a role: a failure after it is not "nothing".
        self.target_touched = False
        if self.mode not in ("drill", "recover"):
            raise R.RestoreError(
                "mode=%s restores within one database; an all-databases backup restores with mode drill or "
                "recover (restrict it with databases)" % self.mode,
                option="mode",
            )
        if params.get("target_database"):
            raise R.RestoreError(
                "target_database does not apply to an all-databases backup: recover restores each database "
                "under its own name, drill under drill_<name>_<hex>; omit target_database",
                option="target_database",
            )
        for option in ("databases", "roles", "extensions"):
            R.check_names(params.get(option) or [], option)
        self.selected = list(params["databases"])
        if params.get("jobs", 1) < 1:
            raise R.RestoreError("jobs must be 1 or more (it is %s)" % params.get("jobs"), option="jobs")
        R.check_work_dir(params.get("work_dir"))
        for index, item in enumerate(params.get("assertions") or []):
            if not item.get("database"):
                raise R.RestoreError(
                    "assertions[%d] '%s' has no database; with an all-databases backup each assertion names "
                    "the database it runs in" % (index, item["name"]),
                    option="assertions",
                )
        self.destinations = build_destinations(params["destinations"], warnings)
        self.key = load_key(params.get("encryption_key"), params.get("encryption_key_file"), warnings)
        self.pg_restore = find_tool("pg_restore", params.get("pg_bin_dir"))
        self.server = R.Server(params)
        self.entry = None
        self.report = None

    # reads and interlocks (also in check mode) ------------------------------------------------------
    def plan(self):
        """Choose the backup, read its globals, check every interlock, predict what is created; changes nothing."""
        self.entry, self.skipped = R.choose_backup(
            self.destinations, ALL_DATABASES_LABEL, self.params.get("backup_id"), all_databases=True
        )
        self.databases = self._manifest_databases()
        for index, item in enumerate(self.params.get("assertions") or []):
            if item["database"] not in self.databases:
                raise R.RestoreError(
                    "assertions[%d] '%s' runs in database '%s', which this restore does not restore (%s)"
                    % (index, item["name"], item["database"], ", ".join(self.databases)),
                    option="assertions",
                )
        self.targets = {}
        for name in self.databases:
            self.targets[name] = R.scratch_name(name, self.entry.backup_id, "drill") if self.mode == "drill" else name
        self.state = {t: self._target_state(t) for t in self.targets.values()}
        getattr(self, "_interlocks_" + self.mode)()
        self.globals = self._read_globals() if self.params.get("restore_globals", True) else None
        self.prediction = self._predict_globals()
        return {
            "mode": self.mode,
            "id": self.entry.backup_id,
            "source": self.entry.destination.name,
            "location": self.entry.destination.location(ALL_DATABASES_LABEL, self.entry.backup_id),
            "backup_ended_at": iso(self.entry.ended),
            "target_database": ", ".join(self.targets[n] for n in self.databases),
            "target_exists": any(s["exists"] for s in self.state.values()),
            "databases": [
                {
                    "database": name,
                    "target_database": self.targets[name],
                    "exists": self.state[self.targets[name]]["exists"],
                    "relations": self.state[self.targets[name]]["relations"],
                    "action": "replace" if self.state[self.targets[name]]["exists"] else "create",
                }
                for name in self.databases
            ],
            "globals": self.prediction,
            "skipped": self.skipped,
        }

    def diff(self, plan):
        """Before/after of the databases and roles this restore touches."""
        before = {"databases": {d["target_database"]: d["exists"] for d in plan["databases"]}}
        after = {"databases": {d["target_database"]: True for d in plan["databases"]}}
        if self.mode == "drill" and not self.params.get("keep_scratch"):
            after["databases"] = dict(before["databases"])
        before["roles_created"], after["roles_created"] = [], list(self.prediction["roles_created"])
        return {"before": before, "after": after}

    def _manifest_databases(self):
        manifest = self.entry.manifest
        names = manifest.get("databases")
        if not isinstance(names, list) or not names:
            raise R.RestoreError(
                "backup %s lists no databases in its manifest; it cannot be restored" % self.entry.backup_id
            )
        names = [G.safe_name(n, "manifest database", strict=True) for n in names]
        R.check_artefacts(self.entry)
        missing = [n for n in self.selected if n not in names]
        if missing:
            raise R.RestoreError(
                "databases %s are not in backup %s, which holds %s; fix databases"
                % (", ".join(missing), self.entry.backup_id, ", ".join(names)),
                option="databases",
            )
        chosen = [n for n in names if not self.selected or n in self.selected]
        for name in chosen:
            if not [a for a in manifest.get("artefacts", []) if a.get("kind") == "dump" and a.get("database") == name]:
                raise R.RestoreError("backup %s has no dump of database '%s'" % (self.entry.backup_id, name))
        return chosen

    def _target_state(self, target):
        if not self.server.database_exists(target):
            return {"exists": False, "relations": 0}
        return {"exists": True, "relations": self.server.user_relations(target)}

    def _interlocks_drill(self):
        taken = [t for t, s in self.state.items() if s["exists"]]
        if taken:
            raise R.RestoreError("scratch databases %s exist; run the drill again" % ", ".join(taken))

    def _interlocks_recover(self):
        wanted = all_databases_confirm(self.selected)
        if self.params.get("confirm") != wanted:
            raise R.RestoreError(
                "mode=recover of an all-databases backup overwrites databases %s; set confirm to exactly %r to go on"
                % (", ".join(self.databases), wanted),
                option="confirm",
            )
        full = sorted(t for t, s in self.state.items() if s["relations"])
        if full and not self.params.get("allow_nonempty"):
            raise R.RestoreError(
                "target databases %s are not empty; they would be dropped and replaced: set allow_nonempty: true "
                "to do so (a safety backup of each is taken first), or restrict databases" % ", ".join(full),
                option="allow_nonempty",
            )
        if full and not self.params.get("safety_backup_dir"):
            raise R.RestoreError(
                "target databases %s hold data; set safety_backup_dir to a local directory for the safety backups "
                "taken before they are overwritten" % ", ".join(full),
                option="safety_backup_dir",
            )

    def _entry_view(self, artefacts):
        """The backup entry seen with only ``artefacts``, as dumps, for _restore.fetch and decrypt."""
        manifest = dict(self.entry.manifest, artefacts=[dict(a, kind="dump") for a in artefacts])
        return SimpleNamespace(
            backup_id=self.entry.backup_id,
            destination=self.entry.destination,
            label=self.entry.label,
            manifest=manifest,
        )

    def _fetch_plain(self, artefacts, work, phases=None):
        fetched, plain = os.path.join(work, "fetched"), os.path.join(work, "plain")
        os.makedirs(fetched, exist_ok=True)
        os.makedirs(plain, exist_ok=True)
        view = self._entry_view(artefacts)
        with phases.timed("fetch") if phases else _Nothing():
            checks = R.fetch(view, fetched)
        with phases.timed("decrypt") if phases else _Nothing():
            path = R.decrypt(view, fetched, plain, self.key)
        return path, checks

    def _read_globals(self):
        artefacts = [a for a in self.entry.manifest.get("artefacts", []) if a.get("kind") == "globals"]
        if not artefacts:
            raise R.RestoreError(
                "backup %s has no globals artefact; set restore_globals: false to restore the databases only"
                % self.entry.backup_id,
                option="restore_globals",
            )
        work = R.make_work_dir(self.params.get("work_dir"))
        try:
            path, self.globals_checks = self._fetch_plain(artefacts[:1], work)
            with open(path, encoding="utf-8") as handle:
                return G.parse_globals(handle.read())
        except UnicodeDecodeError as err:
            raise R.RestoreError(
                "the globals artefact of this backup is not UTF-8 (%s); take the backup again with "
                "PGCLIENTENCODING=UTF8 so role names and comments read back as written" % err.reason
            ) from err
        except OSError as err:
            raise R.local_error(err, work) from err
        finally:
            R.remove_tree(work)

    def _predict_globals(self):
        prediction = {"roles_created": [], "roles_existing": [], "tablespaces_created": [], "tablespaces_existing": []}
        prediction.update(memberships_granted=[], memberships_skipped=[], passwords_restored=[], skipped_statements=[])
        self.grants = []  # (membership, whether INHERIT/SET go with it) for _apply_globals
        if self.globals is None:
            return prediction
        existing = {r["rolname"] for r in self.server.run("postgres", "SELECT rolname FROM pg_roles", rows=True)}
        self.protected = set(self.server.run("postgres", _PROTECTED, rows=True)[0].values())
        for name, role in sorted(self.globals["roles"].items()):
            if name in existing or name in self.protected or name.startswith("pg_"):
                prediction["roles_existing"].append(name)
                continue
            prediction["roles_created"].append(name)
            if role.get("password") is not None and self.mode == "recover":
                prediction["passwords_restored"].append(name)
        created = set(prediction["roles_created"])
        version = None
        for item in self.globals["memberships"]:
            shown = "%s TO %s" % (item["role"], item["member"])
            known = item["role"] in existing or item["role"] in created
            if item["member"] not in created or not known:
                prediction["memberships_skipped"].append(shown)
                continue
            if version is None and (item.get("inherit") is not None or item.get("set") is not None):
                version = self.server.run("postgres", _VERSION, rows=True)[0]["v"]
            lost = self._grant_options_lost(item, version)
            if lost:
                prediction["memberships_skipped"].append("%s (%s)" % (shown, lost))
                continue
            prediction["memberships_granted"].append(shown)
            # Granted as parsed, matched by the item itself: role names may hold " TO ".
            self.grants.append((item, version is None or version >= GRANT_OPTIONS_SINCE))
        spaces = {r["spcname"] for r in self.server.run("postgres", "SELECT spcname FROM pg_tablespace", rows=True)}
        for name in sorted(self.globals["tablespaces"]):
            key = "tablespaces_existing" if name in spaces or self.mode == "drill" else "tablespaces_created"
            prediction[key].append(name)
        prediction["skipped_statements"] = list(self.globals["skipped"])
        return prediction

    def _grant_options_lost(self, item, version):
        """Why a membership is not granted on a server older than 16 (its INHERIT/SET FALSE), else None.

        PostgreSQL 15 cannot limit one membership: granted there, it would pass on more than the backup's
        did, so it is left out and reported. A NOINHERIT member inherits from none of its memberships on 15, so
        its INHERIT FALSE is kept by a plain grant (16 writes INHERIT FALSE for every grant to such a member); an
        INHERIT TRUE of a NOINHERIT member is granted, with a warning.
        """
        if version is None or version >= GRANT_OPTIONS_SINCE:
            return None
        shown = "%s TO %s" % (item["role"], item["member"])
        noinherit = "NOINHERIT" in self.globals["roles"].get(item["member"], {}).get("flags", [])
        lost = [key for key in ("inherit", "set") if item.get(key) is False and not (key == "inherit" and noinherit)]
        limits = ", ".join("%s FALSE" % key.upper() for key in lost)
        if limits:
            self.warnings.append(
                "membership %s has WITH %s in the backup (taken from PostgreSQL 16 or later), which this PostgreSQL "
                "%d server cannot keep: it was not granted; grant it by hand if the member needs it, or restore "
                "onto PostgreSQL 16 or later" % (shown, limits, version // 10000)
            )
            return "WITH %s: not kept by PostgreSQL %d, not granted" % (limits, version // 10000)
        if item.get("inherit") and noinherit:
            self.warnings.append(
                "membership %s has WITH INHERIT TRUE in the backup, but its member is NOINHERIT, so on this "
                "PostgreSQL %d server it inherits nothing from it (SET ROLE still works)" % (shown, version // 10000)
            )
        return None

    # the restore -----------------------------------------------------------------------------------
    def apply(self):
        """Safety backups, globals, then fetch, decrypt, restore and verify each database; report; clean up."""
        started = self.clock()
        phases = R.Phases()
        checks, failure, result, restored, cleanup = list(getattr(self, "globals_checks", [])), None, {}, [], {}
        self.created_roles, verified_at = [], None
        work = R.make_work_dir(self.params.get("work_dir"))
        try:
            if self.mode == "recover":
                with phases.timed("safety_backup"):
                    result["safety_backups"] = self._safety_backups()
            with phases.timed("restore"):
                self._apply_globals()
            for name in self.databases:
                target = self.targets[name]
                db_work = os.path.join(work, "db-%d" % len(restored))
                artefacts = [
                    a for a in self.entry.manifest["artefacts"] if a.get("kind") == "dump" and a.get("database") == name
                ]
                plain_path, fetched = self._fetch_plain(artefacts, db_work, phases)
                checks += [dict(c, subject="%s:%s" % (name, c["subject"])) for c in fetched]
                toc = R.toc(self.pg_restore, plain_path)
                with phases.timed("restore"):
                    header = self._restore_database(name, target, plain_path)
                restored.append(dict(header, database=name, target_database=target))
                with phases.timed("verify"):
                    checks += self._verify(name, target, toc)
                R.remove_tree(db_work)
            with phases.timed("verify"):
                checks += self._verify_roles()
            verified_at = self.clock()
        except LocksmithError as err:
            failure = err
            checks += [c for c in err.details.get("checks", []) if c not in checks]
        except OSError as err:  # a local file step (a full work_dir): reported like any failure, never a traceback
            failure = R.local_error(err, work)
        finally:
            R.remove_tree(work)
            if self.mode == "drill":
                cleanup = self._drill_cleanup()
        report = self._report(started, verified_at, phases, checks, failure, cleanup, restored)
        result.update(report=report)
        # Kept for main(), which writes a drill's metrics once it knows the outcome, also when what follows fails.
        self.report = report
        if self.params.get("report_dir"):
            result["report_files"] = C.write_report(self.params["report_dir"], report)
        return result

    def _exec(self, dbname, statement, shown=None, what=None):
        """Run one statement; ``shown`` (secrets redacted) goes into executed_queries; errors name it."""
        conn = _postgres.connect(self.params, dbname, autocommit=True)
        text = ""
        try:
            text = _postgres.rendered(conn, shown if shown is not None else statement)
            self.server.queries.append(text)
            with conn.cursor() as cur:
                cur.execute(statement)
        except LocksmithError:
            raise
        except Exception as err:  # psycopg2 errors: the server refused this statement
            # R.refusal, not str(err): that holds a LINE excerpt of ``statement`` with the secrets ``shown`` hides.
            raise R.RestoreError(
                "%s failed: %s (statement: %s)" % (what or "restore", R.refusal(err), text), statement=text
            ) from err
        finally:
            conn.close()

    def _apply_globals(self):
        """Create the missing roles (attributes, password if dumped, settings, comment), memberships, tablespaces."""
        if self.globals is None:
            return
        plan = self.prediction
        for name in plan["roles_created"]:
            role = self.globals["roles"][name]
            if self.mode == "drill":
                role = drill_role(role)
            statement, shown = G.create_role_sql(name, role)
            self._exec("postgres", statement, shown, "creating role '%s'" % name)
            self.created_roles.append(name)
            self.target_touched = self.target_touched or self.mode == "recover"
            for parts, values in role["settings"]:
                self._exec(
                    "postgres",
                    G.role_setting_sql(name, parts, values),
                    G.role_setting_sql(name, parts, _shown_values(parts, values)),
                    "setting of role '%s'" % name,
                )
            if role.get("comment") is not None:
                self._exec("postgres", G.comment_role_sql(name, role["comment"]), what="comment on role '%s'" % name)
        for item, grant_options in self.grants:
            self._exec(
                "postgres",
                G.membership_sql(item, grant_options),
                what="membership '%s' TO '%s'" % (item["role"], item["member"]),
            )
        for name in plan["tablespaces_created"]:
            space = self.globals["tablespaces"][name]
            self._exec(
                "postgres",
                G.create_tablespace_sql(name, space),
                what="creating tablespace '%s' at '%s' (create that directory, owned by postgres and empty)"
                % (name, space["location"]),
            )

    def _database_header(self, plain_path):
        """Owner, encoding, locale, settings and grants from the archive's DATABASE entries."""
        listed = subprocess.run(  # noqa: S603 # nosec B603
            [self.pg_restore, "--create", "--list", plain_path],
            capture_output=True,
            encoding="utf-8",
            errors="surrogateescape",  # the archive's encoding, byte for byte into the list file below
            check=False,
        )
        entries = database_list_entries(listed.stdout) if listed.returncode == 0 else []
        if not entries:
            return G.parse_database("")
        list_file = plain_path.rstrip("/") + ".database-list"
        with open(list_file, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write("\n".join(entries) + "\n")
        proc = subprocess.run(  # noqa: S603 # nosec B603
            [self.pg_restore, "--create", "--schema-only", "--use-list=%s" % list_file, "--file=-", plain_path],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
        if proc.returncode != 0:
            raise R.RestoreError(
                "pg_restore --create --schema-only '%s' failed: %s" % (plain_path, proc.stderr.strip())
            )
        return G.parse_database(proc.stdout)

    def _restore_database(self, name, target, plain_path):
        """Drop (if there), create with the archive's owner, encoding and locale, apply its settings, pg_restore."""
        header = self._database_header(plain_path)
        if header["name"] is not None and header["name"] != name:
            raise R.RestoreError(
                "the archive of database '%s' holds database '%s'; the manifest was altered: restore another backup"
                % (name, header["name"]),
                option="backup_id",
            )
        owner = None if self.params.get("no_owner") else header["owner"]
        roles = {r["rolname"] for r in self.server.run("postgres", "SELECT rolname FROM pg_roles", rows=True)}
        if owner and owner not in roles:
            self.warnings.append(
                "database '%s': owner role '%s' does not exist; created owned by login_user" % (target, owner)
            )
            owner = None
        # The maintenance database itself is replaced from template1.
        maintenance = "template1" if target == "postgres" else "postgres"
        if self.state[target]["exists"]:
            sql = R._sql()
            self._exec(maintenance, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(_postgres.identifier(target)))
            self.target_touched = self.mode == "recover"
        self._exec(maintenance, G.create_database_sql(target, owner, header["options"]), what="creating '%s'" % target)
        self.target_touched = self.target_touched or self.mode == "recover"
        for parts, values in header["settings"]:
            self._exec(
                "postgres",
                G.database_setting_sql(target, parts, values),
                G.database_setting_sql(target, parts, _shown_values(parts, values)),
                "setting of '%s'" % target,
            )
        for role, parts, values in header["role_settings"]:
            if role in roles:
                self._exec(
                    "postgres",
                    G.role_setting_sql(role, parts, values, target),
                    G.role_setting_sql(role, parts, _shown_values(parts, values), target),
                    "role setting",
                )
        if not self.params.get("no_owner"):
            for grant in header["grants"]:
                if grant["grantee"] == "PUBLIC" or grant["grantee"] in roles:
                    self._exec("postgres", G.database_grant_sql(target, grant), what="grant on '%s'" % target)
        argv = R.pg_restore_argv(self.pg_restore, target, plain_path, self.params)
        if self.globals and self.globals["tablespaces"] and self.mode == "drill":
            argv.insert(-1, "--no-tablespaces")  # a drill creates no tablespace: the source's directories are in use
        R.run_pg_restore(argv, self.params, target, "pg_restore of database '%s' into '%s'" % (name, target))
        options = header["options"]
        return {
            "owner": owner,
            "encoding": options.get("ENCODING"),
            "locale": options.get("LOCALE") or options.get("LC_COLLATE"),
            "skipped_statements": header["skipped"],
        }

    def _verify(self, name, target, toc):
        """Row counts against the manifest, this database's assertions, the archive's extensions and owners."""
        checks = []
        if self.params.get("check_row_counts", True):
            table_map = {t: t for t in toc["tables"]}
            counts = C.check_row_counts(
                self.server, target, self.entry.manifest, name, table_map, self.params["row_count_tolerance"]
            )
            checks += counts
        assertions = [a for a in self.params.get("assertions") or [] if a.get("database") == name]
        checks += C.run_assertions(self.params, target, assertions, self.server.queries)
        roles = [] if self.params.get("no_owner") else toc["owners"]
        checks += C.check_present(self.server, target, toc["extensions"], roles)
        return [dict(c, subject="%s:%s" % (name, c["subject"])) for c in checks]

    def _verify_roles(self):
        wanted = list(self.params.get("roles") or [])
        if self.globals is not None:
            wanted += [r for r in sorted(self.globals["roles"]) if r not in wanted and not r.startswith("pg_")]
        found = {r["rolname"] for r in self.server.run("postgres", "SELECT rolname FROM pg_roles", rows=True)}
        return [C._check("role", name, "present", name in found, name in found) for name in wanted]

    def _safety_backups(self):
        """pg_backup of each non-empty target into safety_backup_dir before it is dropped."""
        from ansible_collections.locksmith.ops.plugins.module_utils._restore_flows import RestoreJob

        taken = []
        for target in sorted(t for t, s in self.state.items() if s["relations"]):
            shim = SimpleNamespace(params=self.params, target=target, warnings=self.warnings, clock=self.clock)
            taken.append(dict(RestoreJob._safety_backup(shim), database=target))
        return taken

    def _drill_cleanup(self):
        """Drop the scratch databases (unless keep_scratch) and then the roles the drill created."""
        cleanup = {}
        if self.params.get("keep_scratch"):
            cleanup["kept"] = ", ".join(self.targets[n] for n in self.databases)
            return cleanup
        dropped, left = [], []
        for target in self.targets.values():
            try:
                self.server.drop_database(target)
                dropped.append(target)
            except Exception as err:  # noqa: BLE001 - cleanup goes on; the warning names what is left
                left.append(target)
                self.warnings.append("scratch database '%s' was not dropped: %s" % (target, err))
        sql = R._sql()
        for name in reversed(self.created_roles):
            try:
                self._exec("postgres", sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            except LocksmithError as err:
                left.append(name)
                self.warnings.append("role '%s' created by the drill was not dropped: %s" % (name, err))
        cleanup["dropped"] = ", ".join(dropped)
        if left:
            cleanup["left"] = ", ".join(left)
        if self.created_roles:
            cleanup["roles_dropped"] = ", ".join(self.created_roles)
        return cleanup

    def _report(self, started, verified_at, phases, checks, failure, cleanup, restored):
        ended = verified_at if verified_at is not None else self.clock()
        rto = round(ended - started, 3)
        rpo = R.entry_age(self.entry, started)
        failed = [c for c in checks if not c["ok"]]
        errors = [str(failure)] if failure else []
        errors += [
            "%s %s: expected %s, got %s" % (c["check"], c["subject"], c["expected"], c["actual"]) for c in failed
        ]
        verified = failure is None and not failed
        fate = "kept for inspection" if cleanup.get("kept") else ("dropped" if self.mode == "drill" else "restored")
        if failure is not None and self.mode == "recover":
            done = ", ".join(r["target_database"] for r in restored) or "none"
            fate = (
                "incomplete: the recover stopped after it had created roles or replaced databases (restored: %s); "
                "recover again, or from the safety backups" % done
                if self.target_touched
                else "unchanged: the recover stopped before it dropped or created anything"
            )
        globals_done = dict(self.prediction, roles_created=list(self.created_roles))
        return {
            "mode": self.mode,
            "database": ALL_DATABASES_LABEL,
            "backup_id": self.entry.backup_id,
            "source": self.entry.destination.name,
            "backup_ended_at": iso(self.entry.ended),
            "target_database": ", ".join(self.targets[n] for n in self.databases),
            "target_fate": fate,
            "databases": restored,
            "globals": globals_done,
            **R.measured_report(
                started, verified, phases, rto, rpo, self.params, checks, errors, self.skipped, cleanup
            ),
        }


class _Nothing:
    """A context manager that times nothing (the check-mode globals read is not part of the RTO)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
