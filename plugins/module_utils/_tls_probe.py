# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Network probes for tls_check: connect, STARTTLS preambles, handshakes, protocol and OCSP probes.

Every probe opens its own connection and only reads: no request is made beyond what a TLS client,
a PostgreSQL client asking for SSL, or an SMTP client saying EHLO sends.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import struct
import time
import warnings
from dataclasses import dataclass

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError

PROTOCOLS = ("TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3")
SSL_VERSIONS = {
    "TLSv1.0": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
# Everything OpenSSL still implements: old protocols need SHA-1 and small keys, refused above level 0.
LEGACY_CIPHERS = "ALL:@SECLEVEL=0"
# The suites the OCSP probe offers: what a current TLS 1.2 client sends.
MODERN_SUITES = (0xC02C, 0xC02B, 0xC030, 0xC02F, 0xCCA9, 0xCCA8, 0xC024, 0xC023, 0xC028, 0xC027, 0xC00A, 0xC009)
MODERN_SUITES += (0xC014, 0xC013, 0x009D, 0x009C, 0x003D, 0x003C, 0x0035, 0x002F)
# Suites no server should choose, by code point, with OpenSSL's names. They are offered in a hand-made
# ClientHello, so a server is probed for them whatever the local OpenSSL still builds (Debian's has no
# RC4, DES, 3DES or export suites, so ssl.SSLContext could not offer them).
WEAK_SUITES = {
    0x0001: "NULL-MD5",
    0x0002: "NULL-SHA",
    0x003B: "NULL-SHA256",
    0xC006: "ECDHE-ECDSA-NULL-SHA",
    0xC010: "ECDHE-RSA-NULL-SHA",
    0xC015: "AECDH-NULL-SHA",
    0x0003: "EXP-RC4-MD5",
    0x0006: "EXP-RC2-CBC-MD5",
    0x0008: "EXP-DES-CBC-SHA",
    0x0011: "EXP-DHE-DSS-DES-CBC-SHA",
    0x0014: "EXP-DHE-RSA-DES-CBC-SHA",
    0x0017: "EXP-ADH-RC4-MD5",
    0x0019: "EXP-ADH-DES-CBC-SHA",
    0x0004: "RC4-MD5",
    0x0005: "RC4-SHA",
    0xC007: "ECDHE-ECDSA-RC4-SHA",
    0xC011: "ECDHE-RSA-RC4-SHA",
    0x0018: "ADH-RC4-MD5",
    0x0009: "DES-CBC-SHA",
    0x0012: "DHE-DSS-DES-CBC-SHA",
    0x0015: "DHE-RSA-DES-CBC-SHA",
    0x001A: "ADH-DES-CBC-SHA",
    0x000A: "DES-CBC3-SHA",
    0x0013: "DHE-DSS-DES-CBC3-SHA",
    0x0016: "DHE-RSA-DES-CBC3-SHA",
    0xC008: "ECDHE-ECDSA-DES-CBC3-SHA",
    0xC012: "ECDHE-RSA-DES-CBC3-SHA",
    0x001B: "ADH-DES-CBC3-SHA",
    0x0007: "IDEA-CBC-SHA",
    0x0034: "ADH-AES128-SHA",
    0x003A: "ADH-AES256-SHA",
    0x006C: "ADH-AES128-SHA256",
    0x006D: "ADH-AES256-SHA256",
    0x00A6: "ADH-AES128-GCM-SHA256",
    0x00A7: "ADH-AES256-GCM-SHA384",
    0xC018: "AECDH-AES128-SHA",
    0xC019: "AECDH-AES256-SHA",
}
PG_SSL_REQUEST = struct.pack("!II", 8, 80877103)
PG_PROTOCOL_3 = 196608
MAX_HANDSHAKE_BYTES = 256 * 1024


class ProbeError(LocksmithError):
    """One probe of one endpoint failed; ``code`` is the machine code tls_check reports."""

    def __init__(self, code: str, msg: str):
        super().__init__(msg, code=code)
        self.code = code


@dataclass(frozen=True)
class Target:
    """Where and how to connect: the address, the name to send (SNI) and the STARTTLS dialect."""

    host: str
    port: int
    server_name: str
    starttls: str = "none"
    timeout: float = 10.0

    @property
    def sni(self) -> str | None:
        """The server name to send, or None for an IP address (SNI carries names only)."""
        try:
            ipaddress.ip_address(self.server_name)
        except ValueError:
            return self.server_name
        return None

    def label(self) -> str:
        return "%s:%d" % (self.host, self.port)


def normalize_protocol(name: str | None) -> str | None:
    """Python says 'TLSv1' for TLS 1.0; report every version with its minor number."""
    return "TLSv1.0" if name == "TLSv1" else name


def client_context(min_protocol: str | None = None, exact: str | None = None) -> ssl.SSLContext:
    """A non-verifying client context (trust is judged apart); ``exact`` pins one legacy-permitting version."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # nosec B501 # trust is judged by _tls_cert on the presented chain
    low = exact or min_protocol or "TLSv1.2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # setting TLSv1/1.1 is deprecated, probing them is not
        if PROTOCOLS.index(low) < PROTOCOLS.index("TLSv1.2"):
            ctx.set_ciphers(LEGACY_CIPHERS)
        ctx.minimum_version = SSL_VERSIONS[low]
        if exact:
            ctx.maximum_version = SSL_VERSIONS[exact]
    return ctx


def _connect(target: Target) -> socket.socket:
    try:
        return socket.create_connection((target.host, target.port), timeout=target.timeout)
    except socket.gaierror as err:
        raise ProbeError("name_unresolved", "%s: host name does not resolve (%s)" % (target.label(), err)) from err
    except ConnectionRefusedError as err:
        raise ProbeError("connection_refused", "%s: connection refused" % target.label()) from err
    except TimeoutError as err:
        raise ProbeError("timeout", "%s: no answer within %ss (timeout)" % (target.label(), target.timeout)) from err
    except OSError as err:
        raise ProbeError("connection_failed", "%s: cannot connect (%s)" % (target.label(), err)) from err


def recv_by(sock: socket.socket, size: int, deadline: float) -> bytes:
    """One recv that ends by ``deadline`` (time.monotonic()), however slowly the peer sends: the timeout
    bounds a whole exchange, not each byte of it."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(left)
    return sock.recv(size)


def _recv_exact(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        chunk = recv_by(sock, size - len(data), deadline)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        data += chunk
    return data


def _smtp_reply(sock: socket.socket, deadline: float) -> tuple[int, list[str]]:
    buf = b""
    while True:
        chunk = recv_by(sock, 4096, deadline)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        buf += chunk
        lines = buf.decode("latin-1").split("\r\n")
        complete = [line for line in lines[:-1] if line]
        if complete and len(complete[-1]) >= 4 and complete[-1][3] == " ":
            return int(complete[-1][:3]), complete
        if len(buf) > 65536:
            raise ConnectionError("SMTP reply too long")


def _starttls(sock: socket.socket, target: Target) -> None:
    deadline = time.monotonic() + target.timeout
    if target.starttls == "postgres":
        sock.sendall(PG_SSL_REQUEST)
        answer = _recv_exact(sock, 1, deadline)
        if answer != b"S":
            raise ProbeError(
                "tls_not_offered",
                "%s: PostgreSQL refused SSL (answered %r to SSLRequest); set ssl = on on the server"
                % (target.label(), answer),
            )
    elif target.starttls == "smtp":
        code = _smtp_reply(sock, deadline)[0]
        if code != 220:
            raise ProbeError("tls_not_offered", "%s: SMTP greeting was %d, not 220" % (target.label(), code))
        sock.sendall(b"EHLO locksmith-tls-check\r\n")
        code, lines = _smtp_reply(sock, deadline)
        if code != 250 or not any(line[4:].upper().startswith("STARTTLS") for line in lines):
            raise ProbeError("tls_not_offered", "%s: SMTP server does not offer STARTTLS" % target.label())
        sock.sendall(b"STARTTLS\r\n")
        code = _smtp_reply(sock, deadline)[0]
        if code != 220:
            raise ProbeError("tls_not_offered", "%s: SMTP STARTTLS answered %d, not 220" % (target.label(), code))
    sock.settimeout(target.timeout)


def open_plain(target: Target) -> socket.socket:
    """A connected socket, past the STARTTLS preamble, ready for a ClientHello."""
    sock = _connect(target)
    try:
        _starttls(sock, target)
    except ProbeError:
        sock.close()
        raise
    except TimeoutError as err:
        sock.close()
        raise ProbeError(
            "timeout", "%s: %s preamble took longer than %ss" % (target.label(), target.starttls, target.timeout)
        ) from err
    except OSError as err:
        sock.close()
        raise ProbeError(
            "tls_not_offered", "%s: %s preamble failed (%s)" % (target.label(), target.starttls, err)
        ) from err
    return sock


def _der_chain(tls: ssl.SSLSocket) -> list[bytes]:
    public = getattr(tls, "get_unverified_chain", None)  # Python 3.13+
    if public is not None:  # pragma: no cover - Python 3.13+
        return [bytes(c) if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in public()]
    private = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)  # Python 3.10-3.12
    if private is not None:
        return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in private() or []]
    leaf = tls.getpeercert(binary_form=True)  # pragma: no cover - no chain API at all
    return [leaf] if leaf else []  # pragma: no cover


def handshake(target: Target, ctx: ssl.SSLContext) -> dict:
    """One full handshake: negotiated protocol and cipher, and the chain as presented (DER)."""
    sock = open_plain(target)
    try:
        with ctx.wrap_socket(sock, server_hostname=target.sni) as tls:
            cipher = tls.cipher()
            return {
                "protocol": normalize_protocol(tls.version()),
                "cipher": cipher[0] if cipher else None,
                "chain_der": _der_chain(tls),
            }
    except ssl.SSLError as err:
        raise ProbeError("handshake_failed", "%s: TLS handshake failed (%s)" % (target.label(), err.reason)) from err
    except TimeoutError as err:
        raise ProbeError("timeout", "%s: handshake took longer than %ss" % (target.label(), target.timeout)) from err
    except OSError as err:
        raise ProbeError("handshake_failed", "%s: TLS handshake failed (%s)" % (target.label(), err)) from err
    finally:
        sock.close()


def accepts(target: Target, ctx: ssl.SSLContext) -> tuple[bool | None, dict | None]:
    """(True, handshake) if the server completes a handshake with ``ctx``; (False, None) if it refuses;
    (None, None) when the connection itself fails."""
    try:
        return True, handshake(target, ctx)
    except ProbeError as err:
        return (False, None) if err.code == "handshake_failed" else (None, None)


def _client_hello(sni: str | None, suites=MODERN_SUITES) -> bytes:
    """A TLS 1.2 ClientHello offering ``suites`` and asking for a stapled OCSP response (status_request)."""
    suites = [*suites, 0x00FF]  # the renegotiation SCSV, as every client sends
    ext = b""
    if sni:
        name = sni.encode("idna")
        ext += struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    ext += struct.pack("!HHBHH", 5, 5, 1, 0, 0)
    groups = [29, 23, 24, 25]
    ext += struct.pack("!HHH", 10, 2 + 2 * len(groups), 2 * len(groups)) + struct.pack("!%dH" % len(groups), *groups)
    ext += struct.pack("!HHBB", 11, 2, 1, 0)
    sigalgs = [0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0203, 0x0201]
    ext += struct.pack("!HHH", 13, 2 + 2 * len(sigalgs), 2 * len(sigalgs))
    ext += struct.pack("!%dH" % len(sigalgs), *sigalgs)
    ext += struct.pack("!HH", 23, 0)
    body = struct.pack("!H", 0x0303) + os.urandom(32) + b"\x00"
    body += struct.pack("!H", 2 * len(suites)) + struct.pack("!%dH" % len(suites), *suites) + b"\x01\x00"
    body += struct.pack("!H", len(ext)) + ext
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(message)) + message


def parse_server_flight(data: bytes) -> dict | None:
    """Handshake messages of a TLS 1.2 server flight, up to ServerHelloDone; None on an alert."""
    records, offset = b"", 0
    while offset + 5 <= len(data):
        kind, length = data[offset], struct.unpack("!H", data[offset + 3 : offset + 5])[0]
        if kind == 21:
            return None
        if kind == 22:
            records += data[offset + 5 : offset + 5 + length]
        offset += 5 + length
    found = {"done": False, "chain_der": [], "ocsp_der": None, "cipher_suite": None}
    pos = 0
    while pos + 4 <= len(records):
        msg_type, length = records[pos], int.from_bytes(records[pos + 1 : pos + 4], "big")
        body = records[pos + 4 : pos + 4 + length]
        if len(body) < length:
            break
        if msg_type == 2 and len(body) >= 35 and len(body) >= 37 + body[34]:
            # ServerHello: version (2), random (32), session id (1 + n), then the chosen suite.
            found["cipher_suite"] = int.from_bytes(body[35 + body[34] : 37 + body[34]], "big")
        elif msg_type == 11:
            cpos = 3
            while cpos + 3 <= len(body):
                clen = int.from_bytes(body[cpos : cpos + 3], "big")
                found["chain_der"].append(body[cpos + 3 : cpos + 3 + clen])
                cpos += 3 + clen
        elif msg_type == 22 and body[:1] == b"\x01":
            found["ocsp_der"] = body[4 : 4 + int.from_bytes(body[1:4], "big")]
        elif msg_type == 14:
            found["done"] = True
        pos += 4 + length
    return found


def _server_flight(target: Target, hello: bytes, enough) -> dict | None:
    """Send ``hello`` and read the server's flight until ``enough(flight)``, an alert or the end; None on
    an alert or a failed connection."""
    sock = open_plain(target)
    try:
        sock.sendall(hello)
        data, deadline = b"", time.monotonic() + target.timeout
        while len(data) < MAX_HANDSHAKE_BYTES:
            chunk = recv_by(sock, 65536, deadline)
            if not chunk:
                break
            data += chunk
            flight = parse_server_flight(data)
            if flight is None or enough(flight):
                return flight
        return parse_server_flight(data)
    except OSError:
        return None
    finally:
        sock.close()


def ocsp_staple(target: Target) -> dict | None:
    """The server's TLS 1.2 flight for a ClientHello with status_request; None if it will not speak 1.2."""
    return _server_flight(target, _client_hello(target.sni), lambda flight: flight["done"])


def weak_cipher(target: Target) -> str | None:
    """The suite the server chooses from a ClientHello offering only WEAK_SUITES, or None when it refuses them
    all (a handshake alert, or no ServerHello)."""
    flight = _server_flight(
        target, _client_hello(target.sni, WEAK_SUITES), lambda flight: flight["cipher_suite"] is not None
    )
    if not flight or flight["cipher_suite"] is None:
        return None
    suite = int(flight["cipher_suite"])
    return WEAK_SUITES.get(suite, "0x%04X" % suite)


def postgres_accepts_plaintext(target: Target, user: str) -> tuple[bool | None, str]:
    """Whether PostgreSQL goes on to authentication for a client that never asked for SSL."""
    sock = _connect(target)
    deadline = time.monotonic() + target.timeout
    try:
        params = b"user\x00" + user.encode("utf-8") + b"\x00\x00"
        sock.sendall(struct.pack("!II", 8 + len(params), PG_PROTOCOL_3) + params)
        kind = _recv_exact(sock, 1, deadline)
        length = struct.unpack("!I", _recv_exact(sock, 4, deadline))[0]
        body = _recv_exact(sock, max(0, min(length - 4, 8192)), deadline)
        if kind in (b"R", b"v"):
            sock.sendall(b"X" + struct.pack("!I", 4))
            return True, "the server went on to authentication without SSL"
        fields = dict((f[:1], f[1:].decode("utf-8", "replace")) for f in body.split(b"\x00") if f)
        return False, fields.get(b"M", "refused")
    except OSError as err:
        return None, "plaintext probe failed (%s)" % err
    finally:
        sock.close()
