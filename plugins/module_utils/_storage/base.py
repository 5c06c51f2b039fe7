# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""What every destination backend offers: validate() without I/O, then listing, writing, reading, deleting."""

from __future__ import annotations

import json

from ansible_collections.locksmith.ops.plugins.module_utils._storage import (
    MANIFEST_NAME,
    StorageError,
    parse_backup_id,
    validate_label,
)

# 9999-12-31T23:59:59Z: later end times cannot be formatted and no real backup ends before 1970.
MAX_EPOCH = 253402300799


def _is_int(value) -> bool:
    """True for a JSON integer (bool is an int in Python, but not in a manifest)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _counts_problem(field, counts, nullable) -> str | None:
    """What is wrong with ``row_counts`` or ``row_estimates`` ({database: {table: rows}}), or None."""
    if counts is None:
        return None
    if not isinstance(counts, dict):
        return "%s is not an object" % field
    for database, tables in counts.items():
        if not isinstance(tables, dict):
            return "%s[%r] is not an object" % (field, database)
        for table, rows in tables.items():
            if not (rows is None and nullable) and (not _is_int(rows) or rows < 0):
                return "%s[%r][%r] is not a whole number of 0 or more" % (field, database, table)
    return None


def manifest_problem(manifest) -> str | None:
    """What is wrong with the shape of a parsed manifest that readers rely on, or None."""
    if not isinstance(manifest, dict):
        return "not a JSON object"
    artefacts = manifest.get("artefacts")
    if not isinstance(artefacts, list):
        return "artefacts is missing or not a list"
    for index, artefact in enumerate(artefacts):
        if not isinstance(artefact, dict):
            return "artefacts[%d] is not an object" % index
        if not isinstance(artefact.get("name"), str) or not artefact["name"]:
            return "artefacts[%d].name is missing or not a string" % index
        if not _is_int(artefact.get("size_bytes")) or artefact["size_bytes"] < 0:
            return "artefacts[%d].size_bytes is missing or not a whole number of 0 or more" % index
        if not isinstance(artefact.get("sha256"), str):
            return "artefacts[%d].sha256 is missing or not a string" % index
        # Restores and pg_backup state=verified strip it from name to find the suffixes (.zst, .aes) to undo.
        if not isinstance(artefact.get("plain_name"), str) or not artefact["plain_name"]:
            return "artefacts[%d].plain_name is missing or not a string" % index
    databases = manifest.get("databases")
    if databases is not None and (
        not isinstance(databases, list) or not all(isinstance(name, str) and name for name in databases)
    ):
        return "databases is not a list of database names"
    if manifest.get("encryption") is not None and not isinstance(manifest["encryption"], dict):
        return "encryption is neither an object nor null"
    # Exact counts are whole numbers; an estimate is null for a table never analyzed.
    for field, nullable in (("row_counts", False), ("row_estimates", True)):
        problem = _counts_problem(field, manifest.get(field), nullable)
        if problem:
            return problem
    if "ended_epoch" in manifest:
        ended = manifest["ended_epoch"]
        # The range test also refuses NaN and infinity (json.loads accepts both).
        if not isinstance(ended, (int, float)) or isinstance(ended, bool) or not 0 <= ended <= MAX_EPOCH:
            return "ended_epoch %r is not a time between 1970 and 9999" % (ended,)
    return None


def is_label(name) -> bool:
    """True when ``name`` could be a backup label (a plain database name or all-databases)."""
    try:
        validate_label(name)
    except StorageError:
        return False
    return True


def skipped_label_warning(destination, name) -> str:
    """The warning for an entry at the top of a destination that no backup label can be."""
    return (
        "%s: skipped %r, which is not a backup label (labels are plain database names or all-databases); "
        "pg_backup never writes it, so it was left alone" % (destination.name, name)
    )


class BackupEntry:
    """One backup (or leftover) found at a destination."""

    def __init__(self, destination, label, backup_id, manifest=None, temporary=False, manifest_error=None):
        self.destination = destination
        self.label = label
        self.backup_id = backup_id
        self.manifest = manifest
        # Why a manifest that exists was not usable (undecodable or malformed); None when it is fine or absent.
        self.manifest_error = manifest_error
        self.temporary = temporary
        self.started = parse_backup_id(backup_id)

    @property
    def complete(self):
        """A manifest is written last, so its presence is what makes a backup complete."""
        return self.manifest is not None and not self.temporary

    @property
    def ended(self):
        if self.manifest and isinstance(self.manifest.get("ended_epoch"), (int, float)):
            return self.manifest["ended_epoch"]
        return self.started

    @property
    def sort_key(self):
        """Order by end time (sub-second, from the manifest), then id."""
        return (self.ended or 0, self.backup_id)

    def summary(self):
        return {
            "id": self.backup_id,
            "label": self.label,
            "destination": self.destination.name,
            "location": self.destination.location(self.label, self.backup_id),
            "complete": self.complete,
        }


class Destination:
    """One place backups are stored; subclasses talk to exactly one kind of storage."""

    kind = ""
    # Options that belong to the other kind; giving them is a mistake worth reporting.
    foreign_options = ()

    def __init__(self, index, options, warnings):
        self.index = index
        self.options = options
        self.warnings = warnings

    @property
    def name(self):
        return "destinations[%d] %s" % (self.index, self.url)

    @property
    def url(self):
        raise NotImplementedError

    def validate(self):
        """Check the options only; no I/O."""
        given = [opt for opt in self.foreign_options if self.options.get(opt)]
        if given:
            raise StorageError(
                "%s: option(s) %s do not apply to type %s; remove them or change type"
                % (self.name, ", ".join(given), self.kind),
                destination=self.index,
            )

    def location(self, label, backup_id):
        raise NotImplementedError

    def check_access(self, write):
        """Raise StorageMissing/StorageDenied when the destination cannot be used."""
        raise NotImplementedError

    def labels(self):
        """Labels (databases) that have backups here."""
        raise NotImplementedError

    def list_backups(self, label):
        """BackupEntry objects for ``label``, oldest first; incomplete ones included."""
        raise NotImplementedError

    def open_writer(self, label, backup_id):
        raise NotImplementedError

    def read_chunks(self, label, backup_id, name):
        """Iterate over the stored bytes of one artefact."""
        raise NotImplementedError

    def stat(self, label, backup_id, name):
        """{'size': int, 'checksum': str or None} of a stored artefact, from metadata only."""
        raise NotImplementedError

    def delete(self, label, backup_id):
        raise NotImplementedError

    def read_manifest(self, label, backup_id):
        """The parsed manifest or None when absent or unreadable."""
        return self.load_manifest(label, backup_id)[0]

    def load_manifest(self, label, backup_id):
        """(manifest, None), or (None, why) when the manifest cannot be decoded or has the wrong shape."""
        data = b"".join(self.read_chunks(label, backup_id, MANIFEST_NAME))
        try:
            manifest = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            return None, "%s is not valid UTF-8 JSON (%s)" % (MANIFEST_NAME, err)
        problem = manifest_problem(manifest)
        if problem:
            return None, "%s is malformed: %s" % (MANIFEST_NAME, problem)
        return manifest, None

    def _check_label(self, label):
        return validate_label(label)
