"""tls_check against misbehaving peers on 127.0.0.1: servers that answer too slowly to ever finish, send HSTS
headers browsers ignore, redirect off the host, or carry an internationalised name."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _tls_probe
from tests.harness.ansible import run_module_inprocess
from tests.harness.tls import Issued

GOOD_HEADERS = (
    b"X-Content-Type-Options: nosniff\r\nContent-Security-Policy: frame-ancestors 'none'\r\n"
    b"Referrer-Policy: no-referrer\r\nContent-Length: 0\r\n"
)


class RawPeer:
    """A TCP listener running ``session(conn)`` for each connection in a daemon thread; stop() closes all."""

    def __init__(self, session, tls: ssl.SSLContext | None = None):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.session, self.tls = session, tls
        self.stopping = threading.Event()
        self.conns: list = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn = self.listener.accept()[0]
            except TimeoutError:
                continue
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        conn.settimeout(30)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                conn.recv(4096)  # the GET
            self.session(conn, self.stopping)
        except OSError:
            pass

    def stop(self):
        self.stopping.set()
        self.thread.join()
        self.listener.close()
        for conn in self.conns:
            conn.close()


def _dribble(prefix: bytes):
    """Send ``prefix``, then one byte every 0.3 s for about 18 s: each read gets data well inside the timeout."""

    def session(conn, stopping):
        conn.sendall(prefix)
        for _i in range(60):
            if stopping.wait(0.3):
                return
            conn.sendall(b"X")

    return session


def _answer(response: bytes, read_first: bool = False):
    def session(conn, stopping):
        if read_first:
            conn.recv(4096)
        conn.sendall(response)
        stopping.wait(5)

    return session


def _silent(conn, stopping):
    stopping.wait(30)


@pytest.fixture
def raw_peers():
    """Start RawPeer(session, tls) listeners; all stopped after the test."""
    started: list = []

    def start(session, tls=None):
        started.append(RawPeer(session, tls))
        return started[-1].port

    yield start
    for peer in started:
        peer.stop()


@pytest.fixture
def server_tls(cert_factory):
    issued = cert_factory.leaf()
    chain = issued.cert_path.with_suffix(".fullchain.pem")
    chain.write_bytes(issued.cert_path.read_bytes() + issued.chain_path.read_bytes())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, issued.key_path)
    return ctx


def _run(cert_factory, endpoints, **args):
    params = {"endpoints": endpoints, "ca_file": str(cert_factory.ca_file), "fail_on": "never", **args}
    return {e["name"]: e for e in run_module_inprocess("tls_check", params)["endpoints"]}


def _codes(endpoint):
    return sorted(p["code"] for p in endpoint["problems"])


def test_slow_peers_are_cut_at_the_timeout(cert_factory, raw_peers, server_tls):
    # Each read used to get the full timeout, so a peer sending a byte every 0.3 s held the run for as long as
    # it kept sending (an SMTP greeting up to 64 KiB, an HTTP header line up to 64 KiB: hours).
    endpoints = [
        dict(name="smtp_dribble", host="127.0.0.1", port=raw_peers(_dribble(b"2")), starttls="smtp"),
        dict(name="pg_silent", host="127.0.0.1", port=raw_peers(_silent), starttls="postgres"),
        dict(
            name="https_dribble",
            host="127.0.0.1",
            port=raw_peers(_dribble(b"HTTP/1.1 200 OK\r\n"), tls=server_tls),
            server_name="localhost",
            http_checks=True,
            http_redirect_port=raw_peers(_dribble(b"HTTP/1.1 301 Moved\r\n")),
        ),
    ]
    started = time.monotonic()
    got = _run(cert_factory, endpoints, timeout=1.0)
    assert time.monotonic() - started < 8
    assert _codes(got["smtp_dribble"]) == ["timeout"], got["smtp_dribble"]["problems"]
    assert "smtp preamble took longer than 1.0s" in got["smtp_dribble"]["problems"][0]["message"]
    # A PostgreSQL port that never answers SSLRequest timed out too, but was reported as tls_not_offered.
    assert _codes(got["pg_silent"]) == ["timeout"]
    https = got["https_dribble"]
    assert https["protocol"] == "TLSv1.3"  # the handshake completed; only the HTTP checks gave up
    assert "timed out" in https["http"]["error"] and "timed out" in https["http"]["redirect"]["error"]
    assert "http_check_failed" in _codes(https) and "http_not_redirected" in _codes(https)
    for endpoint in got.values():
        assert endpoint["duration_seconds"] < 4, endpoint


def test_hsts_and_redirect_are_judged_as_browsers_do(cert_factory, raw_peers, server_tls):
    def https(hsts: bytes):
        return raw_peers(_answer(b"HTTP/1.1 200 OK\r\n" + hsts + GOOD_HEADERS + b"\r\n"), tls=server_tls)

    def redirect(location: bytes):
        return raw_peers(_answer(b"HTTP/1.1 301 Moved\r\nLocation: " + location + b"\r\n\r\n", read_first=True))

    good = b"Strict-Transport-Security: max-age=31536000\r\n"
    cases = {
        # A browser obeys only the first Strict-Transport-Security header (RFC 6797 8.1); max-age=0 clears HSTS.
        "first_clears": (https(b"Strict-Transport-Security: max-age=0\r\n" + good), redirect(b"https://localhost/")),
        # An invalid max-age makes browsers ignore the header whole (RFC 6797 6.1).
        "junk_max_age": (https(b"Strict-Transport-Security: max-age=31536000x\r\n"), redirect(b"https://localhost/")),
        # A first redirect to another host never lets this name set HSTS (hstspreload.org, Observatory).
        "off_host": (https(good), redirect(b"https://evil.example/")),
        "good": (https(good), redirect(b"https://LOCALHOST:8443/next")),
    }
    endpoints = [
        dict(
            name=name,
            host="127.0.0.1",
            port=tls_port,
            server_name="localhost",
            http_checks=True,
            **{"http_redirect_port": plain_port},
        )
        for name, (tls_port, plain_port) in cases.items()
    ]
    got = _run(cert_factory, endpoints)
    assert {name: _codes(e) for name, e in got.items()} == {
        "first_clears": ["hsts_max_age_short"],
        "junk_max_age": ["hsts_max_age_short"],
        "off_host": ["http_not_redirected"],
        "good": [],
    }
    assert got["first_clears"]["http"]["hsts"]["max_age_seconds"] == 0
    assert got["junk_max_age"]["http"]["hsts"]["max_age_seconds"] is None
    assert "browsers ignore it" in got["junk_max_age"]["problems"][0]["message"]
    assert got["off_host"]["http"]["redirect"]["redirects_to_https"] is False


def test_internationalised_server_name_matches_its_a_label(cert_factory, tls_peer):
    # A U-label server_name was compared with the certificate's A-label SAN (false hostname_mismatch), and one
    # outside Latin-1 raised UnicodeEncodeError out of the module when building the Host header.
    peer = tls_peer(cert_factory.leaf("xn--bcher-kva.example", sans=("xn--bcher-kva.example", "xn--e1afmkfd.example")))
    endpoints = [
        dict(
            name=name,
            host="127.0.0.1",
            port=peer.port,
            server_name=server_name,
            http_checks=True,
            **{"http_redirect_port": 0},
        )
        for name, server_name in (("latin", "bücher.example"), ("cyrillic", "пример.example"))
    ]
    got = _run(cert_factory, endpoints)
    for endpoint in got.values():
        assert endpoint["hostname_match"] is True and endpoint["chain"]["trusted"] is True, endpoint["problems"]
        assert "hostname_mismatch" not in _codes(endpoint) and endpoint["http"]["status"] == 200
    assert got["cyrillic"]["server_name"] == "xn--e1afmkfd.example"


def _picks(suite: int):
    """A peer that reads the ClientHello and answers with a ServerHello choosing ``suite`` when it is offered,
    else a handshake_failure alert: a server with suites this machine's OpenSSL no longer builds (3DES)."""

    def session(conn, stopping):
        body = conn.recv(65536)[9:]  # record header (5), handshake header (4)
        pos = 35 + body[34]  # version, random, session id
        count = int.from_bytes(body[pos : pos + 2], "big") // 2
        offered = [int.from_bytes(body[pos + 2 + 2 * i : pos + 4 + 2 * i], "big") for i in range(count)]
        if suite in offered:
            hello = b"\x03\x03" + bytes(32) + b"\x00" + suite.to_bytes(2, "big") + b"\x00"
            message = b"\x02" + len(hello).to_bytes(3, "big") + hello
            conn.sendall(b"\x16\x03\x03" + len(message).to_bytes(2, "big") + message)
        else:
            conn.sendall(b"\x15\x03\x03\x00\x02\x02\x28")
        stopping.wait(5)

    return session


def test_weak_suites_are_offered_even_those_the_local_openssl_lacks(raw_peers):
    def probe(port):
        return _tls_probe.weak_cipher(_tls_probe.Target("127.0.0.1", port, "localhost", timeout=3))

    assert probe(raw_peers(_picks(0x000A))) == "DES-CBC3-SHA"
    assert probe(raw_peers(_picks(0x0005))) == "RC4-SHA"
    assert probe(raw_peers(_picks(0x0003))) == "EXP-RC4-MD5"
    assert probe(raw_peers(_picks(0xC02F))) is None  # only a modern suite: the alert is a refusal
    started = time.monotonic()
    assert probe(raw_peers(lambda conn, stopping: conn.close())) is None
    assert probe(raw_peers(_silent)) is None  # no answer: the timeout ends it, nothing is claimed
    assert time.monotonic() - started < 8


def test_fully_qualified_server_name_with_its_trailing_dot(cert_factory, tls_peer):
    # 'localhost.' (an absolute name, as DNS zone files and resolv.conf write them) made cryptography's verifier
    # raise ValueError('invalid domain name') out of the module: a traceback instead of results for every endpoint.
    peer = tls_peer(cert_factory.leaf())
    endpoints = [
        dict(
            name=name, host="127.0.0.1", port=peer.port, server_name=server_name, http_checks=True, http_redirect_port=0
        )
        for name, server_name in (("absolute", "localhost."), ("absolute_upper", "LOCALHOST."))
    ]
    got = _run(cert_factory, endpoints)
    for endpoint in got.values():
        # s_server -www sends no security headers: those warnings are all there is.
        assert endpoint["status"] == "warning" and "hsts_missing" in _codes(endpoint), endpoint["problems"]
        assert not {"chain_invalid", "hostname_mismatch"} & set(_codes(endpoint))
        assert endpoint["hostname_match"] is True and endpoint["chain"]["trusted"] is True
        assert endpoint["http"]["status"] == 200


def test_names_with_underscores_are_judged_not_raised(cert_factory, tls_peer):
    # An underscore (common in internal host names; a private CA issues them) made cryptography's verifier raise
    # ValueError('invalid domain name') out of the module, for a name the leaf carries or one its wildcard covers.
    peer = tls_peer(cert_factory.leaf("db_primary.internal", sans=("db_primary.internal", "*.apps.internal")))
    endpoints = [
        dict(name=name, host="127.0.0.1", port=peer.port, server_name=server_name)
        for name, server_name in (("exact", "db_primary.internal"), ("wildcard", "web_1.apps.internal"))
    ]
    got = _run(cert_factory, endpoints)
    for endpoint in got.values():
        assert endpoint["status"] == "ok", endpoint["problems"]
        assert endpoint["hostname_match"] is True and endpoint["chain"]["trusted"] is True


def test_self_signed_certificate_pinned_in_ca_file_is_trusted(cert_factory, tls_peer, tmp_path):
    # `openssl req -x509` (PostgreSQL's documented way to make server.crt) sets basicConstraints cA. Pinned in
    # ca_file, as the self_signed hint says, OpenSSL, libpq and Python trust it, but tls_check still reported
    # self_signed: cryptography's WebPKI verifier refuses cA in a leaf.
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    argv = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=localhost"
    argv += " -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout %s -out %s" % (key, cert)
    subprocess.run(argv.split(), check=True, capture_output=True)
    peer = tls_peer(Issued(cert=None, key=None, cert_path=cert, key_path=key))
    endpoint = _run(cert_factory, [dict(name="pinned", host="127.0.0.1", port=peer.port)], ca_file=str(cert))["pinned"]
    assert endpoint["status"] == "ok", endpoint["problems"]
    assert endpoint["chain"]["trusted"] is True and endpoint["chain"]["verified_path"] == ["CN=localhost"]
    with socket.create_connection(("127.0.0.1", peer.port)) as raw:  # an independent client agrees
        with ssl.create_default_context(cafile=str(cert)).wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version()
    # Not pinned, it is still self-signed.
    assert _codes(_run(cert_factory, [dict(name="not_pinned", host="127.0.0.1", port=peer.port)])["not_pinned"]) == [
        "self_signed"
    ]


@pytest.mark.parametrize(
    "extension",
    ["extendedKeyUsage=clientAuth", "keyUsage=critical,keyCertSign,cRLSign"],
    ids=["client_auth_only", "no_signing_key_usage"],
)
def test_pinned_self_signed_certificate_not_meant_for_servers_is_not_trusted(
    cert_factory, tls_peer, tmp_path, extension
):
    # Pinned in ca_file, a self-signed leaf whose extensions forbid serving TLS is refused by OpenSSL clients
    # ("unsuitable certificate purpose"); tls_check trusted it on any WebPKI refusal.
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    argv = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=localhost"
    argv += " -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext %s -keyout %s -out %s" % (extension, key, cert)
    subprocess.run(argv.split(), check=True, capture_output=True)
    peer = tls_peer(Issued(cert=None, key=None, cert_path=cert, key_path=key))
    with socket.create_connection(("127.0.0.1", peer.port)) as raw:  # an independent client refuses it
        context = ssl.create_default_context(cafile=str(cert))
        with pytest.raises(ssl.SSLCertVerificationError, match=r"(unsuitable|unsupported) certificate purpose"):
            context.wrap_socket(raw, server_hostname="localhost")
    endpoint = _run(cert_factory, [dict(name="pinned", host="127.0.0.1", port=peer.port)], ca_file=str(cert))["pinned"]
    assert endpoint["chain"]["trusted"] is False, endpoint["chain"]
    assert endpoint["status"] != "ok" and "self_signed" in _codes(endpoint), endpoint["problems"]
