"""Behaviour of role web_hardening on the converged host, observed with curl and openssl inside the container.

Each test talks from its own loopback source address (127.0.0.0/8 is all local), so each gets a fresh
limit_req budget and the rate-limit test counts only its own requests.
"""

import json
import os
import re
import subprocess
import time

import pytest

CONFIG_FILE = "/etc/nginx/conf.d/locksmith.conf"
ACCESS_LOG = "/var/log/nginx/access.log"
HEADERS = {
    "strict-transport-security": "max-age=31536000",
    "content-security-policy": (
        "default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
# docs/web_hardening.md, "Access log format": the same expression, kept in step by this test.
LOG_LINE = re.compile(
    r'^(?P<remote_addr>\S+) - (?P<remote_user>\S+) \[(?P<time_local>[^\]]+)\] "(?P<request>[^"]*)" '
    r'(?P<status>\d{3}) (?P<body_bytes_sent>\d+) "(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)" '
    r'rt=(?P<request_time>\d+\.\d{3}) ut="(?P<upstream_response_time>[^"]*)" host=(?P<host>\S+)$'
)


def curl_headers(host, url, source):
    """Status and lower-cased headers of one GET."""
    out = host.check_output(f"curl -sk --interface {source} -D - -o /dev/null '{url}'")
    lines = out.replace("\r", "").splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


def test_https_answers_with_every_security_header(host):
    status, headers = curl_headers(host, "https://127.0.0.1/", "127.0.0.11")
    assert status == 200
    for name, value in HEADERS.items():
        assert headers.get(name) == value, name
    assert "includesubdomains" not in headers["strict-transport-security"].lower()


def test_server_header_has_no_version(host):
    headers = curl_headers(host, "https://127.0.0.1/missing", "127.0.0.12")[1]
    assert headers["server"] == "nginx"
    page = host.check_output("curl -sk --interface 127.0.0.12 https://127.0.0.1/missing")
    assert "404 Not Found" in page
    assert not re.search(r"nginx/\d", page)


def test_http_redirects_to_https_with_the_same_url(host):
    out = host.check_output(
        "curl -s --interface 127.0.0.13 -o /dev/null -w '%{http_code} %{redirect_url}' 'http://127.0.0.1/a/b?x=1'"
    )
    assert out == "301 https://127.0.0.1/a/b?x=1"


def openssl_handshake(host, *args):
    return host.run("openssl s_client -connect 127.0.0.1:443 -servername localhost " + " ".join(args) + " </dev/null")


def negotiated(result):
    """Protocol and cipher from s_client's handshake line ("New, TLSv1.3, Cipher is ...").

    The "SSL-Session" block is no proof: with TLS 1.3 it is printed only if the session ticket arrives
    before stdin closes, which depends on timing.
    """
    match = re.search(r"^New, (TLSv1\.[0-3]), Cipher is (\S+)$", result.stdout, re.M)
    return match.groups() if match else None


def test_tls13_and_tls12_with_a_modern_cipher_are_accepted(host):
    tls13 = openssl_handshake(host, "-tls1_3")
    assert tls13.rc == 0
    assert negotiated(tls13)[0] == "TLSv1.3"
    tls12 = openssl_handshake(host, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert tls12.rc == 0
    assert negotiated(tls12) == ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")


@pytest.mark.parametrize("protocol", ["-tls1", "-tls1_1"])
def test_tls_below_12_is_refused(host, protocol):
    # SECLEVEL=0 lets this client offer the old protocol, so the refusal comes from the server.
    result = openssl_handshake(host, protocol, "-cipher", "'DEFAULT:@SECLEVEL=0'")
    assert result.rc != 0
    # The server's alert 70, not a client that never offered the protocol ("no protocols available" and
    # "Cipher is (NONE)" come from any failed handshake).
    assert "alert protocol version" in result.stderr + result.stdout, result.stderr + result.stdout


def test_tls12_without_forward_secrecy_is_refused(host):
    # nginx's default list (HIGH:!aNULL:!MD5) accepts AES128-SHA with an RSA key; the role's list does not.
    assert openssl_handshake(host, "-tls1_2", "-cipher", "AES128-SHA").rc != 0


def test_nginx_effective_config_allows_tls12_and_13_only(host):
    dump = host.check_output("nginx -T 2>/dev/null")
    protocols = set(re.findall(r"^\s*ssl_protocols\s+([^;]+);", dump, re.M))
    assert protocols == {"TLSv1.2 TLSv1.3"}


def test_150_requests_in_a_minute_get_429_past_the_limit(host):
    start = time.monotonic()
    out = host.check_output(
        "curl -sk --interface 127.0.0.20 -o /dev/null -w '%{http_code}\\n' 'https://127.0.0.1/?[1-150]'"
    )
    elapsed = time.monotonic() - start
    statuses = out.split()
    assert len(statuses) == 150
    ok, limited = statuses.count("200"), statuses.count("429")
    assert ok + limited == 150
    # burst 20 plus the first request, plus what the rate (100/min, one per 0.6 s) refills while curl runs.
    assert 21 <= ok <= 21 + int(elapsed / 0.6) + 1, (ok, elapsed)
    assert limited >= 150 - (21 + int(elapsed / 0.6) + 1)
    assert statuses.index("429") == ok  # every refusal comes after the allowed burst


def test_429_answers_keep_the_security_headers(host):
    # One curl run, so the limit cannot refill between the burst and the answers read here.
    out = host.check_output("curl -sk --interface 127.0.0.21 -D - -o /dev/null 'https://127.0.0.1/?[1-40]'")
    blocks = [block for block in out.replace("\r", "").split("\n\n") if block.startswith("HTTP/")]
    refused = [block for block in blocks if block.split()[1] == "429"]
    assert len(blocks) == 40 and refused
    for block in refused:
        assert f"strict-transport-security: {HEADERS['strict-transport-security']}" in block.splitlines()
        assert "x-frame-options: DENY" in block.splitlines()


def test_request_body_over_the_limit_gets_413(host):
    status = host.check_output(
        "head -c 2000000 /dev/zero | curl -sk --interface 127.0.0.22 -o /dev/null -w '%{http_code}' "
        "--data-binary @- https://127.0.0.1/"
    )
    assert status == "413"


def test_stub_status_answers_on_loopback_only(host):
    status = host.check_output("curl -s http://127.0.0.1:8089/stub_status")
    assert status.startswith("Active connections:")
    address = host.check_output("hostname -I").split()[0]
    refused = host.run(f"curl -s --max-time 5 http://{address}:8089/stub_status")
    assert refused.rc == 7  # connection refused: nothing listens there
    assert host.run("curl -sk --max-time 5 -o /dev/null https://127.0.0.1/stub_status -w '%{http_code}'").stdout in (
        "404",
        "429",
    )


def test_access_log_line_follows_the_documented_format(host):
    marker = f"/log-format-probe-{time.time_ns()}"
    host.check_output(f"curl -sk --interface 127.0.0.23 -o /dev/null 'https://127.0.0.1{marker}?q=%22x%22'")
    lines = [line for line in host.file(ACCESS_LOG).content_string.splitlines() if marker in line]
    assert len(lines) == 1
    match = LOG_LINE.match(lines[0])
    assert match, lines[0]
    assert match["remote_addr"] == "127.0.0.23"
    assert match["request"] == f"GET {marker}?q=%22x%22 HTTP/2.0"
    assert match["status"] == "404"
    assert float(match["request_time"]) >= 0


def test_default_site_is_gone_and_config_is_root_owned(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    config = host.file(CONFIG_FILE)
    assert (config.user, config.group, config.mode) == ("root", "root", 0o644)
    key = host.file("/etc/ssl/locksmith/web.key")
    assert (key.user, key.mode) == ("root", 0o600)


def run_converge(extra_vars):
    return subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "--extra-vars",
            json.dumps(extra_vars),
            os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "molecule", "_shared", "converge.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
        timeout=300,
    )


def test_config_nginx_rejects_is_not_installed_and_nginx_keeps_serving(host):
    before = host.file(CONFIG_FILE).sha256sum
    run = run_converge({"web_hardening_request_limits_overrides": {"client_max_body_size": "lots"}})
    assert run.returncode == 2, run.stdout + run.stderr
    failure = " ".join((run.stdout + run.stderr).split())
    assert "failed to validate" in failure
    assert "client_max_body_size" in failure
    assert host.file(CONFIG_FILE).sha256sum == before
    served = host.check_output("curl -sk --interface 127.0.0.24 -o /dev/null -w '%{http_code}' https://127.0.0.1/")
    assert served == "200"


def test_missing_certificate_is_refused_naming_the_variables(host):
    run = run_converge({"web_hardening_selfsigned_allowed": False})
    assert run.returncode == 2, run.stdout + run.stderr
    failure = " ".join(run.stderr.split())
    assert "web_hardening_certificate_file and web_hardening_private_key_file are empty" in failure
    assert "web_hardening_selfsigned_allowed: true" in failure
