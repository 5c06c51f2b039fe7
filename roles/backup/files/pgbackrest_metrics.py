"""Publish the outcome of one pgBackRest backup for node_exporter's textfile collector (docs/metrics.md).

Runs as ExecStopPost of locksmith-pgbackrest@<type>.service, so it runs after a failed backup too; systemd gives
the outcome in $SERVICE_RESULT. The newest backup of the type comes from `pgbackrest info` (run as the cluster's
user). The file is written with the collection's one metrics writer, imported from the pg_backup runner
(backup_runner_file), as locksmith_pgbackrest_<stanza>_<type>.prom, so the full and the diff job never share a file.

usage: pgbackrest_metrics.py --runner PYZ --config FILE --stanza NAME --type full|diff --user USER --metrics-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess  # nosec B404 - runs pgbackrest with an argv list, never a shell
import sys
import time


def newest_backup(info: list, backup_type: str) -> dict | None:
    """The newest backup of one type in `pgbackrest --output=json info`, or None."""
    backups = [b for stanza in info for b in stanza.get("backup", []) if b.get("type") == backup_type]
    return max(backups, key=lambda b: b["timestamp"]["stop"], default=None)


def main() -> int:
    parser = argparse.ArgumentParser()
    for option in ("--runner", "--config", "--stanza", "--type", "--user", "--metrics-dir"):
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.runner)
    from ansible_collections.locksmith.ops.plugins.module_utils import _metrics

    succeeded = os.environ.get("SERVICE_RESULT", "success") == "success"
    argv = ["runuser", "-u", args.user, "--", "pgbackrest", "--config=" + args.config, "--stanza=" + args.stanza]
    listed = subprocess.run([*argv, "--output=json", "info"], capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
    info = json.loads(listed.stdout) if listed.returncode == 0 and listed.stdout.strip() else []
    newest = newest_backup(info, args.type)
    labels = {"stanza": args.stanza, "type": args.type}
    path = os.path.join(args.metrics_dir, _metrics.textfile_name("pgbackrest", "%s_%s" % (args.stanza, args.type)))
    failures = _metrics.previous_value(path, "locksmith_pgbackrest_failures_total", **labels) + (0 if succeeded else 1)
    families = [
        _metrics.Family("locksmith_pgbackrest_last_attempt_timestamp_seconds", "End of the newest attempt.").add(
            time.time(), **labels
        ),
        _metrics.Family("locksmith_pgbackrest_last_status", "1 if the newest attempt succeeded.").add(
            1 if succeeded else 0, **labels
        ),
        _metrics.Family("locksmith_pgbackrest_failures_total", "Failed attempts, kept across runs.", "counter").add(
            failures, **labels
        ),
    ]
    if newest is not None:
        start, stop = newest["timestamp"]["start"], newest["timestamp"]["stop"]
        families += [
            _metrics.Family(
                "locksmith_pgbackrest_last_success_timestamp_seconds", "End of the newest backup in the repository."
            ).add(stop, **labels),
            _metrics.Family("locksmith_pgbackrest_last_duration_seconds", "Wall time of the newest backup.").add(
                stop - start, **labels
            ),
            _metrics.Family(
                "locksmith_pgbackrest_last_size_bytes", "Stored size of the newest backup in the repository."
            ).add(newest["info"]["repository"]["delta"], **labels),
        ]
    _metrics.write_textfile(args.metrics_dir, "pgbackrest", "%s_%s" % (args.stanza, args.type), families)
    return 0


if __name__ == "__main__":
    sys.exit(main())
