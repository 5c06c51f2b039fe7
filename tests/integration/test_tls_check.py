"""tls_check against real peers: openssl s_server, PostgreSQL 15 with and without SSL, a Python SMTP
STARTTLS server and Python HTTP(S) servers, plus the tls_audit.yml playbook posting to a local webhook."""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import json
import os
import pwd
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics
from tests.harness.ansible import REPO, run_module_inprocess, run_playbook
from tests.harness.postgres import PostgresCluster
from tests.harness.tls import TLSPeer

UTC = datetime.UTC


# ---- peers ------------------------------------------------------------------------------------
def _ocsp_response(cert_factory, issued) -> Path:
    """A 'good' OCSP response for ``issued``, signed by the intermediate, for s_server -status_file."""
    now = datetime.datetime.now(UTC)
    inter = cert_factory.intermediate
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=issued.cert,
            issuer=inter.cert,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + datetime.timedelta(days=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, inter.cert)
        .sign(inter.key, hashes.SHA256())
    )
    path = issued.cert_path.with_suffix(".ocsp.der")
    path.write_bytes(response.public_bytes(serialization.Encoding.DER))
    return path


@pytest.fixture(scope="module")
def peers(cert_factory):
    """One s_server per defect; started once for the whole file."""
    f = cert_factory
    stapled = f.leaf()
    specs = {
        "valid": (f.leaf(), {}),
        "expired": (f.leaf(expired=True), {}),
        "self_signed": (f.leaf(self_signed=True), {}),
        "mismatch": (f.leaf("other.example", sans=("other.example",)), {}),
        "days10": (f.leaf(days=10), {}),
        "days3": (f.leaf(days=3), {}),
        "legacy_only": (f.leaf(), {"legacy_only": True}),
        # The leaf alone, without -cert_chain: clients cannot build the path to the root.
        "missing_intermediate": (dataclasses.replace(f.leaf(), chain_path=None), {}),
        "legacy_too": (f.leaf(), {"extra_args": ("-cipher", "DEFAULT:@SECLEVEL=0")}),
        "stapled": (stapled, {"extra_args": ("-status_file", str(_ocsp_response(f, stapled)))}),
        "weak": (
            f.leaf(key_kind="rsa1024"),
            {"extra_args": ("-cipher", "DEFAULT:@SECLEVEL=0", "-no_tls1", "-no_tls1_1")},
        ),
        # Every suite OpenSSL has, with (or without) NULL encryption: an ordinary client still gets a modern
        # one, the weak ones are there for who asks. ('!' in DEFAULT would remove NULL for good.)
        "null_cipher": (
            f.leaf(),
            {"extra_args": ("-cipher", "ALL:eNULL:!aNULL:@SECLEVEL=0", "-no_tls1", "-no_tls1_1")},
        ),
        "anonymous_cipher": (f.leaf(), {"extra_args": ("-cipher", "ALL:!eNULL:@SECLEVEL=0", "-no_tls1", "-no_tls1_1")}),
    }
    started = {name: TLSPeer(issued, **kw).start() for name, (issued, kw) in specs.items()}
    yield started
    for peer in started.values():
        peer.stop()


def _ssl_cluster(cert_factory, *, ssl_on: bool) -> PostgresCluster:
    """A PostgreSQL of our own: with ssl_on, SSL on (postgresql.auto.conf) and pg_hba allowing hostssl only."""
    cluster = PostgresCluster().start()
    if ssl_on:
        issued = cert_factory.leaf()
        pg = pwd.getpwnam("postgres")
        cert = cluster.datadir / "server.crt"
        key = cluster.datadir / "server.key"
        cert.write_bytes(issued.cert_path.read_bytes() + issued.chain_path.read_bytes())
        key.write_bytes(issued.key_path.read_bytes())
        for path in (cert, key):
            os.chown(path, pg.pw_uid, pg.pw_gid)
        key.chmod(0o600)
        cluster.query("ALTER SYSTEM SET ssl = on")
        cluster.query("ALTER SYSTEM SET ssl_cert_file = %s", (str(cert),))
        cluster.query("ALTER SYSTEM SET ssl_key_file = %s", (str(key),))
        (cluster.datadir / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
        )
        cluster.query("SELECT pg_reload_conf()")
    return cluster


@pytest.fixture(scope="module")
def pg_pair(cert_factory):
    """Two clusters of our own (the shared pg_cluster is never reconfigured): SSL-only, and SSL off."""
    made: dict = {}

    def start(name, ssl_on):
        made[name] = _ssl_cluster(cert_factory, ssl_on=ssl_on)

    threads = [threading.Thread(target=start, args=a) for a in (("ssl", True), ("plain", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    yield made
    for cluster in made.values():
        cluster.stop()


class _Server(threading.Thread):
    """A socketserver in a daemon thread; stop() shuts it down."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server = server
        self.port = server.server_address[1]

    def run(self):
        self.server.serve_forever(poll_interval=0.05)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _server_ctx(issued) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    chain = issued.cert_path.with_suffix(".fullchain.pem")
    chain.write_bytes(issued.cert_path.read_bytes() + (issued.chain_path.read_bytes() if issued.chain_path else b""))
    ctx.load_cert_chain(chain, issued.key_path)
    return ctx


def _handler(headers: dict, status: int = 200):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value.replace("HOST", self.headers.get("Host", "")))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    return Handler


def _https(issued, headers) -> _Server:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(headers))
    server.socket = _server_ctx(issued).wrap_socket(server.socket, server_side=True)
    return _Server(server)


GOOD_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


@pytest.fixture(scope="module")
def web(cert_factory):
    """HTTPS servers with and without the security headers, and port-80 stand-ins that do or do not redirect."""
    servers = {
        "good": _https(cert_factory.leaf(), GOOD_HEADERS),
        "bare": _https(cert_factory.leaf(), {"Strict-Transport-Security": "max-age=600"}),
        "redirect": _Server(
            http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler({"Location": "https://HOST/"}, status=301))
        ),
        "no_redirect": _Server(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler({}))),
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


def _smtp_session(conn: socket.socket, ctx: ssl.SSLContext, offer_tls: bool) -> None:
    with conn:
        conn.sendall(b"220 mail.test ESMTP\r\n")
        conn.recv(1024)  # EHLO
        conn.sendall(b"250-mail.test\r\n" + (b"250-STARTTLS\r\n" if offer_tls else b"") + b"250 SIZE 1000\r\n")
        if not offer_tls:
            return
        conn.recv(1024)  # STARTTLS
        conn.sendall(b"220 go ahead\r\n")
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass


@pytest.fixture(scope="module")
def smtp(cert_factory):
    """Minimal SMTP servers: one offering STARTTLS, one not."""
    ctx = _server_ctx(cert_factory.leaf())
    listeners, stop = {}, threading.Event()

    def serve(sock, offer_tls):
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn = sock.accept()[0]
            except TimeoutError:
                continue
            conn.settimeout(5)
            threading.Thread(target=_smtp_session, args=(conn, ctx, offer_tls), daemon=True).start()

    threads = []
    for name, offer in (("starttls", True), ("plain", False)):
        sock = socket.create_server(("127.0.0.1", 0))
        listeners[name] = sock
        threads.append(threading.Thread(target=serve, args=(sock, offer), daemon=True))
        threads[-1].start()
    yield {name: sock.getsockname()[1] for name, sock in listeners.items()}
    stop.set()
    for thread in threads:
        thread.join()
    for sock in listeners.values():
        sock.close()


# ---- helpers ----------------------------------------------------------------------------------
def _ep(name, port, **kw):
    return dict(name=name, host="127.0.0.1", port=port, **kw)


def _by_name(result):
    return {e["name"]: e for e in result["endpoints"]}


def _codes(endpoint):
    return sorted(p["code"] for p in endpoint["problems"])


# ---- the defects --------------------------------------------------------------------------------
def test_each_peer_gets_its_status_and_codes(cert_factory, peers):
    endpoints = [_ep(name, peer.port) for name, peer in peers.items()]
    endpoints.append(_ep("name_mismatch", peers["valid"].port, server_name="www.example.org"))
    result = run_module_inprocess(
        "tls_check", {"endpoints": endpoints, "ca_file": str(cert_factory.ca_file), "fail_on": "never"}
    )
    got = _by_name(result)
    expected = {
        "valid": ("ok", []),
        "expired": ("critical", ["cert_expired"]),
        "self_signed": ("critical", ["self_signed"]),
        "mismatch": ("critical", ["hostname_mismatch"]),
        "name_mismatch": ("critical", ["hostname_mismatch"]),
        "days10": ("warning", ["cert_expiring"]),
        "days3": ("critical", ["cert_expiring"]),
        "legacy_only": ("critical", ["protocol_below_minimum"]),
        "missing_intermediate": ("critical", ["chain_incomplete"]),
        "legacy_too": ("warning", ["legacy_protocol_accepted"]),
        "stapled": ("ok", []),
        "weak": ("warning", ["weak_key"]),
        "null_cipher": ("critical", ["weak_cipher_accepted"]),
        "anonymous_cipher": ("critical", ["weak_cipher_accepted"]),
    }
    assert {n: (e["status"], _codes(e)) for n, e in got.items()} == expected
    assert result["changed"] is False
    assert result["summary"] == {"total": 14, "ok": 2, "warning": 3, "critical": 9}
    assert got["null_cipher"]["weak_cipher"] == "ECDHE-ECDSA-NULL-SHA"  # the leaf is EC
    assert "no encryption at all" in got["null_cipher"]["problems"][0]["message"]
    assert got["anonymous_cipher"]["weak_cipher"] == "ADH-AES128-SHA"
    assert "no server authentication" in got["anonymous_cipher"]["problems"][0]["message"]
    # An ordinary client still gets a modern suite from both.
    assert got["null_cipher"]["cipher"] == got["anonymous_cipher"]["cipher"] == "TLS_AES_256_GCM_SHA384"
    assert all(e["weak_cipher"] is None for n, e in got.items() if not n.endswith("_cipher")), got
    assert result["failing"] == []

    valid = got["valid"]
    issued_serial = None
    with socket.create_connection(("127.0.0.1", peers["valid"].port)) as raw:
        ctx = ssl.create_default_context(cafile=str(cert_factory.ca_file))
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:  # an independent, verifying client
            der = tls.getpeercert(binary_form=True)
            issued_serial = "%x" % x509.load_der_x509_certificate(der).serial_number
            assert valid["protocol"] == tls.version() and valid["cipher"] == tls.cipher()[0]
    assert valid["certificate"]["serial"] == issued_serial
    assert valid["certificate"]["key_type"] == "EC" and valid["certificate"]["key_size"] == 256
    assert valid["certificate"]["signature_algorithm"] == "ecdsa-with-SHA256"
    assert valid["certificate"]["subject_alt_names"] == ["localhost", "127.0.0.1"]
    assert 88 <= valid["certificate"]["days_left"] <= 90
    assert valid["chain"]["trusted"] and len(valid["chain"]["presented"]) == 2
    assert valid["chain"]["verified_path"][-1] == "CN=locksmith test root,O=locksmith tests"
    assert valid["protocols_below_minimum"] == {"TLSv1.0": False, "TLSv1.1": False}
    assert valid["ocsp_stapled"] is False
    assert got["stapled"]["ocsp_stapled"] is True
    assert got["stapled"]["ocsp"]["cert_status"] == "good"
    assert got["legacy_only"]["protocol"] == "TLSv1.1"
    assert got["legacy_only"]["protocols_below_minimum"] == {"TLSv1.0": True, "TLSv1.1": True}
    assert got["legacy_too"]["protocol"] == "TLSv1.3"
    assert got["missing_intermediate"]["chain"]["trusted"] is False
    assert len(got["missing_intermediate"]["chain"]["presented"]) == 1
    assert 8 <= got["days10"]["certificate"]["days_left"] <= 10
    assert "www.example.org" in got["name_mismatch"]["problems"][0]["message"]


def test_weak_cipher_check_can_be_turned_off(cert_factory, peers):
    params = {"endpoints": [_ep("null", peers["null_cipher"].port)], "ca_file": str(cert_factory.ca_file)}
    endpoint = run_module_inprocess("tls_check", dict(params, weak_cipher_check=False))["endpoints"][0]
    assert (endpoint["status"], endpoint["weak_cipher"]) == ("ok", None)


def test_per_endpoint_thresholds_and_min_protocol(cert_factory, peers):
    endpoints = [
        _ep("days10_relaxed", peers["days10"].port, warn_days=5, crit_days=2),
        _ep("valid_strict", peers["valid"].port, warn_days=120, crit_days=100),
        _ep("legacy_too", peers["legacy_too"].port),
    ]
    result = run_module_inprocess(
        "tls_check",
        {"endpoints": endpoints, "ca_file": str(cert_factory.ca_file), "fail_on": "never", "min_protocol": "TLSv1.0"},
    )
    got = _by_name(result)
    assert got["days10_relaxed"]["status"] == "ok"
    assert got["valid_strict"]["status"] == "critical" and _codes(got["valid_strict"]) == ["cert_expiring"]
    assert got["legacy_too"]["status"] == "ok" and got["legacy_too"]["protocols_below_minimum"] == {}


def test_unreachable_endpoints_are_reported_not_raised(cert_factory, peers):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers the ClientHello
    try:
        endpoints = [
            _ep("refused", port),
            _ep("silent", silent.getsockname()[1]),
            dict(name="unresolvable", host="no-such-host.invalid", port=443),
            _ep("valid", peers["valid"].port),
        ]
        result = run_module_inprocess(
            "tls_check", {"endpoints": endpoints, "ca_file": str(cert_factory.ca_file), "timeout": 0.5}
        )
    finally:
        silent.close()
    assert result["failed"] is True
    got = _by_name(result)
    assert _codes(got["refused"]) == ["connection_refused"]
    assert got["refused"]["reachable"] is False
    assert _codes(got["silent"]) == ["timeout"]
    assert _codes(got["unresolvable"]) == ["name_unresolved"]
    assert got["valid"]["status"] == "ok"
    assert "3 endpoint(s) at or above fail_on=critical" in result["msg"]
    assert result["failing"] == ["refused", "silent", "unresolvable"]


def test_fail_on_warning_fails_on_a_warning(cert_factory, peers):
    args = {"endpoints": [_ep("days10", peers["days10"].port)], "ca_file": str(cert_factory.ca_file)}
    assert run_module_inprocess("tls_check", args).get("failed") is None
    failed = run_module_inprocess("tls_check", dict(args, fail_on="warning"))
    assert failed["failed"] is True and "days10" in failed["msg"] and failed["summary"]["warning"] == 1


def test_system_trust_store_does_not_trust_the_private_ca(peers):
    result = run_module_inprocess("tls_check", {"endpoints": [_ep("valid", peers["valid"].port)], "fail_on": "never"})
    assert _codes(result["endpoints"][0]) == ["untrusted_root"]  # the private root is in no public store


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"ca_file": "/nonexistent/roots.pem"}, "ca_file '/nonexistent/roots.pem' cannot be read"),
        ({"warn_days": 5, "crit_days": 10}, r"warn_days 5 must be >= crit_days 10"),
        ({"timeout": 0}, "timeout 0.0 must be above 0"),
        ({"concurrency": 0}, "concurrency 0 must be between 1 and 256"),
        ({"metrics_dir": "/nonexistent/textfiles"}, "'/nonexistent/textfiles' does not exist"),
    ],
)
def test_bad_options_fail_with_a_message_naming_them(peers, args, match):
    result = run_module_inprocess("tls_check", {"endpoints": [_ep("valid", peers["valid"].port)], **args})
    assert result["failed"] is True
    assert match in result["msg"], result["msg"]


@pytest.mark.parametrize(
    ("endpoint", "match"),
    [
        ({"host": ""}, "endpoints[0].host '' is empty"),
        ({"host": "bad host"}, "endpoints[0].host 'bad host' is not a host name"),
        ({"server_name": "a" * 300}, "endpoints[0].server_name 'aaaa"),
        ({"server_name": "x." + "a" * 64 + ".example"}, "is not a valid host name (encoding with"),
        ({"http_checks": True, "http_path": "/a\r\nX-Evil: 1"}, "endpoints[0].http_path '/a\\r\\nX-Evil: 1' must"),
        ({"http_checks": True, "http_path": "/a b"}, "percent-encode the others"),
        ({"http_checks": True, "http_path": "/caf\u00e9"}, "only printable ASCII"),
        ({"http_path": "index.html"}, "must start with /"),
    ],
)
def test_bad_endpoint_values_fail_before_anything_is_probed(peers, endpoint, match):
    # A 300-character server_name raised UnicodeError out of the module, and a CRLF in http_path was only reported
    # as a failed HTTP check; both now fail the task, naming the endpoint's option.
    result = run_module_inprocess("tls_check", {"endpoints": [dict(_ep("valid", peers["valid"].port), **endpoint)]})
    assert result["failed"] is True and match in result["msg"], result
    assert "exception" not in result and not result.get("endpoints")


def test_duplicate_names_are_refused(peers):
    port = peers["valid"].port
    result = run_module_inprocess("tls_check", {"endpoints": [_ep("a", port), _ep("a", port)]})
    assert "endpoints[0] and endpoints[1] are both named 'a'" in result["msg"]


# ---- PostgreSQL and SMTP --------------------------------------------------------------------------
def test_postgres_with_and_without_ssl(cert_factory, pg_pair):
    endpoints = [
        _ep("pg_ssl", pg_pair["ssl"].port, starttls="postgres"),
        _ep("pg_plain", pg_pair["plain"].port, starttls="postgres"),
    ]
    result = run_module_inprocess(
        "tls_check", {"endpoints": endpoints, "ca_file": str(cert_factory.ca_file), "fail_on": "never"}
    )
    got = _by_name(result)
    assert got["pg_ssl"]["status"] == "ok", got["pg_ssl"]["problems"]
    assert got["pg_ssl"]["plaintext_accepted"] is False
    assert got["pg_ssl"]["chain"]["trusted"] and got["pg_ssl"]["protocol"] == "TLSv1.3"
    assert got["pg_plain"]["status"] == "critical"
    assert _codes(got["pg_plain"]) == ["plaintext_accepted", "tls_not_offered"]
    assert got["pg_plain"]["plaintext_accepted"] is True
    assert got["pg_plain"]["reachable"] is True
    assert "no encryption" in got["pg_ssl"]["plaintext_detail"]
    # An independent client agrees: libpq refuses without SSL on the first, and gets no SSL from the second.
    import psycopg2

    with pytest.raises(psycopg2.OperationalError, match=r"no encryption|rejects connection"):
        psycopg2.connect(**pg_pair["ssl"].conn_params(), sslmode="disable").close()
    with psycopg2.connect(**pg_pair["ssl"].conn_params(), sslmode="require") as conn, conn.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (True,)
    with pytest.raises(psycopg2.OperationalError, match="does not support SSL"):
        psycopg2.connect(**pg_pair["plain"].conn_params(), sslmode="require").close()


def test_smtp_starttls(cert_factory, smtp):
    endpoints = [_ep("smtp_tls", smtp["starttls"], starttls="smtp"), _ep("smtp_plain", smtp["plain"], starttls="smtp")]
    result = run_module_inprocess(
        "tls_check", {"endpoints": endpoints, "ca_file": str(cert_factory.ca_file), "fail_on": "never"}
    )
    got = _by_name(result)
    assert got["smtp_tls"]["status"] == "ok", got["smtp_tls"]["problems"]
    assert got["smtp_tls"]["chain"]["trusted"] is True
    assert _codes(got["smtp_plain"]) == ["tls_not_offered"]


# ---- HTTPS policy ---------------------------------------------------------------------------------
def test_https_headers_hsts_and_redirect(cert_factory, web):
    endpoints = [
        _ep("good", web["good"].port, http_checks=True, http_redirect_port=web["redirect"].port),
        _ep("bare", web["bare"].port, http_checks=True, http_redirect_port=web["no_redirect"].port),
    ]
    result = run_module_inprocess(
        "tls_check", {"endpoints": endpoints, "ca_file": str(cert_factory.ca_file), "fail_on": "never"}
    )
    got = _by_name(result)
    assert got["good"]["status"] == "ok", got["good"]["problems"]
    good = got["good"]["http"]
    assert good["hsts"] == {"present": True, "max_age_seconds": 31536000, "include_subdomains": True, "preload": False}
    assert good["frame_protection"] and good["content_security_policy"] and good["referrer_policy"]
    assert good["redirect"]["redirects_to_https"] and good["redirect"]["location"].startswith("https://127.0.0.1")
    assert got["bare"]["status"] == "warning"
    assert _codes(got["bare"]) == [
        "csp_missing",
        "frame_options_missing",
        "hsts_max_age_short",
        "http_not_redirected",
        "referrer_policy_missing",
        "x_content_type_options_missing",
    ]


# ---- the ansible-playbook path, check mode and metrics ---------------------------------------------
def _s_client_not_after(port: int) -> float:
    """The leaf's notAfter as openssl s_client sees it: an independent reader of the served certificate."""
    pem = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost"],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    cert = x509.load_pem_x509_certificate(pem[pem.index("-----BEGIN CERTIFICATE-----") :].encode())
    return cert.not_valid_after_utc.timestamp()


def test_sequence_through_ansible_playbook_with_metrics(ansible, cert_factory, peers, tmp_path):
    args = {
        "endpoints": [_ep("valid", peers["valid"].port), _ep("days10", peers["days10"].port)],
        "ca_file": str(cert_factory.ca_file),
        "metrics_dir": str(tmp_path),
        "metrics_subject": "web",
        "fail_on": "never",
    }
    prom = tmp_path / "locksmith_tls_web.prom"

    first_check = ansible.run_task("locksmith.ops.tls_check", args, check=True)
    assert first_check["changed"] is False and first_check["metrics"]["written"] is False
    assert first_check["metrics"]["values_changed"] is True
    assert not prom.exists()

    real = ansible.run_task("locksmith.ops.tls_check", args)
    assert real["changed"] is False and real["metrics"] == {
        "path": str(prom),
        "written": True,
        "values_changed": True,
    }
    again = ansible.run_task("locksmith.ops.tls_check", args)
    assert again["changed"] is False and again["metrics"]["values_changed"] is False
    mtime = prom.stat().st_mtime_ns
    last_check = ansible.run_task("locksmith.ops.tls_check", args, check=True)
    assert last_check["changed"] is False and last_check["metrics"]["values_changed"] is False
    assert prom.stat().st_mtime_ns == mtime
    assert [e["status"] for e in last_check["endpoints"]] == ["ok", "warning"]

    samples = _metrics.parse(prom.read_text())
    web = ("subject", "web")  # every series carries metrics_subject (two audits on a host never repeat one)
    assert samples[("locksmith_tls_status", (("endpoint", "valid"), web))] == 0
    assert samples[("locksmith_tls_status", (("endpoint", "days10"), web))] == 1
    expiry = samples[("locksmith_tls_cert_not_after_timestamp_seconds", (("endpoint", "valid"), web))]
    assert abs(expiry - _s_client_not_after(peers["valid"].port)) < 1
    assert samples[("locksmith_tls_last_check_timestamp_seconds", (web,))] > 0
    assert samples[("locksmith_tls_max_age_seconds", (web,))] == 3 * 86400
    assert oct(prom.stat().st_mode & 0o777) == "0o644"


# ---- the playbook ------------------------------------------------------------------------------------
@pytest.fixture
def webhook():
    """A local incoming-webhook receiver that records every JSON body posted to it."""
    received: list = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = _Server(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver))
    server.start()
    yield "http://127.0.0.1:%d/hooks/tls" % server.port, received
    server.stop()


def test_tls_audit_playbook_posts_findings_and_writes_metrics(cert_factory, peers, webhook, tmp_path):
    url, received = webhook
    extra = {
        "tls_audit_endpoints": [
            _ep("valid", peers["valid"].port),
            _ep("days10", peers["days10"].port),
            _ep("expired", peers["expired"].port),
        ],
        "tls_audit_ca_file": str(cert_factory.ca_file),
        "tls_audit_metrics_dir": str(tmp_path),
        "tls_audit_webhook_url": url,
    }
    run = run_playbook(REPO / "playbooks" / "tls_audit.yml", extra_vars=extra)
    assert run.rc == 2, run.stdout[-3000:]  # tls_audit_fail_on=critical: the job fails, after notifying
    assert "tls_audit_fail_on=critical: expired" in json.dumps(run.data)
    assert len(received) == 1
    payload = received[0]
    assert payload["text"].startswith("TLS audit: 1 critical, 1 warning, 1 ok of 3 endpoints")
    assert [(a["title"], a["color"]) for a in payload["attachments"]] == [
        ("days10 is warning", "warning"),
        ("expired is critical", "danger"),
    ]
    assert "certificate expired on" in payload["attachments"][1]["text"]
    assert payload["attachments"][1]["fields"][0]["value"] == "cert_expired"
    samples = _metrics.parse((tmp_path / "locksmith_tls_audit.prom").read_text())
    assert samples[("locksmith_tls_status", (("endpoint", "expired"), ("subject", "audit")))] == 2
    assert samples[("locksmith_tls_max_age_seconds", (("subject", "audit"),))] == 259200

    clean = run_playbook(
        REPO / "playbooks" / "tls_audit.yml",
        extra_vars=dict(extra, tls_audit_endpoints=[_ep("valid", peers["valid"].port)]),
    )
    assert clean.rc == 0, clean.stdout[-3000:]
    assert len(received) == 1  # nothing to report: nothing posted


def test_tls_audit_publishes_on_the_first_monitoring_host_and_checks_from_the_controller(
    cert_factory, tls_peer, tmp_path
):
    """Without tls_audit_hosts the metrics go to the first monitoring host, whose node_exporter Prometheus scrapes
    (before, to the controller, which nothing scrapes: no TLS alert could fire). The check itself runs on the
    controller: the monitoring hosts here run Debian's python3, whose cryptography 38 tls_check cannot use, as on a
    Debian 12 monitoring host. The textfile directory is created, so a first site.yml run, before monitoring.yml,
    does not fail; --check predicts it and fails on nothing. A run that only moves the run time changes nothing."""
    peer = tls_peer()
    inventory = tmp_path / "inventory.ini"
    debian = "ansible_connection=local ansible_python_interpreter=/usr/bin/python3"
    inventory.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        f"[monitoring]\nmon1 {debian}\nmon2 {debian}\n"
    )
    textfiles = tmp_path / "node-exporter"
    prom = textfiles / "locksmith_tls_audit.prom"
    extra = {
        "tls_audit_endpoints": [{"name": "web", "host": "127.0.0.1", "port": peer.port, "server_name": "localhost"}],
        "tls_audit_ca_file": str(cert_factory.ca_file),
        "tls_audit_metrics_dir": str(textfiles),
    }

    def audit(check=False, **changes):
        return run_playbook(
            REPO / "playbooks" / "tls_audit.yml", inventory=inventory, extra_vars=dict(extra, **changes), check=check
        )

    checked = audit(check=True)
    assert checked.rc == 0, checked.stdout[-3000:]
    assert checked.result("Create the node_exporter textfile directory", "mon1")["changed"] and not textfiles.exists()

    run = audit()
    assert run.rc == 0, run.stdout[-3000:]
    assert set(run.stats) == {"mon1"}  # neither the second monitoring host nor the controller publishes
    assert run.result("Publish the metrics for node_exporter's textfile collector", "mon1")["changed"]
    assert oct(textfiles.stat().st_mode & 0o777) == "0o755" and oct(prom.stat().st_mode & 0o777) == "0o644"
    samples = _metrics.parse(prom.read_text())
    assert samples[("locksmith_tls_status", (("endpoint", "web"), ("subject", "audit")))] == 0  # the CA trusted
    first = samples[("locksmith_tls_last_check_timestamp_seconds", (("subject", "audit"),))]

    time.sleep(1.1)
    assert audit(check=True).changed("mon1") == 0
    again = audit()
    assert again.rc == 0 and again.changed("mon1") == 0, again.stdout[-3000:]
    later = _metrics.parse(prom.read_text())[("locksmith_tls_last_check_timestamp_seconds", (("subject", "audit"),))]
    assert later > first  # published anew, though only the run time moved

    expired = tls_peer(cert_factory.leaf(expired=True))
    endpoints = extra["tls_audit_endpoints"] + [{"name": "old", "host": "127.0.0.1", "port": expired.port}]
    changed = audit(tls_audit_endpoints=endpoints, tls_audit_fail_on="never")
    assert changed.rc == 0 and changed.changed("mon1") == 1, changed.stdout[-3000:]
    assert _metrics.parse(prom.read_text())[("locksmith_tls_status", (("endpoint", "old"), ("subject", "audit")))] == 2


def test_tls_audit_posts_its_findings_though_the_monitoring_host_is_down(cert_factory, peers, webhook, tmp_path):
    """The check and the webhook run on the controller before anything touches the host that publishes: a monitoring
    host that cannot be reached (when Prometheus cannot alert either) must not keep the findings from the webhook."""
    url, received = webhook
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        "[monitoring]\nmon1 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh "
        "ansible_ssh_common_args='-o ConnectTimeout=2 -o StrictHostKeyChecking=no'\n"
    )
    extra = {
        "tls_audit_endpoints": [_ep("expired", peers["expired"].port)],
        "tls_audit_ca_file": str(cert_factory.ca_file),
        "tls_audit_webhook_url": url,
    }
    run = run_playbook(REPO / "playbooks" / "tls_audit.yml", inventory=inventory, extra_vars=extra)
    assert run.rc != 0 and run.stats["mon1"]["unreachable"], run.stdout[-3000:]
    assert len(received) == 1 and received[0]["text"].startswith("TLS audit: 1 critical"), received


def test_metrics_in_process_check_mode_writes_nothing(cert_factory, peers, tmp_path):
    args = {
        "endpoints": [_ep("valid", peers["valid"].port)],
        "ca_file": str(cert_factory.ca_file),
        "metrics_dir": str(tmp_path),
    }
    checked = run_module_inprocess("tls_check", args, check=True)
    assert checked["metrics"]["written"] is False and list(tmp_path.iterdir()) == []
    real = run_module_inprocess("tls_check", args)
    assert real["changed"] is False and real["metrics"]["written"] is True
    samples = _metrics.parse((tmp_path / "locksmith_tls.prom").read_text())
    assert samples[("locksmith_tls_status", (("endpoint", "valid"),))] == 0
