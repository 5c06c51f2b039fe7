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


class BackupEntry:
    """One backup (or leftover) found at a destination."""

    def __init__(self, destination, label, backup_id, manifest=None, temporary=False):
        self.destination = destination
        self.label = label
        self.backup_id = backup_id
        self.manifest = manifest
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
        data = b"".join(self.read_chunks(label, backup_id, MANIFEST_NAME))
        try:
            manifest = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def _check_label(self, label):
        return validate_label(label)
