"""Behaviour of role certificates on the converged host: nginx (web_hardening) serves a certificate that
Pebble issued after a real HTTP-01 validation through nginx, it chains to Pebble's root, and nginx was
reloaded, not restarted."""

import re

STORE = "/etc/ssl/locksmith/certificates/web"
NAME = "www.locksmith.test"


def served_certificate(host) -> str:
    """The PEM leaf nginx presents for NAME on 127.0.0.1:443."""
    out = host.check_output(
        f"openssl s_client -connect 127.0.0.1:443 -servername {NAME} </dev/null 2>/dev/null | openssl x509"
    )
    return out.strip()


def field(host, pem_path, option) -> str:
    return host.check_output(f"openssl x509 -in {pem_path} -noout {option}").strip()


def test_nginx_serves_the_certificate_pebble_issued(host):
    served = served_certificate(host)
    stored = host.file(f"{STORE}/cert.pem").content_string.strip()
    assert served == stored
    issuer = field(host, f"{STORE}/cert.pem", "-issuer")
    assert "Pebble Intermediate CA" in issuer, issuer
    assert NAME in field(host, f"{STORE}/cert.pem", "-ext subjectAltName")


def test_certificate_chains_to_pebbles_root_over_https(host):
    # Pebble makes a new root at each start; its management port hands it out.
    host.check_output(
        "curl -sf --cacert /etc/pebble/listener.crt https://localhost:15000/roots/0 -o /root/pebble-root.pem"
    )
    cmd = host.run(
        f"curl -sf -o /dev/null -w '%{{http_code}}' --cacert /root/pebble-root.pem --resolve {NAME}:443:127.0.0.1 https://{NAME}/"
    )
    assert cmd.rc in (0, 22), cmd.stderr  # 22: an HTTP error status, after a verified handshake
    assert re.fullmatch(r"\d{3}", cmd.stdout), cmd.stdout
    refused = host.run(
        f"curl -sf -o /dev/null --cacert /etc/pebble/listener.crt --resolve {NAME}:443:127.0.0.1 https://{NAME}/"
    )
    assert refused.rc == 60, "a CA that did not sign the served certificate must be refused"


def test_nginx_was_reloaded_not_restarted(host):
    before = host.file("/root/nginx.pid.prepare").content_string.strip()
    assert host.file("/run/nginx.pid").content_string.strip() == before
    # The reload happened: the master still runs, and its workers serve the new certificate (first test).
    assert host.process.get(pid=int(before)).comm == "nginx"


def test_key_files_are_private_and_challenges_are_gone(host):
    for path in (f"{STORE}/privkey.pem", "/etc/ssl/locksmith/nginx/privkey.pem", "/etc/ssl/locksmith/acme/account.key"):
        assert host.file(path).mode == 0o600, path
    assert (
        host.file("/etc/ssl/locksmith/nginx/fullchain.pem").content_string
        == host.file(f"{STORE}/fullchain.pem").content_string
    )
    assert host.check_output("find /var/www/acme/.well-known/acme-challenge -type f | wc -l") == "0"


def test_pebble_validated_http01_through_nginx(host):
    """Port 80 redirects (web_hardening) and the HTTPS server serves the answer from certificates_webroot."""
    log = host.check_output("tail -n 2000 /var/log/nginx/access.log")
    challenge = r'"GET /\.well-known/acme-challenge/\S+ HTTP/[0-9.]+" '
    assert re.search(challenge + "301 ", log), log[-2000:]
    assert re.search(challenge + "200 ", log), log[-2000:]
