# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Atomic file writes: temporary name in the same directory, fsync, rename, fsync the directory.

A reader sees either the old file or the complete new one, never a partial write. A failure or an
interrupt removes the temporary file, so nothing half-written is left under a name that looks valid.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

from ansible_collections.locksmith.ops.plugins.module_utils._errors import ArtefactError

TEMP_MARKER = ".locksmith-tmp-"


def temp_name_prefix(final_path):
    """Prefix of the temporary files written for ``final_path``; readers must ignore such names."""
    return "." + os.path.basename(final_path) + TEMP_MARKER


def is_temporary(name):
    """True for a name this module uses while writing (left over only if the process was killed)."""
    return TEMP_MARKER in os.path.basename(name)


def fsync_directory(path):
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicWriter:
    """Write ``final_path`` atomically and compute its sha256 and size while writing.

    Use as a context manager; the file appears under its final name only when the block ends
    without an exception.
    """

    def __init__(self, final_path, mode=0o600, digest="sha256"):
        self.final_path = final_path
        self.mode = mode
        self.directory = os.path.dirname(os.path.abspath(final_path))
        self._hash = hashlib.new(digest)
        self.size = 0
        self._file = None
        self.temp_path = None

    def __enter__(self):
        if not os.path.isdir(self.directory):
            raise ArtefactError(
                "directory '%s' for '%s' does not exist; create it first or choose another path"
                % (self.directory, self.final_path),
                path=self.final_path,
            )
        try:
            fd, self.temp_path = tempfile.mkstemp(prefix=temp_name_prefix(self.final_path), dir=self.directory)
        except OSError as err:
            raise ArtefactError(
                "cannot create a file in '%s' (%s); check its permissions and free space"
                % (self.directory, err.strerror),
                path=self.final_path,
            ) from err
        os.fchmod(fd, self.mode)
        self._file = os.fdopen(fd, "wb")
        return self

    def write(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    @property
    def hexdigest(self):
        return self._hash.hexdigest()

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()
            if exc_type is None:
                os.replace(self.temp_path, self.final_path)
                self.temp_path = None
                fsync_directory(self.directory)
        except OSError as err:
            raise ArtefactError(
                "writing '%s' failed (%s); check free space and permissions in '%s'"
                % (self.final_path, err.strerror, self.directory),
                path=self.final_path,
            ) from err
        finally:
            if self.temp_path is not None and os.path.exists(self.temp_path):
                os.unlink(self.temp_path)
        return False


def write_atomic(final_path, content, mode=0o600):
    """Write ``content`` (str or bytes) to ``final_path`` atomically; return its sha256."""
    with AtomicWriter(final_path, mode=mode) as out:
        out.write(content)
    return out.hexdigest


def read_text(path):
    """The file's text, or None when it is missing or unreadable (a file written whole next time)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, ValueError):
        return None


def file_sha256(path, chunk_size=1024 * 1024):
    """sha256 of an existing file, or None when it does not exist."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(chunk_size), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()
