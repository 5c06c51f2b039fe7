"""Behaviour of role certificates on the converged host: nginx (web_hardening) serves a certificate that
Pebble issued after a real HTTP-01 validation through nginx, it chains to Pebble's root, and nginx was
reloaded, not restarted."""

import re

STORE = "/etc/ssl/locksmith/certificates/web"
NAME = "www.locksmith.test"
LIVE = ("/etc/ssl/locksmith/nginx/fullchain.pem", "/etc/ssl/locksmith/nginx/privkey.pem")


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


def _with_store_pair(host, run_role, make_pair, extra_vars=None):
    """Run the role (issuing off) on a pair ``make_pair`` puts in the store; the store is put back after."""
    host.check_output(f"cp -p {STORE}/fullchain.pem {STORE}/privkey.pem /root/")
    try:
        host.check_output(make_pair)
        return run_role({"certificates_issue_enabled": False, **(extra_vars or {})})
    finally:
        host.check_output(f"cp -p /root/fullchain.pem /root/privkey.pem {STORE}/")


def _self_signed(bits):
    return (
        f"openssl req -x509 -newkey rsa:{bits} -nodes -subj /CN={NAME} -days 30 "
        f"-keyout {STORE}/privkey.pem -out {STORE}/fullchain.pem"
    )


def _unchanged(host, live, served, pid):
    for path, content in live.items():
        assert host.file(path).content_string == content, path
    assert host.file(LIVE[1]).mode == 0o600
    # No copy of a replaced key is left beside the live one, and nginx was neither reloaded nor restarted.
    assert host.check_output("ls /etc/ssl/locksmith/nginx") == "fullchain.pem\nprivkey.pem"
    assert host.file("/run/nginx.pid").content_string.strip() == pid
    assert served_certificate(host) == served


def test_a_pair_openssl_refuses_is_never_installed(host, run_role):
    # An RSA 1024 pair matches and parses; OpenSSL's security level refuses it, as nginx and PostgreSQL would.
    live = {path: host.file(path).content_string for path in LIVE}
    served, pid = served_certificate(host), host.file("/run/nginx.pid").content_string.strip()
    rc, out = _with_store_pair(host, run_role, _self_signed(1024))
    assert rc != 0 and "OpenSSL refuses" in out and "ee key too small" in out, out[-3000:]
    _unchanged(host, live, served, pid)


def test_a_pair_nginx_refuses_is_put_back_before_any_reload(host, run_role):
    # A good pair, but nginx -t fails (here a broken server block beside it): the old pair must go back, or
    # nginx would start on the new one, or not at all, after the block is fixed.
    live = {path: host.file(path).content_string for path in LIVE}
    served, pid = served_certificate(host), host.file("/run/nginx.pid").content_string.strip()
    host.check_output("echo 'server { listen 8099; bogus_directive on; }' > /etc/nginx/conf.d/zz-broken.conf")
    # And the copy of a key an interrupted run left (Ansible's backup name): removed by the next run.
    host.check_output(f"cp -p {LIVE[1]} '{LIVE[1]}.99.2026-01-01@00:00:00~'")
    try:
        rc, out = _with_store_pair(host, run_role, _self_signed(2048))
    finally:
        host.check_output("rm -f /etc/nginx/conf.d/zz-broken.conf")
    assert rc != 0 and "unknown directive" in out and "bogus_directive" in out, out[-3000:]
    assert "The files nginx ran with were put back" in out, out[-3000:]
    _unchanged(host, live, served, pid)
    assert host.run("nginx -t -q").rc == 0
