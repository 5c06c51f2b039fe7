# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""A local directory (or any mounted file system) as a backup destination.

A backup is written into a hidden temporary directory beside its final name; the manifest goes in
last and the directory is then renamed, so a killed run leaves only a name readers ignore.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile

from ansible_collections.locksmith.ops.plugins.module_utils._atomic import TEMP_MARKER, fsync_directory
from ansible_collections.locksmith.ops.plugins.module_utils._storage import (
    MANIFEST_NAME,
    StorageDenied,
    StorageError,
    StorageFull,
    StorageMissing,
    is_backup_id,
)
from ansible_collections.locksmith.ops.plugins.module_utils._storage.base import (
    BackupEntry,
    Destination,
    is_label,
    skipped_label_warning,
)

CHUNK = 1024 * 1024


def _os_error(destination, action, err):
    """Map an OSError to the StorageError subclass that names the fix."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(
            "%s: no space left on device while %s; free space there, lower retention, or remove this destination"
            % (destination.name, action),
            destination=destination.index,
        )
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageDenied(
            "%s: %s while %s; make '%s' writable for this user or choose another path"
            % (destination.name, err.strerror, action, destination.root),
            destination=destination.index,
        )
    return StorageError(
        "%s: %s while %s" % (destination.name, err.strerror or err, action), destination=destination.index
    )


class LocalSink:
    """One artefact file being written inside the writer's temporary directory."""

    def __init__(self, destination, path):
        self.destination = destination
        self.path = path
        self.size = 0
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            self._file = open(path, "wb")  # closed in close()/abort()
        except OSError as err:
            raise _os_error(destination, "creating '%s'" % path, err) from err

    def write(self, data):
        try:
            self._file.write(data)
        except OSError as err:
            raise _os_error(self.destination, "writing '%s'" % self.path, err) from err
        self.size += len(data)

    def close(self):
        """Flush to disk and confirm the size the file system reports."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            stored = os.fstat(self._file.fileno()).st_size
            self._file.close()
        except OSError as err:
            raise _os_error(self.destination, "flushing '%s'" % self.path, err) from err
        return {"size": stored}

    def abort(self):
        try:
            self._file.close()
        except OSError:
            pass


class LocalWriter:
    """Writes one backup into ``.<id>.locksmith-tmp-*`` and renames it once the manifest is in."""

    def __init__(self, destination, label, backup_id):
        self.destination = destination
        self.parent = os.path.join(destination.root, label)
        self.final = os.path.join(self.parent, backup_id)
        try:
            os.makedirs(self.parent, mode=0o700, exist_ok=True)
            self.temp = tempfile.mkdtemp(prefix="." + backup_id + TEMP_MARKER, dir=self.parent)
        except OSError as err:
            raise _os_error(destination, "creating a directory in '%s'" % self.parent, err) from err

    def open_artefact(self, name):
        return LocalSink(self.destination, os.path.join(self.temp, name))

    def commit(self, manifest_bytes, artefacts):
        """Confirm every artefact's size, write the manifest, then rename the directory into place."""
        for artefact in artefacts:
            path = os.path.join(self.temp, artefact["name"])
            size = os.stat(path).st_size
            if size != artefact["size_bytes"]:
                raise StorageError(
                    "%s: '%s' holds %d bytes, expected %d; the copy is not counted"
                    % (self.destination.name, artefact["name"], size, artefact["size_bytes"]),
                    destination=self.destination.index,
                )
        try:
            with open(os.path.join(self.temp, MANIFEST_NAME), "wb") as handle:
                handle.write(manifest_bytes)
                handle.flush()
                os.fsync(handle.fileno())
            fsync_directory(self.temp)
            os.rename(self.temp, self.final)
            fsync_directory(self.parent)
        except OSError as err:
            raise _os_error(self.destination, "writing the manifest of '%s'" % self.final, err) from err

    def abort(self):
        shutil.rmtree(self.temp, ignore_errors=True)


class LocalDestination(Destination):
    kind = "local"
    foreign_options = (
        "bucket",
        "prefix",
        "region",
        "endpoint_url",
        "sse",
        "sse_kms_key_id",
        "profile",
        "access_key",
        "secret_key",
        "session_token",
    )

    def __init__(self, index, options, warnings):
        super().__init__(index, options, warnings)
        path = options.get("path")
        # Normalised once, so '<dir>//x' and '<dir>/./x' are the same directory as '<dir>/x' in every
        # path built and compared below; a relative path stays as given for validate() to refuse.
        self.root = os.path.normpath(path) if path and os.path.isabs(path) else path

    @property
    def url(self):
        # The path as given: the destination's name is a metrics label and must not change under users.
        return "local:%s" % self.options["path"]

    def validate(self):
        super().validate()
        if not os.path.isabs(self.root or ""):
            raise StorageError(
                "%s: path must be absolute; give the full directory path" % self.name, destination=self.index
            )

    def location(self, label, backup_id):
        return os.path.join(self.root, label, backup_id)

    def check_access(self, write):
        if not os.path.isdir(self.root):
            raise StorageMissing(
                "%s: directory '%s' does not exist; create it (owner: the user running the backup) "
                "or fix destinations[%d].path" % (self.name, self.root, self.index),
                destination=self.index,
            )
        if write and not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageDenied(
                "%s: directory '%s' is not writable by this user; fix its owner/mode or choose another path"
                % (self.name, self.root),
                destination=self.index,
            )

    def labels(self):
        try:
            names = sorted(os.listdir(self.root))
        except OSError as err:
            raise _os_error(self, "listing '%s'" % self.root, err) from err
        labels = []
        for name in names:
            if name.startswith(".") or not os.path.isdir(os.path.join(self.root, name)):
                continue
            if not is_label(name):
                # A mount point holds lost+found; pg_backup never writes such a name, so it is not ours.
                self.warnings.append(skipped_label_warning(self, name))
                continue
            labels.append(name)
        return labels

    def list_backups(self, label):
        self._check_label(label)
        parent = os.path.join(self.root, label)
        if not os.path.isdir(parent):
            return []
        entries = []
        for name in sorted(os.listdir(parent)):
            if TEMP_MARKER in name:
                entries.append(BackupEntry(self, label, name[1:].split(TEMP_MARKER)[0], temporary=True))
                entries[-1].temp_name = name
                continue
            if not is_backup_id(name):
                continue
            manifest, problem = None, None
            if os.path.isfile(os.path.join(parent, name, MANIFEST_NAME)):
                manifest, problem = self.load_manifest(label, name)
            entries.append(BackupEntry(self, label, name, manifest, manifest_error=problem))
        return sorted(entries, key=lambda e: e.sort_key)

    def open_writer(self, label, backup_id):
        self._check_label(label)
        return LocalWriter(self, label, backup_id)

    def _path(self, label, backup_id, name):
        self._check_label(label)
        path = os.path.normpath(os.path.join(self.root, label, backup_id, name))
        if not path.startswith(os.path.join(self.root, label, backup_id) + os.sep):
            raise StorageError("%s: artefact name %r leaves the backup directory" % (self.name, name))
        return path

    def read_chunks(self, label, backup_id, name):
        path = self._path(label, backup_id, name)
        try:
            handle = open(path, "rb")  # closed by the with below
        except FileNotFoundError as err:
            raise StorageMissing(
                "%s: '%s' is missing; the backup is incomplete" % (self.name, path), destination=self.index
            ) from err
        except OSError as err:
            raise _os_error(self, "reading '%s'" % path, err) from err
        with handle:
            yield from iter(lambda: handle.read(CHUNK), b"")

    def stat(self, label, backup_id, name):
        try:
            return {"size": os.stat(self._path(label, backup_id, name)).st_size, "checksum": None}
        except FileNotFoundError:
            return None

    def delete(self, label, backup_id, temporary_name=None):
        self._check_label(label)
        target = os.path.join(self.root, label, temporary_name or backup_id)
        # Rename first, so a half-deleted backup never keeps a name that looks complete.
        doomed = os.path.join(self.root, label, "." + (temporary_name or backup_id).lstrip(".") + TEMP_MARKER + "del")
        try:
            os.rename(target, doomed)
            shutil.rmtree(doomed)
        except OSError as err:
            raise _os_error(self, "deleting '%s'" % target, err) from err
