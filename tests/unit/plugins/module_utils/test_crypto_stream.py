from __future__ import annotations

import base64
import os

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _crypto_stream as cs

KEY = bytes(range(32))


def encrypt(data, chunk=64, pieces=7):
    enc = cs.Encryptor(KEY, chunk=chunk)
    out = b"".join(enc.feed(data[i : i + pieces]) for i in range(0, len(data), pieces))
    return out + enc.finish()


def decrypt(blob, key=KEY, pieces=11):
    dec = cs.Decryptor(key)
    out = b"".join(dec.feed(blob[i : i + pieces]) for i in range(0, len(blob), pieces))
    return out + dec.finish()


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128, 1000])
def test_round_trip_any_size_and_any_feed_pattern(size):
    data = os.urandom(size)
    assert decrypt(encrypt(data)) == data


def test_nonces_differ_between_streams():
    assert encrypt(b"same") != encrypt(b"same")


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:-1], "does not authenticate"),
        (lambda b: b[: cs.HEADER_LEN + 64 + cs.TAG], "does not authenticate"),
        (lambda b: b[: cs.HEADER_LEN], "truncated"),
        (lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], "does not authenticate"),
        (lambda b: b"XXXXXXXX" + b[8:], "bad magic"),
    ],
)
def test_tampering_and_truncation_fail(mangle, message):
    blob = encrypt(os.urandom(200))
    with pytest.raises(cs.CryptoError, match=message):
        decrypt(mangle(blob))


def test_wrong_key_fails():
    with pytest.raises(cs.CryptoError, match="wrong key"):
        decrypt(encrypt(b"secret data"), key=bytes(32))


def test_dropping_a_whole_middle_chunk_fails():
    blob = encrypt(os.urandom(64 * 3))
    sealed = 64 + cs.TAG
    cut = blob[: cs.HEADER_LEN + sealed] + blob[cs.HEADER_LEN + 2 * sealed :]
    with pytest.raises(cs.CryptoError, match="chunk 1"):
        decrypt(cut)


@pytest.mark.parametrize("text", ["ab" * 32, base64.b64encode(KEY).decode(), KEY])
def test_key_forms(text):
    assert len(cs.parse_key(text, "encryption_key")) == 32


@pytest.mark.parametrize("text", ["", "short", "zz" * 32, base64.b64encode(b"x" * 16).decode(), b"\xff" * 31])
def test_bad_keys_name_the_option_and_the_fix(text):
    with pytest.raises(cs.CryptoError, match=r"encryption_key must hold a 256-bit key.*openssl rand"):
        cs.parse_key(text, "encryption_key")


def test_key_file(tmp_path):
    path = tmp_path / "k"
    path.write_bytes(KEY)
    path.chmod(0o600)
    assert cs.load_key(key_file=str(path)) == KEY
    assert cs.load_key() is None
    with pytest.raises(cs.CryptoError, match="cannot be read"):
        cs.load_key(key_file=str(tmp_path / "missing"))
    (tmp_path / "hex").write_text(KEY.hex() + "\n")
    (tmp_path / "hex").chmod(0o600)
    assert cs.load_key(key_file=str(tmp_path / "hex")) == KEY
    # /dev/zero was read whole (memory exhausted); a file larger than any key is refused after 1 KiB.
    (tmp_path / "big").write_bytes(b"a" * 5000)
    (tmp_path / "big").chmod(0o600)
    with pytest.raises(cs.CryptoError, match="holds more than 1024 bytes, more than any key"):
        cs.load_key(key_file=str(tmp_path / "big"))
    # A device or a FIFO is never read at all (a FIFO blocked the run forever).
    with pytest.raises(cs.CryptoError, match=r"'/dev/zero' cannot be read \(a device, not a regular file\)"):
        cs.load_key(key_file="/dev/zero")


@pytest.mark.parametrize("option", ["key", "key_file"])
def test_an_empty_key_or_key_file_is_an_error_not_unencrypted(option):
    with pytest.raises(cs.CryptoError, match="encryption_key"):
        cs.load_key(**{option: ""})


def test_key_file_others_may_read_is_refused_and_one_a_group_may_read_is_warned(tmp_path):
    path = tmp_path / "k"
    path.write_text(KEY.hex())
    for mode in (0o644, 0o602):
        path.chmod(mode)
        with pytest.raises(cs.CryptoError, match=r"readable or writable by others \(mode %04o\).*chmod 600" % mode):
            cs.load_key(key_file=str(path), warnings=[])
    path.chmod(0o640)
    warnings = []
    assert cs.load_key(key_file=str(path), warnings=warnings) == KEY
    assert len(warnings) == 1 and str(path) in warnings[0] and "chmod 600" in warnings[0]
    path.chmod(0o400)
    warnings = []
    assert cs.load_key(key_file=str(path), warnings=warnings) == KEY and not warnings


def test_key_id_is_stable_and_reveals_nothing():
    assert cs.key_id(KEY) == cs.key_id(KEY) and KEY.hex()[:16] != cs.key_id(KEY) and len(cs.key_id(KEY)) == 16
