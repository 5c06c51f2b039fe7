# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Reading a backup back: decrypt and decompress its artefacts, and verify it against its manifest."""

from __future__ import annotations

import hashlib
import os
import subprocess  # nosec B404 - runs pg_restore with argv lists, never a shell
import tempfile

from ansible_collections.locksmith.ops.plugins.module_utils._backup import GLOBALS_TRAILER, BackupError
from ansible_collections.locksmith.ops.plugins.module_utils._crypto_stream import (
    SUFFIX,
    CryptoError,
    Decryptor,
    key_id,
)
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._stream import decompressor


def artefact_suffixes(artefact):
    """Suffixes this module added to the plain name, outermost last (e.g. ['.zst', '.aes'])."""
    extra = artefact["name"][len(artefact["plain_name"]) :]
    return [s for s in (".zst", ".gz", SUFFIX) if s in extra]


def plain_chunks(destination, label, backup_id, artefact, key, digest=None):
    """Stored bytes of an artefact, hashed into ``digest`` if given, decrypted and decompressed."""
    suffixes = artefact_suffixes(artefact)
    stages = []
    if SUFFIX in suffixes:
        if key is None:
            raise CryptoError(
                "artefact '%s' is encrypted; give encryption_key or encryption_key_file to read it" % artefact["name"]
            )
        stages.append(Decryptor(key))
    for suffix in suffixes:
        if suffix != SUFFIX:
            stages.append(decompressor(suffix))
    for chunk in destination.read_chunks(label, backup_id, artefact["name"]):
        if digest is not None:
            digest.update(chunk)
        for stage in stages:
            chunk = stage.feed(chunk)
        if chunk:
            yield chunk
    tail = b""
    for stage in stages:
        tail = stage.feed(tail) if tail else b""
        tail += stage.finish()
    if tail:
        yield tail


def key_mismatch(manifest, key):
    """Why ``key`` cannot open this backup, from the key id its manifest records; None when it may."""
    recorded = ((manifest or {}).get("encryption") or {}).get("key_id")
    if key is None or not recorded or key_id(key) == recorded:
        return None
    message = "the backup was encrypted with key id %s, the key given has id %s; give the key it was made with"
    return message % (recorded, key_id(key))


def verify_entry(entry, key=None, read_data=True, pg_restore=None):
    """Check one backup: manifest, sizes, stored checksums, and (read_data) sha256 plus pg_restore --list."""
    destination, label, backup_id = entry.destination, entry.label, entry.backup_id
    result = dict(entry.summary(), checksums_verified=False, restore_list_checked=False, errors=[])
    if not entry.complete:
        problem = getattr(entry, "manifest_error", None)
        if problem:
            result["errors"].append("%s; the backup counts as incomplete and must not be restored" % problem)
        else:
            result["errors"].append("no manifest: the backup is incomplete and must not be restored")
        result["valid"] = False
        return result
    # Said once, by key id, instead of "does not authenticate" for every artefact; the checksums are still read.
    wrong_key = key_mismatch(entry.manifest, key)
    if wrong_key:
        result["errors"].append(wrong_key)
    for artefact in entry.manifest.get("artefacts", []):
        name = artefact["name"]
        stat = destination.stat(label, backup_id, name)
        if stat is None:
            result["errors"].append("%s: missing" % name)
            continue
        if stat["size"] != artefact["size_bytes"]:
            result["errors"].append("%s: size %d, manifest says %d" % (name, stat["size"], artefact["size_bytes"]))
            continue
        expected = artefact.get("s3_checksum_sha256")
        if expected and getattr(destination, "kind", None) == "s3" and not stat.get("checksum"):
            # pg_backup always uploads with a SHA-256; an object without one was replaced after the backup.
            result["errors"].append("%s: no stored checksum, manifest says %s (object replaced?)" % (name, expected))
            continue
        if stat.get("checksum") and expected and stat["checksum"] != expected:
            result["errors"].append("%s: stored checksum %s, manifest says %s" % (name, stat["checksum"], expected))
            continue
        if not read_data:
            continue
        digest = hashlib.sha256()
        try:
            if pg_restore and not wrong_key and artefact.get("kind") in ("dump", "globals"):
                _check_content(destination, label, backup_id, artefact, key, digest, pg_restore)
            else:
                for chunk in destination.read_chunks(label, backup_id, name):
                    digest.update(chunk)
        except Exception as err:  # noqa: BLE001 - a corrupt stream raises library errors of many kinds
            reason = str(err) if isinstance(err, LocksmithError) else "cannot be decoded (%s)" % err
            result["errors"].append("%s: %s" % (name, reason))
            # The content check stopped early; hash the stored bytes on their own.
            digest = hashlib.sha256()
            for chunk in destination.read_chunks(label, backup_id, name):
                digest.update(chunk)
        if digest.hexdigest() != artefact["sha256"]:
            result["errors"].append(
                "%s: sha256 %s, manifest says %s (corrupt)" % (name, digest.hexdigest(), artefact["sha256"])
            )
    if read_data and not [e for e in result["errors"] if "sha256" in e]:
        result["checksums_verified"] = not result["errors"]
    result["restore_list_checked"] = bool(pg_restore) and read_data and not result["errors"]
    result["valid"] = not result["errors"]
    return result


def _check_content(destination, label, backup_id, artefact, key, digest, pg_restore):
    """Feed the plain stream to `pg_restore --list` (custom), or check the globals trailer."""
    if artefact["kind"] == "globals":
        tail = b""
        for chunk in plain_chunks(destination, label, backup_id, artefact, key, digest):
            tail = (tail + chunk)[-4096:]
        if GLOBALS_TRAILER not in tail:
            raise BackupError("globals dump is truncated (no completion trailer)")
        return
    if artefact.get("format") == "directory":
        if not artefact["plain_name"].endswith("/toc.dat"):
            for _chunk in plain_chunks(destination, label, backup_id, artefact, key, digest):
                pass
            return
        with tempfile.TemporaryDirectory(prefix=".locksmith-verify-") as tmp:
            with open(os.path.join(tmp, "toc.dat"), "wb") as handle:
                for chunk in plain_chunks(destination, label, backup_id, artefact, key, digest):
                    handle.write(chunk)
            proc = subprocess.run(  # noqa: S603 # nosec B603
                [pg_restore, "--list", tmp], capture_output=True, text=True, check=False
            )
        if proc.returncode != 0:
            raise BackupError("pg_restore --list failed: %s" % proc.stderr.strip())
        return
    proc = subprocess.Popen(  # noqa: S603 # nosec B603
        [pg_restore, "--list"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    feeding = True
    try:
        for chunk in plain_chunks(destination, label, backup_id, artefact, key, digest):
            if feeding:
                try:
                    proc.stdin.write(chunk)
                except BrokenPipeError:
                    # pg_restore --list stops after the table of contents; keep hashing the rest.
                    feeding = False
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        stderr = proc.stderr.read().decode("utf-8", "replace").strip()
        rc = proc.wait()
    if rc != 0:
        raise BackupError("pg_restore --list failed: %s" % stderr)
