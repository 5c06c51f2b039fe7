# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""A local JSON file (mode 0600) as a secret store, for labs and tests; not for production secrets.

The file maps secret names to their staged document plus a revision number; a write names the
revision it was computed from and is refused if the secret moved on (compare-and-set under a lock).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat

from ansible_collections.locksmith.ops.plugins.module_utils._atomic import write_atomic
from ansible_collections.locksmith.ops.plugins.module_utils._errors import ArtefactError
from ansible_collections.locksmith.ops.plugins.module_utils._paths import PathError, open_regular
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import (
    BackendConflict,
    BackendDenied,
    BackendUnavailable,
    DocumentBackend,
    SecretsBackendError,
)

FILE_FORMAT = "locksmith.secrets-file/1"


class FileBackend(DocumentBackend):
    """All secrets in one 0600 JSON file; each secret carries a revision used for compare-and-set."""

    name = "file"
    required_options = ("file_path",)

    def validate(self):
        super().validate()
        # The lookup has no module's NUL check in front of it; os.stat would raise ValueError.
        if "\x00" in self.options["file_path"]:
            raise SecretsBackendError(
                "file_path %r holds a NUL character, which no file name can; remove it" % self.options["file_path"]
            )

    def describe(self, secret):
        return "file %s, secret '%s'" % (self.options["file_path"], secret)

    def _read_file(self):
        path = self.options["file_path"]
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return {"format": FILE_FORMAT, "secrets": {}}
        except OSError as err:
            raise SecretsBackendError(
                "file_path '%s' cannot be used (%s); point file_path at a file this module wrote, or at a new path"
                % (path, err.strerror),
                path=path,
            ) from err
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise BackendDenied(
                "file_path '%s' is readable by group or others (mode %o); run `chmod 600 %s` first"
                % (path, stat.S_IMODE(info.st_mode), path),
                path=path,
            )
        try:
            # A regular file only: a FIFO would block the run forever.
            with open_regular(path, "file_path", "r") as handle:
                data = json.load(handle)
        except (PathError, ValueError) as err:
            raise SecretsBackendError(
                "file_path '%s' cannot be read as a locksmith secrets file (%s); "
                "point file_path at a file this module wrote, or at a new path"
                % (path, err.reason if isinstance(err, PathError) else err),
                path=path,
            ) from err
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise SecretsBackendError(
                "file_path '%s' is not a locksmith secrets file (no 'format: %s'); use a new path"
                % (path, FILE_FORMAT),
                path=path,
            )
        secrets = data.get("secrets")
        damaged = [name for name, entry in (secrets or {}).items() if not isinstance(entry, dict)]
        if not isinstance(secrets, dict) or damaged:
            raise SecretsBackendError(
                "file_path '%s' is damaged (%s); put it back from a backup, or move it away and rotate again"
                % (path, "'secrets' is not a mapping" if not isinstance(secrets, dict) else "entry %r" % damaged[0]),
                path=path,
            )
        return data

    def _lock(self):
        path = self.options["file_path"]
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise BackendUnavailable(
                "directory of file_path '%s' does not exist; create it (mode 0700) first" % path, path=path
            )
        # Opened without following a symlink and checked before fchmod: in a directory others can write (/tmp),
        # a symlink or hard link named <file_path>.lock would otherwise make this module (often root) create or
        # chmod the file it points to. O_NONBLOCK: a FIFO there fails instead of blocking forever.
        lock_path = path + ".lock"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(lock_path, flags, 0o600)
        except OSError as err:
            raise BackendUnavailable(
                "lock file '%s' cannot be opened (%s); it must be a regular file (not a symlink) in a directory "
                "this user can write; remove it or choose another file_path" % (lock_path, err.strerror),
                path=path,
            ) from err
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
            os.close(fd)
            raise BackendDenied(
                "lock file '%s' is not a regular file of this user with one link (owner uid %d, %d links); "
                "someone else made it: remove it, and keep file_path in a directory only this user can write"
                % (lock_path, info.st_uid, info.st_nlink),
                path=path,
            )
        os.fchmod(fd, 0o600)
        handle = os.fdopen(fd, "a", encoding="utf-8")  # closed by the caller
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    def _load(self, secret):
        entry = self._read_file()["secrets"].get(secret)
        if entry is None:
            return None, 0
        return entry, self._revision(entry, secret)

    def _revision(self, entry, secret):
        try:
            return int(entry.get("revision", 0))
        except (TypeError, ValueError) as err:
            raise SecretsBackendError(
                "file_path '%s' is damaged at secret '%s' (revision %r); put it back from a backup"
                % (self.options["file_path"], secret, entry.get("revision")),
                path=self.options["file_path"],
            ) from err

    def _store(self, secret, document, token):
        handle = self._lock()
        try:
            data = self._read_file()
            latest = self._revision(data["secrets"].get(secret, {}), secret)
            if latest != int(token or 0):
                raise BackendConflict(
                    "%s changed since it was read (revision %s, now %s); re-run to continue from the new state"
                    % (self.describe(secret), token, latest)
                )
            document = dict(document, revision=latest + 1)
            data["secrets"][secret] = document
            try:
                write_atomic(self.options["file_path"], json.dumps(data, indent=1, sort_keys=True), mode=0o600)
            except ArtefactError as err:
                raise BackendUnavailable(err.msg, path=self.options["file_path"]) from err
            return latest + 1
        finally:
            handle.close()
