"""Behaviour of roles log_host and log_forwarding together: lines written on the web host reach the log host over
TLS, and only over TLS from a permitted certificate; the queue survives a log host outage; retention keeps 30 days.

The tests run on the log host (the verifier's host) and reach the web host through testinfra.get_host.
"""

import datetime
import json
import os
import subprocess
import time
import uuid

import pytest
import testinfra

WEB = "log_forwarding-web"
REMOTE_DIR = "/var/log/remote"
WEB_DIR = f"{REMOTE_DIR}/web"
PORT = 6514
RETENTION_DAYS = 30
LOGROTATE_FILE = "/etc/logrotate.d/locksmith-remote"


@pytest.fixture(scope="module")
def web():
    return testinfra.get_host(f"podman://{WEB}")


def _marker(kind):
    return f"locksmith-{kind}-{uuid.uuid4()}"


def _wait_for_line(host, marker, path, timeout=20.0):
    """Seconds until marker appears in path (a file or a glob) on host; fails after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if host.run(f"grep -l -F -- {marker} {path}").rc == 0:
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"{marker} did not reach {path} within {timeout} s")


def _listen_address(host):
    return host.check_output("hostname -I").split()[0]


def test_auth_line_written_on_web_appears_on_log_host(host, web):
    marker = _marker("test")
    web.check_output(f"logger -t locksmith-test -p authpriv.notice {marker}")
    elapsed = _wait_for_line(host, marker, f"{WEB_DIR}/locksmith-test.log")
    print(f"authpriv line from web to log host in {elapsed:.2f} s")
    line = host.check_output(f"grep -F -- {marker} {WEB_DIR}/locksmith-test.log")
    assert marker in line
    remote_file = host.file(f"{WEB_DIR}/locksmith-test.log")
    assert (remote_file.user, remote_file.group, remote_file.mode) == ("root", "adm", 0o640)
    # The log host keeps received lines out of its own logs.
    assert host.run(f"grep -r -F -- {marker} /var/log/syslog /var/log/auth.log").rc != 0


# Runs on the log host: records, for each new line holding the prefix, its arrival time minus the time the web host
# stamped on it (both containers share this machine's clock).
LATENCY_PROBE = """
import datetime, json, os, sys, time
path, prefix, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
position = os.path.getsize(path)
pending, delays, end = "", [], time.time() + timeout
while len(delays) < count and time.time() < end:
    with open(path) as log:
        log.seek(position)
        pending += log.read()
        position = log.tell()
    now = time.time()
    *lines, pending = pending.split("\\n")
    for line in lines:
        if prefix in line:
            delays.append(now - datetime.datetime.fromisoformat(line.split()[0]).timestamp())
    time.sleep(0.005)
print(json.dumps(sorted(delays)))
"""
LATENCY_LINES = 20
# Read by docs/logging.md; .build/ holds build artefacts and is not tracked.
FIGURES_FILE = os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), ".build", "logging-figures.json")


def test_delivery_latency_from_web_to_log_host(host, web):
    """20 lines, 0.25 s apart: each reaches the log host's file within 2 s; figures go to FIGURES_FILE."""
    prefix = _marker("latency")
    log_file = f"{WEB_DIR}/locksmith-test.log"
    host.check_output(
        "nohup python3 -c %s %s %s %s 60 > /root/locksmith-latency.json 2>&1 &",
        LATENCY_PROBE,
        log_file,
        prefix,
        str(LATENCY_LINES),
    )
    time.sleep(0.5)
    web.check_output(
        f"for i in $(seq {LATENCY_LINES}); do logger -t locksmith-test -p authpriv.notice {prefix}-$i; sleep 0.25; done"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not host.file("/root/locksmith-latency.json").content_string.strip():
        time.sleep(0.2)
    delays = json.loads(host.file("/root/locksmith-latency.json").content_string)
    assert len(delays) == LATENCY_LINES, delays
    figures = {
        "lines": len(delays),
        "min_seconds": round(delays[0], 3),
        "median_seconds": round(delays[len(delays) // 2], 3),
        "max_seconds": round(delays[-1], 3),
    }
    with open(FIGURES_FILE, "w", encoding="utf-8") as out:
        json.dump(figures, out)
    print(figures)
    assert delays[-1] < 2.0, figures


def test_sudo_reaches_log_host_as_its_own_program(host, web):
    marker = _marker("sudo")
    web.run(f"sudo -u nobody true {marker}")
    _wait_for_line(host, marker, f"{WEB_DIR}/sudo.log")


def test_nginx_access_log_line_is_forwarded(host, web):
    marker = _marker("nginx")
    web.check_output(f"echo '127.0.0.1 - - \"GET /{marker} HTTP/1.1\" 200 5' >> /var/log/nginx/access.log")
    _wait_for_line(host, marker, f"{WEB_DIR}/nginx-access.log")


def test_only_present_log_files_are_read(web):
    config = web.file("/etc/rsyslog.d/60-locksmith-forward.conf").content_string
    assert 'File="/var/log/nginx/access.log"' in config
    assert "/var/log/postgresql" not in config
    assert "/var/log/fail2ban.log" not in config


def test_log_host_listens_on_its_private_address_only(host):
    address = _listen_address(host)
    listeners = host.check_output(f"ss -Htln sport = :{PORT}").split("\n")
    local = [line.split()[3] for line in listeners if line.strip()]
    assert local == [f"{address}:{PORT}"]


def test_web_is_connected_over_tls_to_6514(host, web):
    established = web.check_output(f"ss -Htnp state established dport = :{PORT}")
    assert "rsyslogd" in established
    assert f"{_listen_address(host)}:{PORT}" in established
    # The log host presents a certificate for "loghost" signed by the lab CA, and speaks TLS on 6514.
    probe = (
        "import socket, ssl; "
        "ctx = ssl.create_default_context(cafile='/etc/rsyslog-tls/ca.pem'); "
        f"s = ctx.wrap_socket(socket.create_connection(('loghost', {PORT}), timeout=5), server_hostname='loghost'); "
        "print(s.version(), dict(x[0] for x in s.getpeercert()['subject'])['commonName'])"
    )
    version, name = web.check_output(f'python3 -c "{probe}"').split()
    assert version.startswith("TLSv1.")
    assert name == "loghost"


def _send(web, payload, use_tls, certificate=None):
    """Send one syslog line to the log host from web, plain or with TLS (optionally with a client certificate)."""
    script = [
        "import socket, ssl, sys",
        f"s = socket.create_connection(('loghost', {PORT}), timeout=5)",
    ]
    if use_tls:
        script.append("ctx = ssl.create_default_context(cafile='/etc/rsyslog-tls/ca.pem')")
        if certificate:
            script.append(f"ctx.load_cert_chain({certificate[0]!r}, {certificate[1]!r})")
        script.append("s = ctx.wrap_socket(s, server_hostname='loghost')")
    script += [
        f"s.sendall({payload.encode()!r})",
        "s.settimeout(2)",
        "try:\n    s.recv(1)\nexcept Exception:\n    pass",
        "s.close()",
    ]
    return web.run("python3 -c %s", "\n".join(script))


def test_plain_tcp_and_uncertified_tls_lines_are_not_logged(host, web):
    plain = _marker("plain")
    anonymous = _marker("anonymous")
    _send(web, f"<13>Nov 27 00:00:00 web intruder: {plain}\n", use_tls=False)
    _send(web, f"<13>Nov 27 00:00:00 web intruder: {anonymous}\n", use_tls=True)
    # A permitted client's line sent afterwards arrives, so the two above had their chance.
    marker = _marker("after")
    web.check_output(f"logger -t locksmith-test -p authpriv.notice {marker}")
    _wait_for_line(host, marker, f"{WEB_DIR}/locksmith-test.log")
    time.sleep(1)
    for refused in (plain, anonymous):
        assert host.run(f"grep -r -F -- {refused} {REMOTE_DIR} /var/log/syslog").rc == 1


def test_client_certificate_is_what_admits_a_line(host, web):
    """The same TLS client, with web's certificate, gets its line logged: the refusal above is the missing cert."""
    marker = _marker("certified")
    _send(
        web,
        f"<85>Nov 27 00:00:00 web certified: {marker}\n",
        use_tls=True,
        certificate=("/etc/rsyslog-tls/client.pem", "/etc/rsyslog-tls/client.key"),
    )
    _wait_for_line(host, marker, f"{WEB_DIR}/certified.log")


def _log(web, marker):
    web.check_output(f"logger -t locksmith-test -p authpriv.notice {marker}")


def test_lines_written_during_a_log_host_outage_arrive_after_it(host, web):
    # syslog.socket too: a local message on the log host would otherwise start rsyslog again at once.
    host.check_output("systemctl stop syslog.socket rsyslog.service")
    try:
        first, second = _marker("outage"), _marker("outage")
        _log(web, first)  # this send finds the connection closed and suspends the action
        time.sleep(2)
        _log(web, second)
        time.sleep(2)
    finally:
        host.check_output("systemctl start syslog.socket rsyslog.service")
    for marker in (first, second):
        elapsed = _wait_for_line(host, marker, f"{WEB_DIR}/locksmith-test.log", timeout=90)
    print(f"lines queued during the outage arrived {elapsed:.1f} s after the log host restarted")


def test_queue_survives_a_forwarder_restart_during_an_outage(host, web):
    """Lines queued while the log host is down are saved to disk when the forwarder stops, and sent after."""
    host.check_output("systemctl stop syslog.socket rsyslog.service")
    try:
        probe, queued = _marker("probe"), _marker("spooled")
        _log(web, probe)  # finds the connection closed; rsyslog may lose this one line on restart (docs/logging.md)
        time.sleep(2)
        _log(web, queued)
        time.sleep(1)
        web.check_output("systemctl restart rsyslog")
    finally:
        host.check_output("systemctl start syslog.socket rsyslog.service")
    # The queued line existed only in the stopped forwarder's queue: it arrives only if that queue was saved.
    elapsed = _wait_for_line(host, queued, f"{WEB_DIR}/locksmith-test.log", timeout=90)
    print(f"line saved across the forwarder restart arrived {elapsed:.1f} s after the log host restarted")
    probe_arrived = host.run(f"grep -q -F -- {probe} {WEB_DIR}/locksmith-test.log").rc == 0
    print(f"line that found the connection closed arrived: {probe_arrived}")


def test_retention_keeps_30_days_of_rotations(host):
    """Forced rotation: 35 daily rotations become the newest 30; a stale host's old rotation is deleted."""
    rotated_dir = f"{REMOTE_DIR}/retention-check"
    stale_dir = f"{REMOTE_DIR}/retention-stale"
    today = datetime.date.today()
    host.check_output(f"rm -rf {rotated_dir} {stale_dir} && mkdir -p {rotated_dir} {stale_dir}")
    host.check_output(f"echo line > {rotated_dir}/probe.log")
    for age in range(1, 36):
        day = today - datetime.timedelta(days=age)
        name = f"{rotated_dir}/probe.log-{day:%Y%m%d}.gz"
        host.check_output(f"echo old | gzip > {name} && touch -d '{day:%Y-%m-%d} 12:00' {name}")
    stale = f"{stale_dir}/gone.log-20200101.gz"
    host.check_output(f"echo old | gzip > {stale} && touch -d '2020-01-01 12:00' {stale}")
    try:
        host.check_output(f"logrotate --force --state /tmp/locksmith-logrotate.state {LOGROTATE_FILE}")
        kept = sorted(host.check_output(f"ls {rotated_dir}").split())
        rotated = [name for name in kept if name.startswith("probe.log-")]
        assert len(rotated) == RETENTION_DAYS, kept
        assert rotated[-1] == f"probe.log-{today:%Y%m%d}.gz"
        oldest = datetime.datetime.strptime(rotated[0], "probe.log-%Y%m%d.gz").date()
        assert (today - oldest).days == RETENTION_DAYS - 1
        assert not host.file(stale).exists
        assert "rotate 30" in host.file(LOGROTATE_FILE).content_string
    finally:
        host.check_output(f"rm -rf {rotated_dir} {stale_dir} /tmp/locksmith-logrotate.state")


def _run_preflight(extra_vars, limit):
    """Run only the always-tagged preflight of the logging playbook with extra vars; returns the run."""
    return subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "--limit",
            limit,
            "--tags",
            "locksmith_preflight_only",
            "--extra-vars",
            json.dumps(extra_vars),
            os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "playbooks", "logging.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
        timeout=180,
    )


def test_preflight_refuses_listening_on_every_address(host):
    before = host.file("/etc/rsyslog.d/40-locksmith-receive.conf").sha256sum
    # Not a bind: the address the preflight must refuse.
    run = _run_preflight({"log_host_listen_address": "0.0.0.0"}, "log_forwarding-loghost")  # noqa: S104
    assert run.returncode == 2, run.stdout + run.stderr
    failure = " ".join(run.stderr.split())
    assert "log_host_listen_address is '0.0.0.0', which listens on every interface" in failure, run.stderr
    assert host.file("/etc/rsyslog.d/40-locksmith-receive.conf").sha256sum == before


def test_preflight_refuses_an_empty_target(web):
    run = _run_preflight({"log_forwarding_target": ""}, WEB)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "log_forwarding_target is '' on log_forwarding-web" in " ".join(run.stderr.split()), run.stderr
