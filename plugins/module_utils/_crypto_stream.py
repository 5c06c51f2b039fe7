# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Client-side AES-256-GCM for streams of any size, in independently authenticated chunks.

One GCM tag over a whole stream would let a reader act on plaintext before it is authenticated, so
the stream is cut into 1 MiB chunks (the STREAM construction): chunk ``i`` uses nonce
``prefix || i`` and authenticates the header, ``i`` and a final-chunk flag, so reordering, dropping
or truncating chunks fails decryption. Layout: ``LSAEGCM1`` | chunk size (4 bytes) | nonce prefix
(8 random bytes) | chunks of ciphertext + 16-byte tag. The key never leaves this module's callers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
import struct

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._paths import PathError, open_regular

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported through missing_required_lib
    HAS_CRYPTOGRAPHY = False

MAGIC = b"LSAEGCM1"
CHUNK = 1024 * 1024
TAG = 16
HEADER_LEN = len(MAGIC) + 4 + 8
ALGORITHM = "AES-256-GCM-STREAM"
SUFFIX = ".aes"


class CryptoError(LocksmithError):
    """A key is unusable or a ciphertext does not authenticate."""


def parse_key(text, source):
    """32 key bytes from raw bytes, 64 hex characters or base64; ``source`` names the option in errors."""
    if isinstance(text, bytes) and len(text) == 32:
        return text
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = (text or "").strip()
    key = None
    if len(text) == 64:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = None
    if key is None:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != 32:
        raise CryptoError(
            "%s must hold a 256-bit key: 32 raw bytes, 64 hex characters or base64 of 32 bytes "
            "(e.g. `openssl rand -hex 32`)" % source
        )
    return key


MAX_KEY_FILE_BYTES = 1024


def load_key(key=None, key_file=None, warnings=None):
    """The key from ``encryption_key`` or ``encryption_key_file``, or None when neither is set.

    A key file others can read or write is refused (anyone on the host could read every backup, or swap the key),
    as the file secrets backend refuses its file; one only a group can read (root:backup 0640) is warned about.
    """
    # Set but empty (a template that rendered nothing) is an error, not a request for unencrypted backups.
    if key is not None:
        return parse_key(key, "encryption_key")
    if key_file is not None:
        try:
            # A regular file only: a FIFO would block the run forever.
            with open_regular(key_file, "encryption_key_file") as handle:
                # The mode of the file read, not of whatever is at the path a moment before.
                mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
                # A key is at most 64 hex characters and a newline; never read a large file whole.
                data = handle.read(MAX_KEY_FILE_BYTES + 1)
        except PathError as err:
            raise CryptoError(
                "encryption_key_file '%s' cannot be read (%s); check the path and its permissions"
                % (key_file, err.reason)
            ) from err
        if len(data) > MAX_KEY_FILE_BYTES:
            raise CryptoError(
                "encryption_key_file '%s' holds more than %d bytes, more than any key; point it at the file that "
                "holds only the key (32 raw bytes, 64 hex characters or base64)" % (key_file, MAX_KEY_FILE_BYTES)
            )
        if mode & 0o007:
            raise CryptoError(
                "encryption_key_file '%s' is readable or writable by others (mode %04o); run `chmod 600 %s` and "
                "give it to the user that runs the backup" % (key_file, mode, key_file)
            )
        if mode & 0o070 and warnings is not None:
            warnings.append(
                "encryption_key_file '%s' is open to its group (mode %04o); unless that group is meant to read "
                "every backup, run `chmod 600 %s`" % (key_file, mode, key_file)
            )
        return parse_key(data, "encryption_key_file '%s'" % key_file)
    return None


def key_id(key):
    """A public name for a key (HMAC of a fixed label), to pick the right key at restore time."""
    return hmac.new(key, b"locksmith.ops backup key id", hashlib.sha256).hexdigest()[:16]


def _aad(header, index, final):
    return header + struct.pack(">IB", index, 1 if final else 0)


class Encryptor:
    """feed() plaintext, get ciphertext; finish() seals the final chunk."""

    def __init__(self, key, chunk=CHUNK):
        self._aead = AESGCM(key)
        self._chunk = chunk
        self._prefix = os.urandom(8)
        self._header = MAGIC + struct.pack(">I", chunk) + self._prefix
        self._buffer = bytearray()
        self._index = 0
        self._started = False

    def _seal(self, data, final):
        nonce = self._prefix + struct.pack(">I", self._index)
        out = self._aead.encrypt(nonce, bytes(data), _aad(self._header, self._index, final))
        self._index += 1
        return out

    def feed(self, data):
        out = []
        if not self._started:
            out.append(self._header)
            self._started = True
        self._buffer += data
        # Keep at least one byte back: the last chunk must be sealed as final.
        while len(self._buffer) > self._chunk:
            out.append(self._seal(self._buffer[: self._chunk], False))
            del self._buffer[: self._chunk]
        return b"".join(out)

    def finish(self):
        head = self.feed(b"") if not self._started else b""
        tail = self._seal(self._buffer, True)
        self._buffer = bytearray()
        return head + tail


class Decryptor:
    """feed() ciphertext, get authenticated plaintext; finish() fails on a truncated stream."""

    def __init__(self, key):
        self._aead = AESGCM(key)
        self._buffer = bytearray()
        self._header = None
        self._chunk = None
        self._index = 0

    def _open(self, data, final):
        nonce = self._header[len(MAGIC) + 4 :] + struct.pack(">I", self._index)
        try:
            out = self._aead.decrypt(nonce, bytes(data), _aad(self._header, self._index, final))
        except InvalidTag as err:
            raise CryptoError(
                "encrypted chunk %d does not authenticate: wrong key, or the backup was altered or truncated"
                % self._index
            ) from err
        self._index += 1
        return out

    def feed(self, data):
        self._buffer += data
        if self._header is None:
            if len(self._buffer) < HEADER_LEN:
                return b""
            if bytes(self._buffer[: len(MAGIC)]) != MAGIC:
                raise CryptoError("not a locksmith encrypted stream (bad magic); is this artefact encrypted?")
            self._header = bytes(self._buffer[:HEADER_LEN])
            self._chunk = struct.unpack(">I", self._header[len(MAGIC) : len(MAGIC) + 4])[0]
            del self._buffer[:HEADER_LEN]
        out = []
        sealed = self._chunk + TAG
        while len(self._buffer) > sealed:
            out.append(self._open(self._buffer[:sealed], False))
            del self._buffer[:sealed]
        return b"".join(out)

    def finish(self):
        if self._header is None or len(self._buffer) < TAG:
            raise CryptoError("encrypted stream is truncated: the final chunk is missing")
        out = self._open(self._buffer, True)
        self._buffer = bytearray()
        return out
