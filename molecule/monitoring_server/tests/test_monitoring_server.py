"""End to end: real Prometheus scrapes real exporters, alerts reach a webhook and resolve.

The scenario's test profile evaluates every 5 s and gives every alert a 5 s `for:`, so each fault
should be notified within seconds; the measured fault-to-notification times are printed.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from pathlib import Path

import yaml

PROM = "http://127.0.0.1:9090"
AM = "http://127.0.0.1:9093"
TEXTFILE = "/var/lib/prometheus/node-exporter"
MONITORING = "monitoring_server-bookworm"
WEB = "monitoring_server-web"


def _get(host, url):
    return json.loads(host.check_output(f"curl -fsS '{url}'"))


def _notifications(host):
    out = host.run("cat /var/log/webhook.jsonl 2>/dev/null").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _wait_for(host, alertname, status, since, timeout=180, host_label=None):
    """Seconds from `since` until the webhook got `alertname` with `status` (for `host_label`), or fail."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for note in _notifications(host):
            for alert in note["body"].get("alerts", []):
                if host_label and alert["labels"].get("host") != host_label:
                    continue
                if alert["labels"].get("alertname") == alertname and alert["status"] == status:
                    if note["received"] >= since:
                        return note["received"] - since
        time.sleep(1)
    raise AssertionError(f"{alertname} {status} not notified within {timeout}s: {_notifications(host)[-3:]}")


def _write_metrics(host, name, text):
    host.check_output(f"printf '{text}' > {TEXTFILE}/.{name}.tmp && mv {TEXTFILE}/.{name}.tmp {TEXTFILE}/{name}.prom")


def test_every_target_is_scraped_and_rules_are_loaded(host):
    deadline = time.time() + 120
    while True:
        targets = _get(host, f"{PROM}/api/v1/targets")["data"]["activeTargets"]
        seen = {(t["labels"]["job"], t["labels"]["host"]): t["health"] for t in targets}
        if (len(seen) >= 5 and set(seen.values()) == {"up"}) or time.time() > deadline:
            break
        time.sleep(2)
    # Generated from the inventory groups: node on all, postgres on database, mtail on web.
    assert seen == {
        ("prometheus", MONITORING): "up",
        ("node", MONITORING): "up",
        ("postgres", MONITORING): "up",
        ("node", WEB): "up",
        ("mtail", WEB): "up",
    }
    web_targets = {t["scrapeUrl"] for t in targets if t["labels"]["host"] == WEB}
    assert not any("127.0.0.1" in url for url in web_targets), web_targets  # the web host's private address
    groups = _get(host, f"{PROM}/api/v1/rules")["data"]["groups"]
    alerts = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert {"HostDown", "PostgresDown", "BackupStale", "TlsCertExpiresIn7Days", "SLOErrorBudgetBurn"} <= alerts


def test_listeners_are_private(host):
    listening = host.check_output("ss -Htln")
    for port in (9090, 9093, 9115):
        assert f"127.0.0.1:{port} " in listening, port
    assert ":9094 " not in listening  # no Alertmanager cluster port


def test_https_probe_ca_is_installed_and_loaded_by_the_exporter(host):
    """The scenario's probe CA: root-owned, world-readable, named by the https_2xx module, and loadable by the
    exporter running as its service user (a probe gets past loading it to the connection)."""
    path = "/etc/prometheus/blackbox-https-probe-ca.pem"
    ca = host.file(path)
    assert (ca.user, ca.group, ca.mode) == ("root", "prometheus", 0o644)
    expected = (Path(__file__).resolve().parents[1] / "files" / "probe-ca.pem").read_text()
    assert ca.content_string == expected.strip() + "\n"
    module = yaml.safe_load(host.file("/etc/prometheus/blackbox.yml").content_string)["modules"]["https_2xx"]
    assert module["http"]["tls_config"] == {"min_version": "TLS12", "ca_file": path}
    # Nothing listens on port 9: the probe fails at the connection, after the CA was read (unreadable or not PEM,
    # it fails before, with "unable to load specified CA cert").
    query = urllib.parse.urlencode({"module": "https_2xx", "target": "https://127.0.0.1:9/", "debug": "true"})
    log = host.check_output(f"curl -fsS 'http://127.0.0.1:9115/probe?{query}'")
    assert "connection refused" in log and "CA cert" not in log, log


def test_database_down_is_notified_and_resolves(host):
    start = time.time()
    host.check_output("systemctl stop postgresql@15-main")
    try:
        fired = _wait_for(host, "PostgresDown", "firing", start)
    finally:
        restart = time.time()
        host.check_output("systemctl start postgresql@15-main")
    resolved = _wait_for(host, "PostgresDown", "resolved", restart)
    print(f"PostgresDown: fault to notification {fired:.1f}s, restart to resolved {resolved:.1f}s")
    assert fired < 60


def test_stale_backup_and_expiring_certificate_are_notified(host):
    now = int(time.time())
    start = time.time()
    _write_metrics(
        host,
        "locksmith_backup_verify",
        'locksmith_backup_last_success_timestamp_seconds{database="app",destination="local"} %d\\n'
        'locksmith_backup_rpo_target_seconds{database="app"} 3600\\n' % (now - 7200),
    )
    _write_metrics(
        host,
        "locksmith_tls_verify",
        'locksmith_tls_cert_not_after_timestamp_seconds{endpoint="web:443"} %d\\n' % (now + 3 * 86400),
    )
    try:
        stale = _wait_for(host, "BackupStale", "firing", start)
        expiring = _wait_for(host, "TlsCertExpiresIn7Days", "firing", start)
        # The 7-day alert inhibits the 30-day one for the same endpoint.
        inhibited = _get(host, f"{AM}/api/v2/alerts?filter=alertname%3D%22TlsCertExpiresIn30Days%22")
        assert inhibited and all(a["status"]["inhibitedBy"] for a in inhibited)
    finally:
        host.check_output(f"rm -f {TEXTFILE}/locksmith_backup_verify.prom {TEXTFILE}/locksmith_tls_verify.prom")
    print(f"BackupStale notified after {stale:.1f}s, TlsCertExpiresIn7Days after {expiring:.1f}s")
    notified = {a["labels"]["alertname"] for n in _notifications(host) for a in n["body"]["alerts"]}
    assert "TlsCertExpiresIn30Days" not in notified


def _alerts(host, alertname, host_label):
    alerts = _get(host, f"{AM}/api/v2/alerts?filter=alertname%3D%22{alertname}%22")
    return [a for a in alerts if a["labels"].get("host") == host_label]


def _post_alert(host, labels):
    body = json.dumps([{"labels": labels, "annotations": {"summary": "posted by the molecule verify step"}}])
    host.check_output(f"curl -fsS -X POST -H 'Content-Type: application/json' -d '{body}' {AM}/api/v2/alerts")


def _notified_since(host, since, alertname, host_label):
    return [
        a
        for note in _notifications(host)
        if note["received"] >= since
        for a in note["body"]["alerts"]
        if a["labels"].get("alertname") == alertname and a["labels"].get("host") == host_label
    ]


def test_stopped_host_container_is_notified_and_silences_its_service_alerts(host):
    """podman stop on the web host: HostDown reaches the webhook; no ExporterDown for its mtail; another alert
    about that host is inhibited by HostDown and never notified."""
    start = time.time()
    subprocess.run(["podman", "stop", "--time", "5", WEB], check=True, capture_output=True)
    down = _wait_for(host, "HostDown", "firing", start, host_label=WEB)
    print(f"HostDown (podman stop {WEB}): fault to notification {down:.1f}s")
    # mtail on the stopped host is unreachable too, but that is the same fault: ExporterDown never goes active,
    # over three evaluation intervals past the profile's 5 s `for:`.
    deadline = time.time() + 20
    while time.time() < deadline:
        assert not _alerts(host, "ExporterDown", WEB), "ExporterDown fired for a host that is down"
        time.sleep(1)
    assert not _notified_since(host, start, "ExporterDown", WEB)
    # An alert about the host from another source (here posted to Alertmanager's API) is inhibited by HostDown.
    posted = time.time()
    _post_alert(host, {"alertname": "LocksmithVerifyProbe", "host": WEB, "severity": "critical"})
    deadline = time.time() + 30
    while not (active := _alerts(host, "LocksmithVerifyProbe", WEB)) and time.time() < deadline:
        time.sleep(1)
    assert active, "the posted alert never reached Alertmanager"
    assert all(a["status"]["inhibitedBy"] and a["status"]["state"] == "suppressed" for a in active), active
    # Several group intervals later the receiver still has got nothing about it.
    time.sleep(10)
    assert not _notified_since(host, posted, "LocksmithVerifyProbe", WEB)
    # The same alert about a host that is up is notified: the inhibition is per host, not a dead route.
    again = time.time()
    _post_alert(host, {"alertname": "LocksmithVerifyProbe", "host": MONITORING, "severity": "critical"})
    notified = _wait_for(host, "LocksmithVerifyProbe", "firing", again, timeout=60, host_label=MONITORING)
    print(f"HostDown inhibits the stopped host's other alerts; for {MONITORING} notified after {notified:.1f}s")
