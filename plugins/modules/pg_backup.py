#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup
short_description: Verified, atomic logical PostgreSQL backups to local and S3 destinations
version_added: 0.1.0
description:
  - Manages the backups of one PostgreSQL database, or of all databases plus globals (roles,
    tablespaces), taken with C(pg_dump) in custom or directory format, at one or more destinations.
    It never changes the database; it only reads it.
  - The dump is streamed once, compressed, optionally encrypted (AES-256-GCM), hashed (SHA-256 while
    writing) and written to every destination at the same time; S3 copies use multipart upload and
    need no local copy.
  - Atomic. Artefacts go to a temporary name (local) or are invisible until the manifest exists (S3);
    C(manifest.json) is written last, only after the destination has confirmed each artefact's size and
    checksum. A killed or failed run leaves nothing that M(locksmith.ops.pg_backup_info) or a restore
    takes as valid. A C(pg_dump) that exits non-zero or prints an error fails the run.
  - Idempotence. A backup is a change by nature, so it is bounded in time. With
    O(state=present), a backup is taken only when some destination has no complete backup of this
    database that ended less than O(min_interval_seconds) ago; otherwise the module reports
    C(changed=false) and returns the newest manifest. A scheduled re-run within the interval, or a second
    playbook run, changes nothing. Only backups taken with the same O(schemas), O(exclude_schemas), O(tables) and
    O(exclude_tables) count, so a one-table export does not stand in for a full backup; a backup that ended in the
    future (taken while a clock was ahead) does not count either, with a warning. Check mode reads the server and
    every destination and predicts the same decision, and the backups retention would prune.
  - Retention (O(destinations[].retention)) runs at a destination only after the new backup is verified
    there, and never deletes the newest complete backup. It keeps and prunes only backups taken with the same
    filters as this run. When a deletion is refused, the run fails, still returning the verified backup.
  - O(state=verified) re-reads an existing backup, checks every artefact's SHA-256 against the
    manifest and runs C(pg_restore --list) on it. It changes nothing. A key other than the one the backup was
    encrypted with is named by its key id and the manifest's.
  - Never touched, by any state, the database's contents, other databases' backups, or objects
    at the destinations that are not backups of this label.
options:
  state:
    description:
      - V(present) takes a backup when one is due (see O(min_interval_seconds)), then applies retention.
      - V(verified) checks the backup O(backup_id), or the newest complete one, at every destination.
    type: str
    default: present
    choices: [present, verified]
    version_added: 0.1.0
  database:
    description: The database to back up. A plain identifier. Required unless O(all_databases=true).
    type: str
    version_added: 0.1.0
  all_databases:
    description:
      - Back up every database that accepts connections (templates excluded), each with C(pg_dump), plus
        C(pg_dumpall --globals-only) for roles and tablespaces, as one backup labelled C(all-databases).
    type: bool
    default: false
    version_added: 0.1.0
  format:
    description:
      - V(custom) is one file per database, streamed (no local staging).
      - V(directory) lets C(pg_dump) work in parallel (O(jobs)); it is staged in O(work_dir) and then
        streamed file by file to the destinations.
    type: str
    default: custom
    choices: [custom, directory]
    version_added: 0.1.0
  jobs:
    description: Parallel C(pg_dump) jobs; more than 1 needs O(format=directory).
    type: int
    default: 1
    version_added: 0.1.0
  schemas:
    description:
      - Dump only these schemas (exact names). Each must exist.
      - A name with other characters than letters, digits, C(_) and C($) is written in double quotes as in SQL,
        C('"My Schema"'), with C("") for a quote in it.
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  exclude_schemas:
    description: Do not dump these schemas (exact names; quoted as in O(schemas) where needed).
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  tables:
    description:
      - Dump only these tables, C(table) or C(schema.table) (exact names). Each must exist.
      - A name that needs quoting is written in double quotes, C(shop."Order Items").
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  exclude_tables:
    description: Do not dump these tables, C(table) or C(schema.table) (quoted as in O(tables) where needed).
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  compression:
    description:
      - V(none), V(gzip[:1-9]), V(zstd[:1-19]) or V(lz4[:1-12]).
      - C(pg_dump) compresses itself when it can (gzip always; zstd and lz4 from version 16). With an
        older C(pg_dump), zstd is done by this module on the C(pg_dump -Z0) stream (a C(.zst) suffix
        on the artefact; restore through C(zstd -dc | pg_restore)); lz4 then fails with a message.
      - pg_dump's gzip is several times slower than zstd at a similar ratio.
    type: str
    default: zstd:3
    version_added: 0.1.0
  compression_threads:
    description:
      - Worker threads for zstd when this module compresses (C(pg_dump) older than 16; see O(compression)).
      - V(1) compresses on one worker beside the thread reading C(pg_dump), as C(pg_dump -Z0 | zstd) does with
        two processes. V(2) or more split the stream into blocks compressed side by side, on that many more
        cores; the file is the same zstd format, a few bytes larger. V(0) compresses in the reading thread.
      - Measured on 2 cores (pgbench scale 50, C(benchmarks/pg_backup_vs_pg_dump.py), median of 5 same-round
        ratios), V(1) takes as long as C(pg_dump -Z0 | zstd -3) (1.00) and V(2) 0.88 times as long. Raise it only
        where the database host has idle cores in the backup window.
    type: int
    default: 1
    version_added: 0.1.0
  pg_bin_dir:
    description: Directory of C(pg_dump), C(pg_dumpall) and C(pg_restore); C(PATH) when omitted.
    type: path
    version_added: 0.1.0
  encryption_key:
    description:
      - Encrypt every artefact on this host with AES-256-GCM before it leaves (64 hex characters or base64
        of 32 bytes). Never logged or returned; the manifest records only a key id.
      - Mutually exclusive with O(encryption_key_file).
    type: str
    version_added: 0.1.0
  encryption_key_file:
    description:
      - File holding the encryption key (32 raw bytes, 64 hex characters or base64).
      - It must be readable only by the user running the backup (C(chmod 600)). A file others can read or write is
        refused, naming the file; one its group can read (C(root:backup 0640), say) is used, with a warning.
    type: path
    version_added: 0.1.0
  min_interval_seconds:
    description:
      - A backup is due when some destination has no complete backup that ended less than this many
        seconds ago. V(0) takes a backup on every run (and always reports changed).
    type: int
    default: 3600
    version_added: 0.1.0
  backup_id:
    description: For O(state=verified), the backup to check; the newest complete one when omitted.
    type: str
    version_added: 0.1.0
  work_dir:
    description:
      - Staging directory for O(format=directory); the system temporary directory when omitted.
      - The staged dump is not encrypted, even with O(encryption_key). A run removes its staging area when it ends;
        one left by a run that was killed (C(.locksmith-pg_backup-*), no longer locked by a running backup) is
        removed by the next O(state=present) run (not in check mode), due or not, with a warning.
    type: path
    version_added: 0.1.0
  metrics_dir:
    description:
      - node_exporter textfile-collector directory. When set, every attempt (not check mode) writes
        C(locksmith_backup_<label>.prom) with the C(locksmith_backup_*) metrics of C(docs/metrics.md);
        C(locksmith_backup_failures_total) carries across runs.
    type: path
    version_added: 0.1.0
  rpo_target_seconds:
    description: RPO target published as C(locksmith_backup_rpo_target_seconds) with O(metrics_dir).
    type: int
    default: 93600
    version_added: 0.1.0
  exact_row_counts:
    description:
      - Also record each table's exact C(count(*)) in the manifest as C(row_counts), taken in a
        repeatable-read transaction whose snapshot C(pg_dump --snapshot) then dumps, so the counts are
        exactly what the dump holds. M(locksmith.ops.pg_backup_restore) compares restored tables with them.
      - Reads every table once more (a sequential scan each); off by default, when only the
        C(pg_class.reltuples) estimates are recorded.
    type: bool
    default: false
    version_added: 0.1.0
extends_documentation_fragment:
  - locksmith.ops.attributes
  - locksmith.ops.attributes.ALL
  - locksmith.ops.postgres
  - locksmith.ops.storage
attributes:
  idempotent:
    support: partial
    details:
      - A backup is taken again once O(min_interval_seconds) has passed since the newest one, by design.
        Within the interval a run reports no change.
requirements:
  - zstandard, for O(compression=zstd) with pg_dump older than 16
  - cryptography, for O(encryption_key) and O(encryption_key_file)
author:
  - locksmith.ops contributors (@locksmith-ops)
"""

EXAMPLES = r"""
- name: Back up the app database to a local directory (at most one backup an hour)
  locksmith.ops.pg_backup:
    database: app
    login_host: 127.0.0.1
    login_password: "{{ lookup('community.hashi_vault.vault_kv2_get', 'pg/backup').secret.password }}"
    destinations:
      - type: local
        path: /var/backups/postgresql
        retention:
          keep_last: 7

- name: Daily geo-redundant, encrypted backup to two S3 regions with GFS retention and metrics
  locksmith.ops.pg_backup:
    database: app
    compression: zstd:3
    encryption_key_file: /etc/locksmith/backup.key
    min_interval_seconds: 72000
    metrics_dir: /var/lib/prometheus/node-exporter
    destinations:
      - type: s3
        bucket: acme-backups-eu-west-1
        region: eu-west-1
        prefix: postgresql
        sse: aws:kms
        retention: {daily: 7, weekly: 4, monthly: 3, max_age_days: 730}
      - type: s3
        bucket: acme-backups-eu-central-1
        region: eu-central-1
        prefix: postgresql
        retention: {daily: 7, weekly: 4, monthly: 3, max_age_days: 730}

- name: All databases plus roles and tablespaces, parallel directory dumps
  locksmith.ops.pg_backup:
    all_databases: true
    format: directory
    jobs: 2
    work_dir: /var/backups/staging
    destinations:
      - type: local
        path: /var/backups/postgresql

- name: Show whether a backup is due and what retention would prune (run with --check)
  locksmith.ops.pg_backup:
    database: app
    destinations:
      - type: local
        path: /var/backups/postgresql
        retention: {keep_last: 7}
  check_mode: true
  register: backup_plan

- name: Re-check the newest backup's checksums and pg_restore --list
  locksmith.ops.pg_backup:
    database: app
    state: verified
    encryption_key_file: /etc/locksmith/backup.key
    destinations:
      - type: local
        path: /var/backups/postgresql
"""

RETURN = r"""
backup:
  description:
    - The manifest of the new backup (or, when none was due, of the newest one; in check mode, the plan).
      It never holds a secret.
  returned: success
  type: dict
  sample:
    id: 20261127T020000Z-1a2b
    label: app
    database: app
    databases: [app]
    globals: false
    server_version: "15.14 (Debian 15.14-0+deb12u1)"
    pg_dump_version: "15.14"
    started_at: "2026-11-27T02:00:00Z"
    ended_at: "2026-11-27T02:00:09Z"
    duration_seconds: 8.9
    size_bytes: 259153220
    format: custom
    compression: {method: zstd, level: 3, by: locksmith}
    encryption: {algorithm: AES-256-GCM-STREAM, key_id: 3f2a9c0d1e4b5a67, chunk_bytes: 1048576}
    wal_lsn_start: 0/3A000028
    row_estimates: {app: {public.users: 5000000}}
    artefacts:
      - name: app.dump.zst.aes
        kind: dump
        database: app
        plain_name: app.dump
        size_bytes: 259153220
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
copies:
  description: One entry per destination, with C(status) V(verified), V(failed) (with C(error)) or V(would be written).
  returned: when a backup was due
  type: list
  elements: dict
  sample:
    - destination: destinations[0] local:/var/backups/postgresql
      location: /var/backups/postgresql/app/20261127T020000Z-1a2b
      status: verified
      size_bytes: 259153220
pruned:
  description: Backups deleted by retention (in check mode, those that would be).
  returned: success
  type: list
  elements: dict
  sample:
    - {destination: "destinations[0] local:/var/backups/postgresql", id: 20261101T020000Z-77aa, reason: retention}
reason:
  description: Why a backup was or was not due.
  returned: state=present
  type: str
  sample: every destination has a backup younger than min_interval_seconds=3600
verification:
  description: For O(state=verified), the check of each destination's copy.
  returned: state=verified
  type: list
  elements: dict
  sample:
    - id: 20261127T020000Z-1a2b
      destination: destinations[0] local:/var/backups/postgresql
      valid: true
      checksums_verified: true
      restore_list_checked: true
      errors: []
executed_queries:
  description: The read-only SQL statements run (server version, databases, WAL position, row estimates).
  returned: state=present
  type: list
  elements: str
  sample: ["SELECT current_setting('server_version') AS v"]
metrics_file:
  description: The textfile written when O(metrics_dir) is set.
  returned: when metrics_dir is set and not in check mode
  type: str
  sample: /var/lib/prometheus/node-exporter/locksmith_backup_app.prom
"""

import os  # noqa: E402 - ansible modules document before they import
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils import (  # noqa: E402
    _backup,
    _backup_flows,
    _crypto_stream,
    _postgres,
    _stream,
)
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._paths import refuse_nul_in_paths  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._storage import ALL_DATABASES_LABEL, s3  # noqa: E402

MUTUALLY_EXCLUSIVE = [("database", "all_databases"), ("encryption_key", "encryption_key_file")]


def missing_libraries(params):
    """Python libraries the given options need but that are not importable."""
    needed = [("psycopg2", _postgres.HAS_PSYCOPG2)]
    if any(d.get("type") == "s3" for d in params["destinations"] or []):
        needed.append(("boto3", s3.HAS_BOTO3))
    if (params["compression"] or "").startswith("zstd"):
        needed.append(("zstandard", _stream.HAS_ZSTANDARD))
    if params["encryption_key"] or params["encryption_key_file"]:
        needed.append(("cryptography", _crypto_stream.HAS_CRYPTOGRAPHY))
    return [name for name, present in needed if not present]


def record_attempt(params, label, started, result, succeeded, warnings, job=None):
    """Write the metrics file for a real attempt; returns its path or None."""
    if not params["metrics_dir"] or params["state"] != "present":
        return None
    copies = result.get("copies", []) if result else []
    now = time.time()
    # Unknown when the options did not even build a job: then every destination's last figures are kept.
    configured = {d.url for d in job.destinations} if job is not None else None
    changed_and_path = _backup_flows.write_metrics(
        params["metrics_dir"],
        label,
        now,
        now - started,
        copies,
        succeeded,
        params["rpo_target_seconds"],
        warnings,
        configured,
    )
    return changed_and_path[1]


def main():
    module = AnsibleModule(
        argument_spec=_backup.backup_argument_spec(),
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    refuse_nul_in_paths(module)
    params = module.params
    if not params["database"] and not params["all_databases"]:
        module.fail_json(msg="give database (a database name) or all_databases: true")
    for name in missing_libraries(params):
        module.fail_json(msg=missing_required_lib(name))
    if params["metrics_dir"] and not os.path.isdir(params["metrics_dir"]):
        module.fail_json(
            msg="metrics_dir '%s' does not exist; install node_exporter's textfile collector or fix metrics_dir"
            % params["metrics_dir"]
        )

    warnings = []
    started = time.time()
    label = ALL_DATABASES_LABEL if params["all_databases"] else params["database"]
    attempted = False
    job = None
    try:
        job = _backup.BackupJob(params, warnings)
        if params["state"] == "verified":
            result = _backup_flows.apply_verified(job, params["backup_id"])
        else:
            result = _backup_flows.apply_present(job, module.check_mode, started)
            attempted = result["changed"] and not module.check_mode
            failed = [c for c in result["copies"] if c["status"] == "failed"]
            retention_errors = result.pop("retention_errors", [])
            if attempted:
                result["metrics_file"] = record_attempt(
                    params, label, started, result, not failed and not retention_errors, warnings, job
                )
            if failed or retention_errors:
                raise _backup.BackupError(
                    "backup %s was verified at %d of %d destinations%s%s"
                    % (
                        result["backup"]["id"],
                        len(result["copies"]) - len(failed),
                        len(result["copies"]),
                        "; failed: %s" % "; ".join(c["error"] for c in failed) if failed else "",
                        # The backup is good there; old ones were not deleted, so storage grows until this is fixed.
                        "; retention did not finish (older backups kept) at: %s" % "; ".join(retention_errors)
                        if retention_errors
                        else "",
                    ),
                    backup=result["backup"],
                    copies=result["copies"],
                    pruned=result["pruned"],
                )
    except LocksmithError as err:
        details = dict(err.details)
        if not module.check_mode and not attempted and params["state"] == "present":
            try:
                details["metrics_file"] = record_attempt(params, label, started, None, False, warnings, job)
            except LocksmithError as metrics_err:
                warnings.append(str(metrics_err))
        for warning in warnings:
            module.warn(warning)
        module.fail_json(msg=str(err), **details)

    for warning in warnings:
        module.warn(warning)
    diff = result.pop("diff", None)
    if module._diff and diff is not None:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
