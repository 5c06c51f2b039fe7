"""Pure parts of tls_check: judging facts, hostname matching, HSTS parsing, the raw TLS 1.2 flight,
metrics and option validation. No network, except a socketpair."""

from __future__ import annotations

import copy
import datetime
import ipaddress
import socket
import struct
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.locksmith.ops.plugins.module_utils import (
    _metrics,
    _tls,
    _tls_cert,
    _tls_http,
    _tls_judge,
    _tls_probe,
)
from ansible_collections.locksmith.ops.plugins.module_utils._tls_probe import ProbeError, Target

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def _cert(sans=("www.example.com",), days=90, cn="www.example.com", extensions=()):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0xABC)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=days))
    )
    if sans:
        entries = []
        for san in sans:
            try:
                entries.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                entries.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256())


def _facts(**over):
    facts = {
        "name": "www:443",
        "server_name": "www.example.com",
        "error": None,
        "protocol": "TLSv1.3",
        "protocols_below_minimum": {"TLSv1.0": False, "TLSv1.1": False},
        "certificate": _tls_cert.describe(_cert(), NOW),
        "chain": {"trusted": True, "trust_error": None, "trust_reason": None},
        "hostname_match": True,
        "plaintext_accepted": None,
        "http": None,
    }
    facts.update(over)
    return facts


def _codes(problems):
    return [(p["code"], p["severity"]) for p in problems]


# ---- judging --------------------------------------------------------------------------------
def test_a_healthy_endpoint_has_no_problems():
    assert _tls_judge.judge(_facts(), 30, 7, "TLSv1.2", 15768000) == []
    assert _tls_judge.status_of([]) == "ok"


@pytest.mark.parametrize(
    ("days", "expected"),
    [(40, []), (20, [("cert_expiring", "warning")]), (5, [("cert_expiring", "critical")])],
)
def test_expiry_thresholds(days, expected):
    facts = _facts(certificate=_tls_cert.describe(_cert(days=days), NOW))
    assert _codes(_tls_judge.judge(facts, 30, 7, "TLSv1.2", 0)) == expected


def test_expired_and_not_yet_valid():
    cert = dict(_facts()["certificate"], seconds_left=-5, not_yet_valid=True)
    problems = _tls_judge.judge(_facts(certificate=cert), 30, 7, "TLSv1.2", 0)
    assert _codes(problems) == [("cert_expired", "critical"), ("cert_not_yet_valid", "critical")]
    assert _tls_judge.status_of(problems) == "critical"


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("self_signed", "self_signed"),
        ("chain_incomplete", "chain_incomplete"),
        ("untrusted_root", "untrusted_root"),
        ("no_san", "chain_invalid"),
        (None, "chain_invalid"),
    ],
)
def test_trust_reasons_map_to_codes(reason, code):
    chain = {"trusted": False, "trust_error": "x", "trust_reason": reason}
    assert _codes(_tls_judge.judge(_facts(chain=chain), 30, 7, "TLSv1.2", 0)) == [(code, "critical")]


# openssl req -x509 -newkey rsa:2048 -sha1 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:20 (cryptography
# refuses to sign with SHA-1): RSASSA-PSS over SHA-1, whose algorithm name, 'rsassaPss', carries no hash.
PSS_SHA1_PEM = b"""\
-----BEGIN CERTIFICATE-----
MIIC/TCCAeWgAwIBAgIUVWm8SsVLD+0WcHk3pY0Bd7k3+RMwDQYJKoZIhvcNAQEK
MAAwDjEMMAoGA1UEAwwDcHNzMB4XDTI2MTEyOTA4MDU0MFoXDTI2MTIwMTA4MDU0
MFowDjEMMAoGA1UEAwwDcHNzMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKC
AQEAsUeg8A6Inja0Epz/+TINIZera717H/ctGR7cX4NBO+stLPkZ0Zb2LNzNTGYf
Ij6Rx3mHvFBvSL0UoRO8K7F4zsFIdKQ5fwWPLNxyuH6wpFg3xw7kVukUdWRpu6UO
/GaVd/0Im4gKzPpX8Gsr+LiFOPeuhSN2VH9oOsuY0o23C3Hj2zflY5uye9AQlvlU
eewzG1/SVFa3jkBq5T7/9n1ctibAzpjEisLAhrHGrq5OeWDn9G4uX5Nz0gqtWgPQ
A6A+t6rHSS35yaklctWBDS+DLQ5pUixWyg+i5BbLtZTKePF082YWi0wpl6ghmM8n
+M57cL8L1Mnb5sljnJL2qZaFpQIDAQABo1MwUTAdBgNVHQ4EFgQUhjlcnd8WoPjv
HwzKtwoWlBrQ80owHwYDVR0jBBgwFoAUhjlcnd8WoPjvHwzKtwoWlBrQ80owDwYD
VR0TAQH/BAUwAwEB/zANBgkqhkiG9w0BAQowAAOCAQEAi0QzB2wSLgHovLokCKew
7Osn9cKv+gJpXqrt83ZgkG2a9AdOCTfisdoUIkbkZvP8kk4AfKYWRTt/9vndNkg1
rmIkdcWPNCo/AeoGSPVU33EvP2Fx78tKTUUFGxNCsH7B+Kdo6K9IBKXXh3uDWN5S
9D95zrl43/lwqrCh5LUX/c28BC9zlrnTrwG8XMC34GZEqF0PnzbqET8LedxKv0rM
ygstgiaGcrQymCnEI3s6bFAuKwmfOP+adLt0pyLuPO6RdS+M5Z8+tcvcetrBIuEK
LsIgoztc5um7Wv+yLFRLnlzMeLM7usp6Am+/CVFas9YF0Ba/FCyIizmtnSgAZPbk
Vg==
-----END CERTIFICATE-----
"""


def test_a_pss_signature_over_sha1_is_weak():
    cert = _tls_cert.describe(x509.load_pem_x509_certificate(PSS_SHA1_PEM), NOW)
    assert (cert["signature_algorithm"], cert["signature_hash"]) == ("rsassaPss", "sha1")
    problems = _tls_judge.judge(_facts(certificate=dict(cert, seconds_left=86400 * 90)), 30, 7, "TLSv1.2", 0)
    assert ("weak_signature", "warning") in _codes(problems)
    assert "signed with rsassaPss over SHA1" in problems[-1]["message"]
    assert _tls_cert.describe(_cert(), NOW)["signature_hash"] == "sha256"


def test_protocols_weak_key_signature_and_plaintext():
    facts = _facts(
        protocol="TLSv1.2",
        protocols_below_minimum={"TLSv1.0": True, "TLSv1.1": None},
        hostname_match=False,
        plaintext_accepted=True,
        certificate=dict(_facts()["certificate"], key_type="RSA", key_size=1024, signature_algorithm="sha1WithRSA"),
    )
    assert _codes(_tls_judge.judge(facts, 30, 7, "TLSv1.2", 0)) == [
        ("plaintext_accepted", "critical"),
        ("legacy_protocol_accepted", "warning"),
        ("hostname_mismatch", "critical"),
        ("weak_key", "warning"),
        ("weak_signature", "warning"),
    ]
    best_too_old = _tls_judge.judge(_facts(protocol="TLSv1.2"), 30, 7, "TLSv1.3", 0)
    assert _codes(best_too_old) == [("protocol_below_minimum", "critical")]
    assert "enable TLSv1.3 or newer" in best_too_old[0]["message"]


def test_an_unreachable_endpoint_has_only_its_error():
    facts = _facts(error={"code": "timeout", "message": "x:1: no answer"}, plaintext_accepted=None)
    assert _codes(_tls_judge.judge(facts, 30, 7, "TLSv1.2", 0)) == [("timeout", "critical")]


def test_http_findings():
    http = {
        "error": None,
        "hsts": {"present": True, "max_age_seconds": 60},
        "x_content_type_options": True,
        "frame_protection": False,
        "content_security_policy": True,
        "referrer_policy": True,
        "redirect": {"port": 80, "status": None, "location": None, "redirects_to_https": False, "error": "refused"},
    }
    problems = _tls_judge.judge(_facts(http=http), 30, 7, "TLSv1.2", 3600)
    assert _codes(problems) == [
        ("hsts_max_age_short", "warning"),
        ("frame_options_missing", "warning"),
        ("http_not_redirected", "warning"),
    ]
    assert "http://www.example.com:80 does not redirect to https (refused)" in problems[-1]["message"]
    failed = _tls_judge.judge(_facts(http={"error": "GET failed", "redirect": None}), 30, 7, "TLSv1.2", 0)
    assert _codes(failed) == [("http_check_failed", "warning")]
    no_hsts = dict(http, hsts={"present": False, "max_age_seconds": None}, frame_protection=True, redirect=None)
    assert _codes(_tls_judge.judge(_facts(http=no_hsts), 30, 7, "TLSv1.2", 0)) == [("hsts_missing", "warning")]


# ---- certificates -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sans", "host", "match"),
    [
        (("www.example.com",), "WWW.example.com.", True),
        (("*.example.com",), "a.example.com", True),
        (("*.example.com",), "a.b.example.com", False),
        (("*.example.com",), "example.com", False),
        (("*.com",), "example.com", False),
        (("w*.example.com",), "www.example.com", False),
        (("127.0.0.1",), "127.0.0.1", True),
        (("www.example.com",), "127.0.0.1", False),
        ((), "www.example.com", False),
    ],
)
def test_hostname_matching(sans, host, match):
    assert _tls_cert.hostname_matches(_cert(sans=sans), host) is match


def test_describe_reports_the_leaf():
    facts = _tls_cert.describe(_cert(days=10), NOW)
    assert facts["serial"] == "abc" and facts["key_type"] == "EC" and facts["key_size"] == 256
    assert facts["days_left"] == 10 and facts["not_after"] == "2026-06-11T00:00:00Z"
    assert facts["signature_algorithm"] == "ecdsa-with-SHA256" and facts["self_signed"] is True


def test_verify_chain_without_san_and_self_signed():
    store = _tls_cert.verification.Store([_cert()])
    no_san = _tls_cert.verify_chain(_cert(sans=()), [], store, [], "www.example.com", NOW)
    assert no_san["reason"] == "no_san" and no_san["trusted"] is False
    self_signed = _tls_cert.verify_chain(_cert(sans=("*.example.com",)), [], store, [], "other.org", NOW)
    assert self_signed["reason"] == "self_signed" and "validation failed" in self_signed["error"]


def test_trust_store_errors_name_the_file(tmp_path):
    with pytest.raises(_tls_cert.TrustStoreError, match=r"ca_file '/nonexistent' cannot be read"):
        _tls_cert.load_trust_store("/nonexistent")
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate")
    with pytest.raises(_tls_cert.TrustStoreError, match=r"holds no PEM certificate"):
        _tls_cert.load_trust_store(str(empty))
    _store, certs = _tls_cert.load_trust_store(None)
    assert len(certs) > 10


def test_describe_ocsp_unparseable():
    assert _tls_cert.describe_ocsp(b"garbage")["response_status"] == "unparseable"


# ---- HTTP parsing ---------------------------------------------------------------------------
def test_parse_hsts():
    assert _tls_http.parse_hsts('max-age="31536000"; includeSubDomains; preload') == {
        "present": True,
        "max_age_seconds": 31536000,
        "include_subdomains": True,
        "preload": True,
    }
    assert _tls_http.parse_hsts(None)["present"] is False
    assert _tls_http.parse_hsts("includeSubDomains")["max_age_seconds"] is None


@pytest.mark.parametrize(
    ("value", "max_age"),
    [
        ("max-age=600;", 600),
        (" MAX-AGE = 600 ; preload", 600),
        # Browsers ignore the whole header for these (RFC 6797 6.1); the regex used to find a max-age in each.
        ("max-age=31536000x", None),
        ('max-age="31536000', None),
        ("max-age=0; max-age=31536000", None),
        ("max-age=31536000; includeSubDomains; includeSubDomains", None),
        ("foo=max-age=31536000", None),
    ],
)
def test_parse_hsts_ignores_what_browsers_ignore(value, max_age):
    assert _tls_http.parse_hsts(value)["max_age_seconds"] == max_age


def test_https_on_host():
    assert _tls_http._https_on_host("https://WWW.example.com:8443/a", "www.example.com.")
    assert _tls_http._https_on_host("https://[::1]/", "::1")
    assert not _tls_http._https_on_host("https://evil.example/www.example.com", "www.example.com")
    assert not _tls_http._https_on_host("https://www.example.com.evil.example/", "www.example.com")
    assert not _tls_http._https_on_host("http://www.example.com/", "www.example.com")
    assert not _tls_http._https_on_host("//www.example.com/", "www.example.com")
    assert not _tls_http._https_on_host("https://[::1/", "::1")


def test_security_headers_accept_csp_frame_ancestors():
    got = _tls_http.security_headers({"content-security-policy": "frame-ancestors 'self'"})
    assert got == {
        "x_content_type_options": False,
        "frame_protection": True,
        "content_security_policy": True,
        "referrer_policy": False,
    }


# ---- raw TLS 1.2 flight -------------------------------------------------------------------------
def _handshake(msg_type, body):
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def _record(kind, payload):
    return bytes([kind]) + b"\x03\x03" + struct.pack("!H", len(payload)) + payload


def test_parse_server_flight_reads_chain_and_staple():
    certs = b"".join(len(c).to_bytes(3, "big") + c for c in (b"LEAF", b"INTER"))
    flight = _handshake(2, b"hello") + _handshake(11, len(certs).to_bytes(3, "big") + certs)
    flight += _handshake(22, b"\x01" + (3).to_bytes(3, "big") + b"OCS") + _handshake(14, b"")
    # Split across two records, as servers do.
    parsed = _tls_probe.parse_server_flight(_record(22, flight[:7]) + _record(22, flight[7:]))
    assert parsed == {"done": True, "chain_der": [b"LEAF", b"INTER"], "ocsp_der": b"OCS", "cipher_suite": None}
    assert _tls_probe.parse_server_flight(_record(21, b"\x02\x46")) is None
    assert _tls_probe.parse_server_flight(_record(22, _handshake(2, b"hello")[:3]))["done"] is False


@pytest.mark.parametrize(
    ("suite", "severity", "why"),
    [
        ("NULL-SHA256", "critical", "no encryption at all"),
        ("ECDHE-RSA-NULL-SHA", "critical", "no encryption at all"),
        ("ADH-AES128-GCM-SHA256", "critical", "no server authentication"),
        ("AECDH-AES256-SHA", "critical", "no server authentication"),
        ("EXP-ADH-RC4-MD5", "critical", "no server authentication"),
        ("DES-CBC3-SHA", "warning", "broken or export-grade"),
        ("RC4-SHA", "warning", "broken or export-grade"),
        ("EXP-DES-CBC-SHA", "warning", "broken or export-grade"),
        ("0x0099", "warning", "broken or export-grade"),
    ],
)
def test_a_weak_suite_the_server_chose_is_judged_by_what_it_gives_up(suite, severity, why):
    problems = _tls_judge.judge(_facts(weak_cipher=suite), 30, 7, "TLSv1.2", 0)
    assert _codes(problems) == [("weak_cipher_accepted", severity)]
    assert suite in problems[0]["message"] and why in problems[0]["message"]
    assert _tls_judge.judge(_facts(weak_cipher=None), 30, 7, "TLSv1.2", 0) == []


def test_parse_server_flight_reads_the_chosen_suite():
    hello = b"\x03\x03" + bytes(32) + b"\x04abcd" + b"\x00\x0a" + b"\x00"
    assert _tls_probe.parse_server_flight(_record(22, _handshake(2, hello)))["cipher_suite"] == 0x000A
    assert _tls_probe.parse_server_flight(_record(22, _handshake(2, hello[:38])))["cipher_suite"] is None


def _offered(hello):
    body = hello[9:]  # record header (5), handshake header (4); then version, random, empty session id
    count = int.from_bytes(body[35:37], "big") // 2
    return [int.from_bytes(body[37 + 2 * i : 39 + 2 * i], "big") for i in range(count)]


def test_client_hello_offers_the_given_suites_only():
    assert _offered(_tls_probe._client_hello(None, _tls_probe.WEAK_SUITES)) == [*_tls_probe.WEAK_SUITES, 0x00FF]
    assert _offered(_tls_probe._client_hello(None)) == [*_tls_probe.MODERN_SUITES, 0x00FF]
    assert not set(_tls_probe.WEAK_SUITES) & set(_tls_probe.MODERN_SUITES)


def test_client_hello_asks_for_ocsp_and_sends_sni():
    hello = _tls_probe._client_hello("www.example.com")
    assert hello[:3] == b"\x16\x03\x01" and b"www.example.com" in hello
    assert b"\x00\x05\x00\x05\x01\x00\x00\x00\x00" in hello  # status_request, type ocsp
    assert b"www" not in _tls_probe._client_hello(None)


def test_target_sni_is_none_for_addresses():
    assert Target("127.0.0.1", 443, "127.0.0.1").sni is None
    assert Target("127.0.0.1", 443, "db.example.com").sni == "db.example.com"
    assert _tls_probe.normalize_protocol("TLSv1") == "TLSv1.0"


def _serve_once(script):
    server, client = socket.socketpair()

    def run():
        with server:
            for send, expect in script:
                if expect:
                    server.recv(1024)
                if send:
                    server.sendall(send)

    thread = threading.Thread(target=run)
    thread.start()
    return client, thread


@pytest.mark.parametrize(
    ("kind", "script", "match"),
    [
        ("postgres", [(b"N", True)], "PostgreSQL refused SSL"),
        ("smtp", [(b"554 go away\r\n", False)], "SMTP greeting was 554"),
        ("smtp", [(b"220 hi\r\n", False), (b"250-hi\r\n250 SIZE 1\r\n", True)], "does not offer STARTTLS"),
        ("smtp", [(b"220 hi\r\n", False), (b"250 STARTTLS\r\n", True), (b"454 no\r\n", True)], "answered 454"),
    ],
)
def test_starttls_refusals(kind, script, match):
    client, thread = _serve_once(script)
    with client, pytest.raises(ProbeError, match=match) as err:
        _tls_probe._starttls(client, Target("h", 1, "h", starttls=kind))
    thread.join()
    assert err.value.code == "tls_not_offered"


# ---- options, summary, metrics ---------------------------------------------------------------
def _params(**over):
    params = {k: v.get("default") for k, v in _tls.tls_check_argument_spec().items()}
    endpoint = {k: v.get("default") for k, v in _tls.endpoint_spec().items()}
    params["endpoints"] = [dict(endpoint, host="a"), dict(endpoint, host="b", port=8443, name="b")]
    params.update(over)
    return params


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"endpoints": []}, "endpoints is empty"),
        ({"metrics_dir": "/nonexistent"}, "metrics_dir '/nonexistent' does not exist; create it"),
        ({"timeout": -1.0}, "timeout -1.0 must be above 0"),
        ({"timeout": float("nan")}, "timeout nan must be above 0 and at most 3600"),
        ({"timeout": float("inf")}, "timeout inf must be above 0 and at most 3600"),
        ({"concurrency": 300}, "concurrency 300 must be between 1 and 256"),
        ({"warn_days": 3}, r"endpoints\[0\] 'a': warn_days 3 must be >= crit_days 7"),
    ],
)
def test_validate_names_the_option(change, match):
    with pytest.raises(_tls.TlsCheckError, match=match):
        _tls.validate(_params(**change))


def test_validate_ports_and_names():
    params = _params()
    params["endpoints"][1]["port"] = 0
    with pytest.raises(_tls.TlsCheckError, match=r"endpoints\[1\] 'b': port numbers must be 1-65535"):
        _tls.validate(params)
    params = _params()
    params["endpoints"][1]["name"] = "a:443"
    with pytest.raises(_tls.TlsCheckError, match="both named 'a:443'"):
        _tls.validate(params)
    params = _params()
    params["endpoints"][0]["http_path"] = "/\u00e9t\u00e9"  # sent in an ASCII request line: refused, not crashed on
    with pytest.raises(_tls.TlsCheckError, match=r"only printable ASCII.*percent-encode the others"):
        _tls.validate(params)
    _tls.validate(_params())


@pytest.mark.parametrize(
    ("host", "match"),
    [
        ("[::1]", r"is an IPv6 address in brackets; write it without them \(::1\)"),
        ("db.internal:5432", r"is not a host name \(a URL or host:port\?\)"),
        ("https://www.example.com", r"is not a host name \(a URL or host:port\?\)"),
    ],
)
def test_url_habits_in_host_are_named(host, match):
    params = _params()
    params["endpoints"][0]["host"] = host
    with pytest.raises(_tls.TlsCheckError, match=r"endpoints\[0\]\.host .*" + match):
        _tls.validate(params)
    params["endpoints"][0]["host"] = "::1"  # an IPv6 address as such is a host
    _tls.validate(params)


def _results():
    ok = {"name": "a:443", "status": "ok", "certificate": {"not_after_timestamp": 1800000000}}
    bad = {"name": "b", "status": "critical", "certificate": None}
    warn = {"name": "c", "status": "warning", "certificate": {"not_after_timestamp": 1700000000}}
    return [ok, bad, warn]


def test_summary_and_fail_on():
    results = _results()
    assert _tls.summarize(results) == {"total": 3, "ok": 1, "warning": 1, "critical": 1}
    assert _tls.failing(results, "critical") == ["b"]
    assert _tls.failing(results, "warning") == ["b", "c"]
    assert _tls.failing(results, "never") == []


def test_metrics_values_changed_ignores_the_run_timestamp(tmp_path):
    first = _tls.write_metrics(str(tmp_path), None, _results(), 1000.0, check_mode=False)
    assert first == {"path": str(tmp_path / "locksmith_tls.prom"), "written": True, "values_changed": True}
    again = _tls.write_metrics(str(tmp_path), None, _results(), 2000.0, check_mode=False)
    assert again["values_changed"] is False and again["written"] is True
    samples = _metrics.parse((tmp_path / "locksmith_tls.prom").read_text())
    assert samples[("locksmith_tls_last_check_timestamp_seconds", ())] == 2000
    assert samples[("locksmith_tls_status", (("endpoint", "b"),))] == 2
    assert ("locksmith_tls_cert_not_after_timestamp_seconds", (("endpoint", "b"),)) not in samples
    changed = copy.deepcopy(_results())
    changed[0]["status"] = "warning"
    predicted = _tls.write_metrics(str(tmp_path), None, changed, 3000.0, check_mode=True)
    assert predicted["values_changed"] is True and predicted["written"] is False
    assert (
        _metrics.parse((tmp_path / "locksmith_tls.prom").read_text())[
            ("locksmith_tls_status", (("endpoint", "a:443"),))
        ]
        == 0
    )
    with pytest.raises(_metrics.MetricsError, match="'/nonexistent' does not exist"):
        _tls.write_metrics("/nonexistent", None, _results(), 1.0, check_mode=True)


def test_every_series_of_a_subject_carries_it_with_the_max_age(tmp_path):
    """Two audits in one directory must not repeat a series (node_exporter serves it from one file only)."""
    _tls.write_metrics(str(tmp_path), "internal", _results(), 1000.0, check_mode=False, max_age_seconds=7200)
    samples = _metrics.parse((tmp_path / "locksmith_tls_internal.prom").read_text())
    assert samples[("locksmith_tls_last_check_timestamp_seconds", (("subject", "internal"),))] == 1000
    assert samples[("locksmith_tls_max_age_seconds", (("subject", "internal"),))] == 7200
    assert samples[("locksmith_tls_status", (("endpoint", "b"), ("subject", "internal")))] == 2
    assert all(dict(labels).get("subject") == "internal" for _name, labels in samples)
    _tls.write_metrics(str(tmp_path), None, _results(), 1000.0, check_mode=False)
    plain = _metrics.parse((tmp_path / "locksmith_tls.prom").read_text())
    assert plain[("locksmith_tls_max_age_seconds", ())] == _tls.METRICS_MAX_AGE_SECONDS == 3 * 86400


@pytest.mark.parametrize("max_age", [0, -1])
def test_a_max_age_that_is_not_positive_is_refused(max_age):
    params = _params()
    params["metrics_max_age_seconds"] = max_age
    with pytest.raises(_tls.TlsCheckError, match=r"metrics_max_age_seconds is %d; set it to the age" % max_age):
        _tls.validate(params)


def _with_usage(eku=None, key_usage=None):
    extensions = []
    if eku is not None:
        extensions.append((x509.ExtendedKeyUsage(eku), False))
    if key_usage is not None:
        flags = dict.fromkeys(
            (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        flags.update(key_usage)
        extensions.append((x509.KeyUsage(**flags), True))
    return _cert(sans=("db.internal",), cn="db.internal", extensions=extensions)


@pytest.mark.parametrize(
    ("eku", "key_usage", "server"),
    [
        (None, None, True),
        ([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH], None, True),
        ([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH], None, False),
        # As OpenSSL judges a TLS server: anyExtendedKeyUsage alone is not serverAuth; keyAgreement (ECDH) is enough.
        ([x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], None, False),
        (None, {"key_agreement": True}, True),
        (None, {"key_cert_sign": True, "crl_sign": True}, False),
    ],
)
def test_a_pinned_leaf_must_have_a_server_purpose_as_openssl_judges_it(eku, key_usage, server):
    assert _tls_cert._server_purpose(_with_usage(eku, key_usage)) is server
