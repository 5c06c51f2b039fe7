#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup_restore
short_description: Restore a pg_backup backup, verify it against its manifest, and measure RTO and RPO
version_added: 0.1.0
description:
  - Restores a backup written by M(locksmith.ops.pg_backup) from any of its destinations (local, S3) and
    proves it. O(mode=drill) restores into a new scratch database and drops it afterwards; O(mode=recover)
    replaces a production database behind interlocks; O(mode=tables) restores chosen tables only.
  - The backup is the O(backup_id) given, or the newest complete one whose artefacts pass the metadata
    check (size, S3 stored checksum); newer incomplete or damaged backups are skipped and reported.
  - Phases run in sequence and are timed. V(fetch) copies the artefacts into O(work_dir) and checks each
    one's SHA-256 and size against the manifest, so a corrupt backup fails before any database is
    touched; V(decrypt) decrypts and decompresses; V(restore) runs C(pg_restore --exit-on-error);
    V(verify) compares each table's C(count(*)) with the manifest (exact counts when the manifest has
    C(row_counts), else the C(reltuples) estimates within O(row_count_tolerance)), runs O(assertions),
    and checks that the extensions and owner roles in the archive (plus O(extensions), O(roles)) exist.
  - RTO is the wall time from the start to the verified restore; RPO is the age of the restored backup
    at the start. Both are compared with O(rto_target_seconds) and O(rpo_target_seconds).
  - C(changed) says whether the server was left different. A drill that drops its scratch database (and the
    roles it created) leaves it as it was, so it reports C(changed=false), also in check mode, and a
    converged site with a scheduled drill re-runs with 0 changes; its report and metrics files are its
    output. A drill that keeps its scratch database, or could not drop it, reports C(changed=true), as do
    the other modes.
  - Any failed check fails the module, after the report (O(report_dir)) and, for drills, the
    C(locksmith_drill_*) metrics (O(metrics_dir)) are written.
  - A drill publishes its outcome whatever stops it. One that fails before it restores anything (no backup at any
    destination, a destination or the server unreachable, a key missing, an input refused, an unexpected error)
    writes a report and C(locksmith_drill_last_status) 0 with its run time, the RTO target and
    C(locksmith_drill_max_age_seconds), and no RTO or phases (the RPO only once a backup was chosen). The RTO is
    published for a verified restore only. Other modes write no drill metrics, and check mode writes neither file.
  - Never touched, by any mode, the backups and other databases; a drill never writes to an existing
    database; O(mode=recover) touches only O(target_database), after a safety backup.
  - O(database=all-databases) restores a backup taken with O(locksmith.ops.pg_backup#module:all_databases) in
    O(mode=drill) or O(mode=recover). Globals come first, where missing roles are created with their attributes,
    settings, comment and (only when the dump holds one) password, memberships whose member was created
    here are granted (with ADMIN OPTION, and the INHERIT and SET options of a PostgreSQL 16+ dump when the
    server is 16 or later; a 15 server cannot limit one membership, so one dumped with SET FALSE, or with
    INHERIT FALSE to a member that is not NOINHERIT, is not granted there, but listed in C(memberships_skipped)
    with a warning), missing tablespaces
    are created (recover only). Existing roles, the bootstrap superuser and the login role are never
    altered. Each database (or those in O(databases)) is then created from template0 with the owner,
    encoding, locale, settings and grants of its archive's DATABASE entry, restored and verified against
    the manifest as a single database is. The backup's SQL for globals is parsed and rebuilt with quoted
    identifiers; other statement shapes are skipped and reported. A drill creates missing roles NOLOGIN and
    without password, and drops them and its scratch databases afterwards.
options:
  mode:
    description:
      - V(drill) restores into a new scratch database (O(target_database), default C(drill_<database>_<hex>)),
        verifies, reports, and drops it unless O(keep_scratch).
      - V(recover) drops and re-creates O(target_database) (default O(database)) from the backup. It needs
        O(confirm), refuses a non-empty target unless O(allow_nonempty), and takes a safety backup of an
        existing target into O(safety_backup_dir) first.
      - V(tables) restores O(tables) into O(target_database) (default O(database)), in their own schema or
        in O(target_schema). It restores table definitions and data, not indexes or constraints.
      - V(pitr) runs C(pgbackrest restore) of O(pgbackrest_stanza) to O(pitr_target_type) into the new, empty
        O(pitr_data_dir), starts it on O(pitr_port) with archiving off, waits for promotion, then runs
        O(assertions) in O(database) there. O(destinations) are not read (give V([])). When the restore, the
        start or the recovery fails, the server is stopped, the files written into O(pitr_data_dir) are
        removed and the error quotes the end of the server's log; a restored server whose checks fail is left
        running for inspection.
      - For V(pitr) the backup restored is the newest that ended before O(pitr_target) (passed to pgBackRest as
        C(--set), and named in the report); a target older than every backup is refused before anything is
        written. The RPO is the age of the stanza's newest backup, whatever the target. The server must accept
        connections within an hour (once it has replayed the backup's own WAL); recovery is then waited for as
        long as its WAL replay advances, and given up after 120 seconds without progress.
      - For V(pitr) the checks connect to the restored server through its own socket in O(pitr_data_dir) when
        O(login_host) is empty or a socket directory (O(login_unix_socket) is then not used), and the server
        listens on no TCP address; when O(login_host) names a host, the server listens there only. A backup of
        a Debian-layout cluster holds no C(postgresql.conf), C(pg_hba.conf) or C(pg_ident.conf) (Debian keeps
        them in C(/etc/postgresql)), so minimal ones are written (peer login as C(postgres) for root and postgres on
        the socket, C(scram-sha-256) from this host; C(max_connections) and the other limits a recovering server
        needs at least as high as the source's, read from the restored C(pg_control)), named in the report's
        C(config_written) and a warning.
      - For V(pitr), a restored server that refuses the checks' login (the backup's own C(pg_hba.conf) refuses root
        as C(postgres) on the socket, say) is left running for inspection, and the error says how to connect instead.
    type: str
    default: drill
    choices: [drill, recover, tables, pitr]
    version_added: 0.1.0
  database:
    description: The database whose backups are restored (the backup label). A plain identifier.
    type: str
    required: true
    version_added: 0.1.0
  backup_id:
    description:
      - Restore this backup. The newest complete, intact one when omitted.
      - A backup taken with schema or table filters (a one-table export) holds part of the database; it is chosen
        only when named here, or by O(mode=tables) when its filters took every table in O(tables) (by pg_dump's
        rules; one that did not is refused even when named). Passed over, it is listed in the report's C(skipped).
    type: str
    version_added: 0.1.0
  target_database:
    description:
      - Where to restore. For O(mode=drill) it must not exist yet.
      - Not used with O(database=all-databases), where each database keeps its name (recover) or gets a scratch
        name C(drill_<name>_<hex>) (drill), nor with O(mode=pitr); given there, it fails the task.
    type: str
    version_added: 0.1.0
  confirm:
    description:
      - For O(mode=recover), exactly C(I understand this overwrites <target_database>).
      - For O(database=all-databases), C(I understand this overwrites all-databases), or with O(databases) the
        names as given joined by C(, ) (C(I understand this overwrites app, billing)).
    type: str
    default: ""
    version_added: 0.1.0
  allow_nonempty:
    description:
      - O(mode=recover) replaces a target database that holds tables; O(mode=tables) replaces tables that exist.
      - O(mode=tables) drops the tables it replaces in one statement without C(CASCADE); if a view, a foreign
        key or a rule of another object uses one of them, the server refuses, the message names those objects,
        and nothing is dropped. Restore the dependent tables too, or drop those objects first.
    type: bool
    default: false
    version_added: 0.1.0
  safety_backup_dir:
    description:
      - Local directory for the safety backup M(locksmith.ops.pg_backup) takes of an existing target before
        O(mode=recover) drops it. Required then; created with mode 0700 if missing.
    type: path
    version_added: 0.1.0
  tables:
    description:
      - For O(mode=tables), C(schema.table) or C(table) (schema C(public)) names.
      - A name that needs quoting is written in double quotes as in SQL, C(shop."Order Items").
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  target_schema:
    description:
      - For O(mode=tables), the schema to restore the tables into; their own schema when omitted. A name that
        needs quoting is written in double quotes, as in O(tables).
    type: str
    version_added: 0.1.0
  assertions:
    description:
      - SQL checks run in a read-only transaction on the restored database; the first column of the first row
        is compared with C(expected) (as numbers when both are numeric, else as text).
      - Each O(assertions[].sql) must be one query starting with C(SELECT), C(WITH), C(VALUES) or C(TABLE); a second
        statement (C(COMMIT; ...) would end the read-only transaction) or any other command (C(COPY ... TO PROGRAM)
        is allowed in a read-only transaction) fails the task before anything is restored. Functions the query calls
        run with the connecting role's rights.
    type: list
    elements: dict
    default: []
    version_added: 0.1.0
    suboptions:
      name:
        description: Name shown in the report.
        type: str
        required: true
        version_added: 0.1.0
      sql:
        description: One query returning a value (see O(assertions)).
        type: str
        required: true
        version_added: 0.1.0
      expected:
        description: The expected value.
        type: raw
        required: true
        version_added: 0.1.0
      compare:
        description: How the actual value compares with C(expected) (C(ge) is actual >= expected).
        type: str
        default: eq
        choices: [eq, ge, gt, le, lt, ne]
        version_added: 0.1.0
      database:
        description: With O(database=all-databases), the backed-up database the assertion runs in (required there).
        type: str
        version_added: 0.1.0
  databases:
    description:
      - With O(database=all-databases), restore only these databases of the backup (all when empty).
      - An empty name, or one longer than 63 bytes or holding quotes, C(;), a backslash or a control character,
        fails the task before anything is restored.
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  restore_globals:
    description:
      - With O(database=all-databases), restore the roles, memberships and tablespaces of the backup first.
    type: bool
    default: true
    version_added: 0.1.0
  extensions:
    description:
      - Extensions that must exist in the restored database, beyond those named in the archive.
      - With O(database=all-databases) each database is checked for its archive's extensions only.
      - An empty name, one longer than 63 bytes or holding a control character, C(/) or C(--) fails the task
        before anything is restored.
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  roles:
    description:
      - Roles that must exist on the server, beyond the archive's object owners (and the backup's roles).
      - Compared with C(pg_roles) as values. An empty name, or one longer than 63 bytes or holding a control
        character, fails the task before anything is restored.
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  check_row_counts:
    description: Compare each restored table's row count with the manifest.
    type: bool
    default: true
    version_added: 0.1.0
  row_count_tolerance:
    description:
      - Allowed relative difference when the manifest holds only C(reltuples) estimates (at least 10 rows).
        Exact counts in the manifest must match exactly.
    type: float
    default: 0.1
    version_added: 0.1.0
  no_owner:
    description:
      - Restore without ownership and privileges (C(pg_restore --no-owner --no-acl)), for a host without the roles.
    type: bool
    default: false
    version_added: 0.1.0
  jobs:
    description: Parallel C(pg_restore) jobs (whole-database modes).
    type: int
    default: 1
    version_added: 0.1.0
  keep_scratch:
    description: Keep the drill's scratch database for inspection instead of dropping it.
    type: bool
    default: false
    version_added: 0.1.0
  encryption_key:
    description: Key of encrypted backups (32 bytes raw, 64 hex characters or base64).
    type: str
    version_added: 0.1.0
  encryption_key_file:
    description:
      - File holding the key; mutually exclusive with O(encryption_key).
      - As in M(locksmith.ops.pg_backup), a file others can read or write is refused (C(chmod 600) it); one its
        group can read is used, with a warning.
    type: path
    version_added: 0.1.0
  pg_bin_dir:
    description: Directory of C(pg_restore) and C(pg_dump); found on C(PATH) when omitted.
    type: path
    version_added: 0.1.0
  work_dir:
    description:
      - Existing absolute directory for the fetched and decrypted files (about twice the backup's size); checked
        in check mode too. Each run works in a new private (mode 0700) directory inside it, removed afterwards,
        also when the run fails (a full disk fails the task with a message naming O(work_dir)).
      - The system temporary directory when omitted.
    type: path
    version_added: 0.1.0
  report_dir:
    description: Write C(<database>-<mode>-<UTC time>.json) and C(.md) reports here.
    type: path
    version_added: 0.1.0
  metrics_dir:
    description:
      - node_exporter textfile directory for C(locksmith_drill_<database>.prom) (drills only).
      - It must exist; a missing one fails the task before anything else, with nothing published.
    type: path
    version_added: 0.1.0
  drill_max_age_seconds:
    description:
      - For O(mode=drill) with O(metrics_dir), published as C(locksmith_drill_max_age_seconds), the age past which
        the newest drill is overdue (alert C(DrillOverdue)); a positive number.
      - The default, 15 days, is twice a weekly drill schedule plus a day, so one missed drill is tolerated and a
        second is not. Set it from your schedule.
    type: int
    default: 1296000
    version_added: 0.1.0
  rto_target_seconds:
    description: RTO target; a slower verified restore misses it.
    type: int
    default: 1800
    version_added: 0.1.0
  rpo_target_seconds:
    description: RPO target; an older restored backup misses it.
    type: int
    default: 86400
    version_added: 0.1.0
  fail_on_missed_targets:
    description: Fail when a verified restore misses its RTO or RPO target.
    type: bool
    default: true
    version_added: 0.1.0
  pgbackrest_stanza:
    description:
      - For O(mode=pitr), the pgBackRest stanza to restore.
      - Letters, digits, C(_), C(-) and C(.) only (pgBackRest writes it unquoted into C(restore_command)).
    type: str
    version_added: 0.1.0
  pgbackrest_config:
    description:
      - For O(mode=pitr), the pgBackRest configuration file; pgBackRest's default when omitted.
      - An absolute path of the characters allowed in O(pitr_data_dir).
    type: path
    version_added: 0.1.0
  pitr_target_type:
    description: For O(mode=pitr), recover to the end of the backup (V(immediate)), a time or an LSN.
    type: str
    default: immediate
    choices: [immediate, time, lsn]
    version_added: 0.1.0
  pitr_target:
    description:
      - For O(mode=pitr), the timestamp or LSN to recover to; only with O(pitr_target_type=time) or V(lsn).
      - A time is C(YYYY-MM-DD HH:MM:SS[.mmm]) followed by its zone offset (C(+00), C(+02:00), C(-0530)); without
        one pgBackRest would assume the host's local time, so it is refused. An LSN is like C(0/3A000028).
    type: str
    version_added: 0.1.0
  pitr_data_dir:
    description:
      - For O(mode=pitr), the new data directory; it must not exist or be an empty directory (not a symlink), and
        must not lie inside another cluster's data directory.
      - An absolute path of letters, digits, C(_), C(.), C(@), C(+) and C(-) between single C(/), with no C(.) or
        C(..) component (pgBackRest writes it unquoted into C(restore_command) and C(pg_ctl) passes it to
        C(/bin/sh)), short enough for the server's socket C(<pitr_data_dir>/.s.PGSQL.<pitr_port>) (107 bytes).
    type: path
    version_added: 0.1.0
  pitr_port:
    description:
      - For O(mode=pitr), the port the restored server listens on; 1024 to 65535, and free on O(login_host)
        (C(127.0.0.1) when it is not a host; checked in check mode too).
    type: int
    default: 5433
    version_added: 0.1.0
extends_documentation_fragment:
  - locksmith.ops.attributes
  - locksmith.ops.postgres
  - locksmith.ops.storage
attributes:
  check_mode:
    support: full
    details: Chooses the backup and checks every interlock; restores nothing.
  diff_mode:
    support: full
  idempotent:
    support: none
    details: A restore is an action; every real run restores and reports again.
requirements:
  - psycopg2; boto3 for S3 destinations; zstandard and cryptography for compressed or encrypted backups
author:
  - locksmith.ops contributors (@locksmith-ops)
"""

EXAMPLES = r"""
- name: Weekly drill of the newest app backup in S3
  locksmith.ops.pg_backup_restore:
    database: app
    destinations:
      - type: s3
        bucket: acme-backups-eu-west-1
        region: eu-west-1
        prefix: postgresql
    encryption_key: "{{ lookup('community.hashi_vault.vault_kv2_get', 'backup/key').secret.key }}"
    assertions:
      - {name: workflows present, sql: "SELECT count(*) FROM workflows", expected: 1000, compare: ge}
    report_dir: /var/lib/locksmith/drills
    metrics_dir: /var/lib/prometheus/node-exporter

- name: Recover app from a named backup (check first with --check)
  locksmith.ops.pg_backup_restore:
    mode: recover
    database: app
    backup_id: 20261127T020000Z-1a2b
    confirm: I understand this overwrites app
    allow_nonempty: true
    safety_backup_dir: /var/backups/postgresql/pre-restore
    destinations:
      - type: local
        path: /var/backups/postgresql

- name: Rebuild a lost server from its all-databases backup (roles first, then every database)
  locksmith.ops.pg_backup_restore:
    mode: recover
    database: all-databases
    confirm: I understand this overwrites all-databases
    destinations:
      - type: local
        path: /var/backups/postgresql

- name: Bring back one table beside the live one
  locksmith.ops.pg_backup_restore:
    mode: tables
    database: app
    tables: [public.workflows]
    target_schema: restored
    destinations:
      - type: local
        path: /var/backups/postgresql
"""

RETURN = r"""
restore:
  description:
    - What was (or, in check mode, would be) restored from where into where.
    - With O(database=all-databases) also C(databases) (C(database), C(target_database), C(exists), C(relations),
      C(action) create or replace) and C(globals) (C(roles_created), C(roles_existing), C(memberships_granted),
      C(memberships_skipped), C(passwords_restored), C(tablespaces_created), C(tablespaces_existing),
      C(skipped_statements)), predicted in check mode.
  returned: always
  type: dict
  sample: {mode: drill, id: 20261127T020000Z-1a2b, source: "destinations[0] local:/var/backups/postgresql",
           location: /var/backups/postgresql/app/20261127T020000Z-1a2b, backup_ended_at: "2026-11-27T02:00:09Z",
           target_database: drill_app_3f2a9c, target_exists: false, skipped: []}
report:
  description:
    - The drill report, also written to O(report_dir); on failure returned with the error.
    - C(cleanup) names what a drill C(dropped), C(kept) (O(keep_scratch)) or C(left) because it could not drop it.
    - A drill that stopped before it restored anything has C(verified=false), C(rto_seconds=null), no C(phases),
      and C(backup_id) and C(rpo_seconds) null unless a backup was chosen; it is returned (and written) only when
      O(report_dir) or O(metrics_dir) is set.
    - With O(mode=pitr), C(target_fate) says whether the restored server is still running (promoted, left for
      inspection, or not stoppable after a failure) or was removed (in part when some files could not be), and
      C(config_written) lists the configuration files written into O(pitr_data_dir).
  returned: when not in check mode
  type: dict
  sample: {mode: drill, database: app, backup_id: 20261127T020000Z-1a2b, verified: true, passed: true,
           phases: {fetch: 1.2, decrypt: 0.8, restore: 6.1, verify: 0.3}, rto_seconds: 8.6, rto_target_seconds: 1800,
           rto_met: true, rpo_seconds: 3600, rpo_target_seconds: 86400, rpo_met: true,
           checks: [{check: row_count, subject: public.users, expected: 5000, actual: 5000, ok: true}],
           cleanup: {dropped: drill_app_3f2a9c}, errors: []}
report_files:
  description: Paths of the JSON and Markdown reports.
  returned: when report_dir is set and not in check mode
  type: dict
  sample:
    json: /var/lib/locksmith/drills/app-drill-20261127T030000Z.json
    markdown: /var/lib/locksmith/drills/app-drill-20261127T030000Z.md
metrics_file:
  description: The textfile written for a drill when O(metrics_dir) is set, also when the drill failed.
  returned: when metrics_dir is set, mode=drill, not in check mode
  type: str
  sample: /var/lib/prometheus/node-exporter/locksmith_drill_app.prom
safety_backup:
  description: The safety backup taken before O(mode=recover) replaced an existing database.
  returned: mode=recover when the target existed
  type: dict
  sample: {id: 20261127T030000Z-9c1d, location: /var/backups/postgresql/pre-restore/app/20261127T030000Z-9c1d}
safety_backups:
  description: With O(database=all-databases), the safety backups of the non-empty databases replaced.
  returned: mode=recover of all-databases, not in check mode
  type: list
  elements: dict
  sample:
    - {database: app, id: 20261127T030000Z-9c1d, location: /var/backups/pre-restore/app/20261127T030000Z-9c1d}
roles_created:
  description:
    - Roles of this collection that the backup's objects belong to and the server lacked, created (no login,
      no attributes) before the restore. Today that is C(locksmith_audit_writer), the owner of the trigger
      functions of a database audited by M(locksmith.ops.audit_trigger).
  returned: O(mode=drill) or O(mode=recover) of one database, without O(no_owner), not in check mode
  type: list
  elements: str
  sample: [locksmith_audit_writer]
executed_queries:
  description: SQL statements run on the server (existence checks, CREATE/DROP DATABASE, counts, assertions).
  returned: always
  type: list
  elements: str
  sample: ['CREATE DATABASE "drill_app_3f2a9c"', 'SELECT count(*) AS n FROM "public"."users"']
"""

import os  # noqa: E402 - ansible modules document before they import
import time  # noqa: E402
import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils import (  # noqa: E402
    _crypto_stream,
    _pitr,
    _postgres,
    _restore,
    _restore_checks,
    _restore_cluster,
    _restore_flows,
    _stream,
)
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._paths import refuse_nul_in_paths  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._storage import s3  # noqa: E402

MUTUALLY_EXCLUSIVE = [("encryption_key", "encryption_key_file")]


def missing_libraries(params):
    """Python libraries the given options need but that are not importable."""
    needed = [("psycopg2", _postgres.HAS_PSYCOPG2), ("zstandard", _stream.HAS_ZSTANDARD)]
    if any(d.get("type") == "s3" for d in params["destinations"] or []):
        needed.append(("boto3", s3.HAS_BOTO3))
    if params["encryption_key"] or params["encryption_key_file"]:
        needed.append(("cryptography", _crypto_stream.HAS_CRYPTOGRAPHY))
    return [name for name, present in needed if not present]


def leaves_server_unchanged(params):
    """A drill that drops its scratch databases (and the roles it made) leaves the server as it found it."""
    return params["mode"] == "drill" and not params["keep_scratch"]


def check_inputs(params):
    """What the spec cannot say, before any job is built; raises RestoreError naming the option."""
    for name in missing_libraries(params):
        raise _restore.RestoreError(missing_required_lib(name))
    if params["report_dir"] and not os.path.isdir(params["report_dir"]):
        raise _restore.RestoreError(
            "report_dir '%s' does not exist; create it or fix report_dir" % params["report_dir"], option="report_dir"
        )
    if params["mode"] == "drill" and params["drill_max_age_seconds"] <= 0:
        raise _restore.RestoreError(
            "drill_max_age_seconds is %d; set it to the age in seconds past which a drill is overdue (default %d, "
            "twice a weekly schedule plus a day)" % (params["drill_max_age_seconds"], _restore.DRILL_MAX_AGE_SECONDS),
            option="drill_max_age_seconds",
        )
    _restore_checks.check_assertions(params["assertions"])


def failed_drill_evidence(params, job, started, err, details, warnings):
    """A drill that failed publishes status 0 whatever stopped it; {result keys} of the files written.

    The job's own report when it got that far, else a report of what the run knows (no RTO: nothing was restored),
    returned with the error. Files that cannot be written become warnings, so the error the user sees is the drill's.
    """
    written = {}
    report = details.get("report") or getattr(job, "report", None)
    if report is None:
        report = _restore_flows.stopped_report(
            params,
            started,
            err,
            entry=getattr(job, "entry", None),
            skipped=details.get("skipped") or getattr(job, "skipped", None),
            fate=None if isinstance(err, LocksmithError) else "unknown: the drill stopped on an unexpected error",
        )
        if params["report_dir"] and os.path.isdir(params["report_dir"]):
            try:
                written["report_files"] = _restore_checks.write_report(params["report_dir"], report)
            except (LocksmithError, OSError) as report_err:
                warnings.append("the drill report was not written: %s" % report_err)
    written["report"] = report
    if params["metrics_dir"]:
        try:
            written["metrics_file"] = _restore_checks.write_metrics(
                params["metrics_dir"], report, time.time(), params["drill_max_age_seconds"], passed=False
            )
        except (LocksmithError, OSError) as metrics_err:
            warnings.append("the drill metrics were not written: %s" % metrics_err)
    return written


def main():
    module = AnsibleModule(
        argument_spec=_restore.restore_argument_spec(),
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    refuse_nul_in_paths(module)
    params = module.params
    # Without it a drill has nowhere to publish even its failure (DrillOverdue then fires as the last drill ages).
    if params["metrics_dir"] and not os.path.isdir(params["metrics_dir"]):
        module.fail_json(
            msg="metrics_dir '%s' does not exist; create it or fix metrics_dir" % params["metrics_dir"],
        )

    started = time.time()
    warnings = []
    job = None
    # A drill run publishes its outcome whatever stops it; check mode writes nothing, as pg_backup's does not.
    drill_run = params["mode"] == "drill" and not module.check_mode
    try:
        check_inputs(params)
        if params["mode"] == "pitr":
            job = _pitr.PitrJob(params, warnings)
        elif params["database"] == _restore_cluster.ALL_DATABASES_LABEL:
            job = _restore_cluster.ClusterRestoreJob(params, warnings)
        else:
            job = _restore_flows.RestoreJob(params, warnings)
        plan = job.plan()
        result = {"changed": not leaves_server_unchanged(params), "restore": plan}
        if module._diff and hasattr(job, "diff"):
            result["diff"] = job.diff(plan)
        elif module._diff:
            result["diff"] = {
                "before": {"target_database": plan["target_database"], "exists": plan["target_exists"]},
                "after": {
                    "target_database": plan["target_database"],
                    "restored_from": plan["id"],
                    "exists": params["mode"] != "drill" or bool(params["keep_scratch"]),
                },
            }
        if not module.check_mode:
            result.update(job.apply())
            if result.get("report", {}).get("cleanup", {}).get("left"):
                result["changed"] = True
            error = _restore_flows.outcome_error(result["report"], params["fail_on_missed_targets"])
            if error is not None:
                raise _restore.RestoreError(str(error), **{k: v for k, v in result.items() if k != "changed"})
            if drill_run and params["metrics_dir"]:
                result["metrics_file"] = _restore_checks.write_metrics(
                    params["metrics_dir"], result["report"], time.time(), params["drill_max_age_seconds"]
                )
    except Exception as err:  # noqa: BLE001 - any failure of a drill is published; a bug is reported, not a traceback
        details = dict(err.details) if isinstance(err, LocksmithError) else {}
        msg = str(err)
        if not isinstance(err, LocksmithError):
            details["exception"] = traceback.format_exc()
            msg = (
                "%s of '%s' stopped on an unexpected error (%s: %s); this is a bug in locksmith.ops.pg_backup_restore"
                ": report it with the exception shown by -vvv"
                % (params["mode"], params["database"], type(err).__name__, err)
            )
        if drill_run and (params["report_dir"] or params["metrics_dir"]):
            try:
                details.update(failed_drill_evidence(params, job, started, err, details, warnings))
            except Exception as evidence_err:  # noqa: BLE001 - the drill's own error is the one to report
                warnings.append("the failed drill's report and metrics were not written: %s" % evidence_err)
        for warning in warnings:
            module.warn(warning)
        details["executed_queries"] = job.server.queries if job else []
        # A recover or tables restore that failed after dropping its target did change the server.
        # So did one that left a server running (PITR checks failed) or scratch databases kept or not dropped.
        report = details.get("report", {})
        left = report.get("cleanup", {}).get("left") or report.get("cleanup", {}).get("kept")
        running = str(report.get("target_fate", "")).startswith("running")
        details["changed"] = bool(getattr(job, "target_touched", False) or left or running)
        module.fail_json(msg=msg, **details)

    for warning in warnings:
        module.warn(warning)
    result["executed_queries"] = job.server.queries
    module.exit_json(**result)


if __name__ == "__main__":
    main()
