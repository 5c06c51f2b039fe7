# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""What pg_backup and pg_backup_info do per state, on top of BackupJob; results are plain dicts."""

from __future__ import annotations

import os

from ansible_collections.locksmith.ops.plugins.module_utils._backup import (
    BackupError,
    future_dated,
    iso,
    partial_filters,
)
from ansible_collections.locksmith.ops.plugins.module_utils._backup_verify import verify_entry
from ansible_collections.locksmith.ops.plugins.module_utils._crypto_stream import ALGORITHM, key_id
from ansible_collections.locksmith.ops.plugins.module_utils._pg_dump import find_tool
from ansible_collections.locksmith.ops.plugins.module_utils._storage import new_backup_id


def newest_per_destination(job):
    newest = {}
    for d in job.destinations:
        ids = [e.backup_id for e in job.existing.get(d.index, []) if e.complete and job.same_filters(e)]
        newest[d.name] = ids[-1] if ids else None
    return newest


def apply_present(job, check_mode, now):
    """state=present: back up when due, prune after; check mode predicts both. Returns the result dict."""
    job.inspect_database()
    job.inspect_destinations(write=True)
    if not check_mode:
        job.remove_stale_staging()  # also when no backup is due: a killed run's plaintext dump goes at once
    before = newest_per_destination(job)
    due, reason = job.due(now)
    result = {"changed": False, "reason": reason, "executed_queries": job.queries, "pruned": [], "copies": []}
    if not due:
        newest = job.newest_complete()
        result["backup"] = newest.manifest
        result["diff"] = {"before": {"newest": before}, "after": {"newest": before}}
        return result
    backup_id = new_backup_id(now)
    result["changed"] = True
    if check_mode:
        result["backup"] = {
            "id": backup_id,
            "label": job.label,
            "databases": job.facts["databases"],
            "format": job.params["format"],
            "compression": {k: job.compression[k] for k in ("method", "level", "by")},
            "encryption": {"algorithm": ALGORITHM, "key_id": key_id(job.key)} if job.key is not None else None,
        }
        for destination in job.destinations:
            result["copies"].append(
                {
                    "destination": destination.name,
                    "location": destination.location(job.label, backup_id),
                    "status": "would be written",
                }
            )
            prune = job.retention_plan(destination, new_id=backup_id, now=now)[1]
            result["pruned"].extend({"destination": destination.name, "id": i, "reason": r} for i, r in prune)
    else:
        result.update(job.run(backup_id))
    after = dict(before)
    for copy in result["copies"]:
        if copy["status"] != "failed":
            after[copy["destination"]] = backup_id
    result["diff"] = {
        "before": {"newest": before},
        "after": {"newest": after, "pruned": ["%s %s" % (p["destination"], p["id"]) for p in result["pruned"]]},
    }
    return result


def apply_verified(job, backup_id=None):
    """state=verified: re-read checksums and run pg_restore --list on one backup at every destination."""
    pg_restore = find_tool("pg_restore", job.params.get("pg_bin_dir"))
    job.inspect_destinations(write=False)
    checks, manifest = [], None
    for destination in job.destinations:
        entries = [e for e in job.existing.get(destination.index, []) if e.backup_id == backup_id or not backup_id]
        complete = [e for e in entries if e.complete]
        if not entries or (not backup_id and not complete):
            # Say why backups that are there do not count (a malformed manifest, say), not only that none does.
            unusable = ["%s: %s" % (e.backup_id, e.manifest_error) for e in entries if e.manifest_error]
            checks.append(
                {
                    "destination": destination.name,
                    "id": backup_id,
                    "valid": False,
                    "errors": [
                        "no %s backup of '%s' found" % ("such" if backup_id else "complete", job.label),
                        *unusable,
                    ],
                }
            )
            continue
        entry = complete[-1] if complete else entries[-1]
        checks.append(verify_entry(entry, key=job.key, read_data=True, pg_restore=pg_restore))
        manifest = manifest or entry.manifest
    bad = [c for c in checks if not c["valid"]]
    if bad:
        raise BackupError(
            "verification failed: %s"
            % "; ".join("%s %s: %s" % (c["destination"], c.get("id"), ", ".join(c["errors"])) for c in bad),
            verification=checks,
        )
    return {"changed": False, "backup": manifest, "verification": checks}


def list_backups_info(destinations, labels, verify_checksums, now, warnings=None):
    """pg_backup_info: every backup at every destination, checked, plus the newest good one per label."""
    backups, newest = [], {}
    warnings = warnings if warnings is not None else []
    for destination in destinations:
        destination.check_access(False)
        wanted = labels or destination.labels()
        read_data = verify_checksums if verify_checksums is not None else destination.kind == "local"
        for label in wanted:
            for entry in destination.list_backups(label):
                check = verify_entry(entry, read_data=read_data)
                check["checksums_verified"] = check["checksums_verified"] and read_data
                check["manifest"] = entry.manifest
                backups.append(check)
                # A partial backup (a one-table export) does not hold the database: listed, never its RPO.
                # A negative age would pass any "age < RPO" gate until the clock catches up: listed, never counted.
                counted = (
                    check["valid"]
                    and not partial_filters(entry.manifest)
                    and not future_dated(destination.name, entry, now, warnings, "is not the newest good backup")
                )
                if counted and (label not in newest or entry.ended > newest[label]["ended_epoch"]):
                    newest[label] = {
                        "id": entry.backup_id,
                        "destination": destination.name,
                        "location": check["location"],
                        "ended_at": iso(entry.ended),
                        "ended_epoch": entry.ended,
                        # Within the allowed clock skew an end a little ahead is "just now", not a negative age.
                        "age_seconds": max(0, int(now - entry.ended)),
                    }
    return {
        "backups": backups,
        "newest_good": newest,
        "rpo_seconds": {label: item["age_seconds"] for label, item in newest.items()},
    }


def write_metrics(directory, label, now, duration, copies, succeeded, rpo_target, warnings=None, configured=None):
    """locksmith_backup_* for one label (docs/metrics.md); the failure counter carries across runs.

    ``configured`` (destination URLs) limits the figures carried from the last file to destinations still given.
    """
    from ansible_collections.locksmith.ops.plugins.module_utils import _metrics

    path = os.path.join(directory, _metrics.textfile_name("backup", label))
    previous = _metrics.read_textfile(path, warnings)
    failures = previous.get(("locksmith_backup_failures_total", (("database", label),)), 0.0)
    if not succeeded:
        failures += 1
    success = _metrics.Family(
        "locksmith_backup_last_success_timestamp_seconds", "End of the newest verified copy at that destination."
    )
    size = _metrics.Family("locksmith_backup_last_size_bytes", "Stored size of the newest verified copy.")
    fresh = set()
    for copy in copies:
        if copy.get("status") == "verified":
            destination = copy["destination"].split(" ", 1)[1]
            fresh.add(destination)
            success.add(now, database=label, destination=destination)
            size.add(copy["size_bytes"], database=label, destination=destination)
    # Destinations that failed this time keep their last good figures, so staleness shows per copy.
    for (name, labels), value in previous.items():
        labels = dict(labels)
        if labels.get("destination") in fresh or labels.get("database") != label:
            continue
        # A destination taken out of the options would otherwise keep its last success, and BackupStale, for ever.
        if configured is not None and labels.get("destination") not in configured:
            continue
        if name == success.name:
            success.add(value, **labels)
        elif name == size.name:
            size.add(value, **labels)
    families = [
        success,
        size,
        _metrics.Family("locksmith_backup_last_attempt_timestamp_seconds", "End of the newest attempt.").add(
            now, database=label
        ),
        _metrics.Family("locksmith_backup_last_status", "1 if the newest attempt succeeded everywhere.").add(
            1 if succeeded else 0, database=label
        ),
        _metrics.Family("locksmith_backup_last_duration_seconds", "Wall time of the newest attempt.").add(
            round(duration, 3), database=label
        ),
        _metrics.Family("locksmith_backup_failures_total", "Failed attempts, kept across runs.", "counter").add(
            failures, database=label
        ),
        _metrics.Family("locksmith_backup_rpo_target_seconds", "RPO target for this database.").add(
            rpo_target, database=label
        ),
    ]
    return _metrics.write_textfile(directory, "backup", label, families)
