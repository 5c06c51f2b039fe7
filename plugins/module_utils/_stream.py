# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Streaming stages for backups: compression choice, compress/decompress, and the hashing tee.

One dump stream passes once through compression and encryption and is then written to every
destination; its SHA-256 and size are computed on the way, so no artefact is ever read twice.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
import zlib

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._storage import StorageError

try:
    import zstandard

    HAS_ZSTANDARD = True
except ImportError:  # pragma: no cover - reported through missing_required_lib
    HAS_ZSTANDARD = False

_COMPRESSION = re.compile(r"^(none|gzip|zstd|lz4)(?::(\d{1,2}))?\Z")
LEVELS = {"none": (0, 0, 0), "gzip": (1, 9, 6), "zstd": (1, 19, 3), "lz4": (1, 12, 1)}
SUFFIXES = {"gzip": ".gz", "zstd": ".zst"}
# Compressed chunks waiting for the hashing/writing thread.
WRITE_QUEUE = 8


class CompressionError(LocksmithError):
    """The compression option is invalid or this pg_dump cannot do it."""


def parse_compression(value):
    """'zstd:3' -> ('zstd', 3); the level defaults per method."""
    match = _COMPRESSION.match(value or "")
    if not match:
        raise CompressionError(
            "compression %r is not valid; use none, gzip[:1-9], zstd[:1-19] or lz4[:1-12]" % (value,),
            option="compression",
        )
    method = match.group(1)
    low, high, default = LEVELS[method]
    if match.group(2) is None:
        return method, default
    level = int(match.group(2))
    if method == "none" or not low <= level <= high:
        raise CompressionError(
            "compression %r: level %d is out of range for %s (%d-%d)" % (value, level, method, low, high),
            option="compression",
        )
    return method, level


def plan_compression(value, pg_dump_major):
    """Who compresses: pg_dump when it supports the method, else this module on pg_dump -Z0 output."""
    method, level = parse_compression(value)
    if method == "none":
        return {"method": "none", "level": 0, "by": "pg_dump", "pg_dump_args": ["-Z", "0"], "suffix": ""}
    if method == "gzip":
        return {"method": "gzip", "level": level, "by": "pg_dump", "pg_dump_args": ["-Z", str(level)], "suffix": ""}
    if pg_dump_major >= 16:
        spec = "%s:%d" % (method, level)
        return {"method": method, "level": level, "by": "pg_dump", "pg_dump_args": ["-Z", spec], "suffix": ""}
    if method == "lz4":
        raise CompressionError(
            "compression 'lz4' needs pg_dump 16 or later (this pg_dump is %d); use zstd:N, which this module "
            "streams itself for older pg_dump, or point pg_bin_dir at a newer client" % pg_dump_major,
            option="compression",
        )
    return {"method": "zstd", "level": level, "by": "locksmith", "pg_dump_args": ["-Z", "0"], "suffix": ".zst"}


class _Identity:
    def feed(self, data):
        return data

    def finish(self):
        return b""


class ZstdCompress:
    def __init__(self, level, threads=1):
        # threads=1 moves compression to zstd's own worker thread (it releases the GIL), so reading the
        # dump pipe and hashing overlap with compressing, as in `pg_dump | zstd`; more threads split the
        # stream into jobs compressed side by side (same format, a few bytes larger).
        self._obj = zstandard.ZstdCompressor(level=level, threads=threads).compressobj()

    def feed(self, data):
        return self._obj.compress(data)

    def finish(self):
        return self._obj.flush()


class GzipCompress:
    def __init__(self, level):
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)

    def feed(self, data):
        return self._obj.compress(data)

    def finish(self):
        return self._obj.flush()


class ZstdDecompress:
    def __init__(self):
        self._obj = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data):
        return self._obj.decompress(data)

    def finish(self):
        return b""


class GzipDecompress:
    def __init__(self):
        self._obj = zlib.decompressobj(31)

    def feed(self, data):
        return self._obj.decompress(data)

    def finish(self):
        return self._obj.flush()


def compressor(method, level, threads=1):
    """A stage that compresses with ``method`` in this process (identity for none); ``threads`` is zstd's."""
    if method == "zstd":
        return ZstdCompress(level, threads)
    if method == "gzip":
        return GzipCompress(level)
    return _Identity()


def decompressor(suffix):
    """The stage that undoes a file suffix this module added ('' for none)."""
    return {".zst": ZstdDecompress, ".gz": GzipDecompress}.get(suffix, _Identity)()


class Tee:
    """Hash the final bytes once and write them to every destination sink still healthy.

    With ``threaded``, hashing and writing run in a thread of their own (both release the GIL), so
    they overlap with compression the way a separate process would in a shell pipeline.
    """

    def __init__(self, sinks, threaded=False):
        self.sinks = dict(sinks)
        self.failures = {}
        self._hash = hashlib.sha256()
        self.size = 0
        self._queue = None
        self._thread = None
        self._crash = None
        if threaded:
            self._queue = queue.Queue(maxsize=WRITE_QUEUE)
            self._thread = threading.Thread(target=self._drain, daemon=True)
            self._thread.start()

    def _drain(self):
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self._crash is not None:
                continue
            try:
                self._write_now(data)
            except Exception as err:  # noqa: BLE001 - re-raised by close() in the calling thread
                self._crash = err

    def write(self, data):
        if not data:
            return
        if self._queue is not None:
            self._queue.put(data)
        else:
            self._write_now(data)

    def _write_now(self, data):
        self._hash.update(data)
        self.size += len(data)
        for key, sink in list(self.sinks.items()):
            try:
                sink.write(data)
            except StorageError as err:
                self._drop(key, err)

    def _stop(self):
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash

    def _drop(self, key, err):
        self.failures[key] = err
        sink = self.sinks.pop(key)
        sink.abort()

    @property
    def alive(self):
        return bool(self.sinks)

    def close(self):
        """Close every sink; returns {key: close() result} for the sinks that finished."""
        self._stop()
        results = {}
        for key, sink in list(self.sinks.items()):
            try:
                results[key] = sink.close()
            except StorageError as err:
                self._drop(key, err)
                continue
            if results[key]["size"] != self.size:
                self.failures[key] = StorageError(
                    "stored size %d differs from the %d bytes written" % (results[key]["size"], self.size)
                )
                del results[key]
        return results

    def abort(self):
        try:
            self._stop()
        finally:
            for sink in self.sinks.values():
                sink.abort()

    @property
    def hexdigest(self):
        return self._hash.hexdigest()


class Pipeline:
    """Compression then encryption stages feeding a Tee."""

    def __init__(self, stages, tee):
        self.stages = [s for s in stages if s is not None]
        self.tee = tee

    def push(self, data):
        for stage in self.stages:
            data = stage.feed(data)
            if not data:
                return
        self.tee.write(data)

    def finish(self):
        for index, stage in enumerate(self.stages):
            data = stage.finish()
            for later in self.stages[index + 1 :]:
                data = later.feed(data) if data else data
            self.tee.write(data)
