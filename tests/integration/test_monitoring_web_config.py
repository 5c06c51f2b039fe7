"""Exporter web config (TLS and basic auth) end to end on 127.0.0.1, with real binaries.

The data comes from the roles' own variables: a playbook loads roles/<role>/defaults/main.yml and
vars/main.yml and dumps the values the role's tasks dump (`_monitoring_agents_web_config` to the
exporters' web config, `_monitoring_agents_node_args` to node_exporter's command line,
`_monitoring_server_prometheus_config` to prometheus.yml, the scrape password to its password file).
Only paths and ports are overridden, so the files are what the roles write on a host.

Debian's prometheus-node-exporter started with that web config refuses plain HTTP and missing or
wrong credentials and serves metrics over TLS with the right ones; a real Prometheus with the
generated scrape config (https, tls_config ca_file, basic_auth password_file) scrapes it with
up == 1, while the same job without credentials, or over http, gets up == 0 (so the check can fail).
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import secrets
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import pytest
import yaml

from tests.harness.process import ManagedProcess, free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
NODE_EXPORTER = shutil.which("prometheus-node-exporter")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    None in (NODE_EXPORTER, PROMETHEUS, PROMTOOL), reason="Debian prometheus and prometheus-node-exporter needed"
)
USER = "prometheus"
NICE = "{{ %s | to_nice_yaml(indent=2, width=1000) }}"  # how monitoring_server's tasks dump its configs


def _bcrypt(password: str) -> str:
    """glibc crypt(3) makes the bcrypt hashes exporter-toolkit reads (no bcrypt module in the venv)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated module, imported where its warning is silenced

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))  # noqa: S324 - bcrypt


def _render(ansible, role: str, outputs: dict[str, str], extra_vars: dict, tmp_path: Path) -> None:
    """Evaluate a role's defaults and vars with ``extra_vars`` on top; write each expression to its file."""
    ansible.render_role_vars(
        role, outputs, extra_vars, tmp_path, host_vars="monitoring_agents_listen_address=127.0.0.1"
    )


def _get(url: str, context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)  # noqa: S310 - the test's own http(s) URLs
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310 - test URLs
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


@pytest.fixture
def exporter(ansible, cert_factory, tmp_path):
    """node_exporter started the way monitoring_agents runs it, with TLS and basic auth."""
    leaf = cert_factory.leaf("localhost")
    fullchain = tmp_path / "exporter-fullchain.pem"
    fullchain.write_text(leaf.cert_path.read_text() + leaf.chain_path.read_text())
    password = secrets.token_urlsafe(18)
    port = free_port()
    web_config, args = tmp_path / "web-config.yml", tmp_path / "node-args.json"
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    _render(
        ansible,
        "monitoring_agents",
        {
            web_config: "{{ _monitoring_agents_web_config | to_nice_yaml(indent=2) }}",
            args: "{{ _monitoring_agents_node_args | to_json }}",
        },
        {
            "monitoring_agents_web_tls_cert_file": str(fullchain),
            "monitoring_agents_web_tls_key_file": str(leaf.key_path),
            "monitoring_agents_web_basic_auth_users": {USER: _bcrypt(password)},
            "monitoring_agents_node_exporter_port": port,
            "monitoring_agents_textfile_dir": str(textfile_dir),
            # systemd needs the host's D-Bus; the web layer under test is the same for every collector.
            "monitoring_agents_node_exporter_collectors": [],
            "_monitoring_agents_web_config_file": str(web_config),
        },
        tmp_path,
    )
    argv = json.loads(args.read_text())
    assert f"--web.config.file={web_config}" in argv
    assert f"--web.listen-address=127.0.0.1:{port}" in argv
    (textfile_dir / "probe.prom").write_text("locksmith_web_config_probe 1\n")
    proc = ManagedProcess([NODE_EXPORTER, *argv], log=tmp_path / "node_exporter.log").start()
    wait_for_port("127.0.0.1", port, timeout=15, proc=proc.proc, log=proc.log)
    yield {"port": port, "password": password, "proc": proc, "web_config": web_config}
    proc.stop()


def test_exporter_refuses_plain_http_and_bad_credentials_and_serves_tls_with_the_right_ones(exporter, cert_factory):
    url = f"127.0.0.1:{exporter['port']}/metrics"
    trusted = ssl.create_default_context(cafile=str(cert_factory.ca_file))
    config = yaml.safe_load(exporter["web_config"].read_text())
    assert set(config) == {"tls_server_config", "basic_auth_users"}
    assert config["basic_auth_users"][USER].startswith("$2b$"), "only a bcrypt hash, never the password"

    status, body = _get("http://" + url)
    assert status == 400 and "node_" not in body, (status, body[:200])
    for auth in (None, (USER, "wrong-" + exporter["password"]), ("someone", exporter["password"])):
        status, body = _get("https://" + url, trusted, auth)
        assert status == 401 and "node_" not in body, (auth and auth[0], status, body[:200])
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        _get("https://" + url, ssl.create_default_context(), (USER, exporter["password"]))

    status, body = _get("https://" + url, trusted, (USER, exporter["password"]))
    assert status == 200, (status, body[:200])
    assert "node_exporter_build_info" in body
    assert "locksmith_web_config_probe 1" in body, "the textfile collector directory the role sets"


def _wait_ready(port: int, proc: ManagedProcess, timeout: float = 60) -> None:
    """The port opens before the TSDB is loaded; the API answers 503 until /-/ready does 200."""
    wait_for_port("127.0.0.1", port, timeout=timeout, proc=proc.proc, log=proc.log)
    deadline = time.monotonic() + timeout
    while _get(f"http://127.0.0.1:{port}/-/ready")[0] != 200:
        assert time.monotonic() < deadline, f"Prometheus not ready\n{proc.log.read_text()[-2000:]}"
        time.sleep(0.2)


def _alerts(port: int) -> list[dict]:
    status, body = _get(f"http://127.0.0.1:{port}/api/v1/alerts")
    assert status == 200, body
    return json.loads(body)["data"]["alerts"]


def _query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = _get(url)
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def test_generated_scrape_config_scrapes_the_tls_exporter(ansible, exporter, cert_factory, tmp_path):
    password_file, config_file = tmp_path / "scrape.password", tmp_path / "prometheus.yml"
    prometheus_port = free_port()
    defaults = yaml.safe_load((REPO / "roles" / "monitoring_server" / "defaults" / "main.yml").read_text())
    node_job = next(job for job in defaults["monitoring_server_scrape_jobs"] if job["job"] == "node")
    _render(
        ansible,
        "monitoring_server",
        {
            password_file: "{{ monitoring_server_scrape_basic_auth_password }}",
            config_file: NICE % "_monitoring_server_prometheus_config",
        },
        {
            "monitoring_server_scrape_jobs": [dict(node_job, port=exporter["port"])],
            "monitoring_server_scrape_ca_file": str(cert_factory.ca_file),
            "monitoring_server_scrape_basic_auth_username": USER,
            "monitoring_server_scrape_basic_auth_password": exporter["password"],
            "monitoring_server_prometheus_port": prometheus_port,
            "monitoring_server_alertmanager_enabled": False,
            "monitoring_server_scrape_interval": "1s",
            "monitoring_server_evaluation_interval": "1s",
            "_monitoring_server_scrape_password_file": str(password_file),
            "_monitoring_server_rules_dir": str(tmp_path / "rules"),
        },
        tmp_path,
    )
    text = config_file.read_text()
    assert exporter["password"] not in text, "the password stays in its file"
    config = yaml.safe_load(text)
    node = next(job for job in config["scrape_configs"] if job["job_name"] == "node")
    assert node["scheme"] == "https"
    assert node["tls_config"] == {"ca_file": str(cert_factory.ca_file)}
    assert node["basic_auth"] == {"username": USER, "password_file": str(password_file)}
    # The same target without credentials, and over plain http: both must fail, or up == 1 proves nothing.
    config["scrape_configs"] += [
        {k: v for k, v in dict(node, job_name="node_no_auth").items() if k != "basic_auth"},
        {k: v for k, v in dict(node, job_name="node_http").items() if k not in ("scheme", "tls_config")},
    ]
    config_file.write_text(yaml.safe_dump(config))
    check = subprocess.run([PROMTOOL, "check", "config", str(config_file)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr

    server = ManagedProcess(
        [
            PROMETHEUS,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        log=tmp_path / "prometheus.log",
    ).start()
    try:
        _wait_ready(prometheus_port, server)
        up: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(up) < 3:
            up = {r["metric"]["job"]: float(r["value"][1]) for r in _query(prometheus_port, 'up{job=~"node.*"}')}
            time.sleep(0.5)
        assert up == {"node": 1.0, "node_no_auth": 0.0, "node_http": 0.0}, up
        probe = _query(prometheus_port, 'locksmith_web_config_probe{job="node"}')
        assert [(r["metric"]["host"], r["value"][1]) for r in probe] == [("localhost", "1")]
    finally:
        server.stop()


# ---- Alertmanager routing and the time to detect with the production defaults ----------------------
AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager")


@pytest.mark.skipif(AMTOOL is None, reason="amtool (Debian prometheus-alertmanager) is not installed")
def test_critical_route_waits_5s_and_reaches_every_paging_receiver(ansible, tmp_path):
    config_file = tmp_path / "alertmanager.yml"
    _render(
        ansible,
        "monitoring_server",
        {config_file: NICE % "_monitoring_server_alertmanager_config"},
        {
            "monitoring_server_pagerduty_routing_key": "0123456789abcdef0123456789abcdef",
            "monitoring_server_slack_webhook_url": "https://hooks.slack.example/services/T0/B0/x",
            "monitoring_server_email_to": "oncall@example.com",
            "monitoring_server_email_from": "alertmanager@example.com",
            "monitoring_server_email_smarthost": "smtp.example.com:587",
            "monitoring_server_webhook_urls": ["https://hooks.example.com/alerts"],
        },
        tmp_path,
    )
    check = subprocess.run([AMTOOL, "check-config", str(config_file)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    route = yaml.safe_load(config_file.read_text())["route"]
    assert route["group_wait"] == "30s", "warnings stay batched"
    critical = [r for r in route["routes"] if r.get("matchers") == ['severity="critical"']]
    assert [r["group_wait"] for r in critical] == ["5s"]

    def receivers(*labels: str) -> str:
        argv = [AMTOOL, "config", "routes", "test", f"--config.file={config_file}", *labels]
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()

    assert receivers("alertname=PostgresDown", "severity=critical") == "email,webhook,pagerduty"
    assert receivers("alertname=HostHighCpu", "severity=warning") == "email,webhook,slack"
    assert receivers("alertname=Other", "severity=info") == "email,webhook"


class _Receiver(http.server.ThreadingHTTPServer):
    """The webhook receiver standing in for PagerDuty: records (arrival time, payload)."""

    def __init__(self):
        self.received: list[tuple[float, dict]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def _notified(receiver, status, since, timeout):
    """Time a HostDown notification with `status` reached the receiver after `since`, or None."""
    deadline = since + timeout
    while time.time() < deadline:
        for at, payload in receiver.received:
            names = {alert["labels"].get("alertname") for alert in payload["alerts"]}
            if at >= since and payload["status"] == status and "HostDown" in names:
                return at
        time.sleep(0.2)
    return None


def _page_after_outage(receiver, prometheus_port, exporter_proc, interval, label, alertmanager_log):
    """Stop the exporter at a random point of the scrape interval; seconds until HostDown fires at the receiver."""
    # Callers come right after a scrape or a notification: a random wait puts the fault anywhere in the interval.
    time.sleep(secrets.randbelow(interval * 1000) / 1000)
    exporter_proc.stop()
    fault = time.time()
    arrived = _notified(receiver, "firing", fault, timeout=90)
    assert arrived is not None, (
        f"HostDown ({label}) never reached the receiver\n" + alertmanager_log.read_text()[-2000:]
    )
    # Where the time went: the first failed scrape, the evaluation that made the alert pending, `for:`, then
    # Alertmanager's wait (group_wait for a new group, group_interval for one that exists) and the delivery.
    samples = _query(prometheus_port, 'up{job="node"}[3m]')[0]["values"]
    failed = min(float(ts) for ts, value in samples if value == "0" and float(ts) >= fault - 1)
    active = next(a for a in _alerts(prometheus_port) if a["labels"]["alertname"] == "HostDown")["activeAt"]
    pending = datetime.datetime.fromisoformat(active[:26].rstrip("Z") + "+00:00").timestamp()
    print(
        f"\nHostDown ({label}), production defaults: fault to webhook {arrived - fault:.1f} s = to the failed "
        f"scrape {failed - fault:.1f} s + to the evaluation {pending - failed:.1f} s + for 30 s + "
        f"Alertmanager and delivery {arrived - pending - 30:.1f} s"
    )
    return arrived - fault


@pytest.mark.skipif(ALERTMANAGER is None, reason="Debian prometheus-alertmanager is not installed")
def test_host_down_pages_within_the_documented_bounds_with_the_production_defaults(
    ansible, exporter, cert_factory, tmp_path
):
    """Stop the TLS node_exporter; HostDown must reach the webhook between for + group_wait (35 s) and
    scrape + evaluation + for + group_wait (55 s with the defaults) plus 5 s of slack (docs/monitoring.md,
    "Time to detect"). Then the exporter comes back, the alert resolves, and a second outage minutes later must
    page within for and scrape + evaluation + for + group_interval (60 s) plus the slack: its alert group still
    exists (Prometheus re-sends a resolved alert for 15 minutes), so it waits for the critical route's
    group_interval, not group_wait."""
    prometheus_port, alertmanager_port = free_port(), free_port()
    receiver = _Receiver()
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for path in (REPO / "roles" / "monitoring_server" / "files" / "rules").glob("*.rules.yml"):
        shutil.copy(path, rules_dir / path.name)  # alert_rules_for('') returns production rules unchanged
    defaults = yaml.safe_load((REPO / "roles" / "monitoring_server" / "defaults" / "main.yml").read_text())
    node_job = next(job for job in defaults["monitoring_server_scrape_jobs"] if job["job"] == "node")
    files = {name: tmp_path / name for name in ("prometheus.yml", "alertmanager.yml", "am-args.json", "password")}
    _render(
        ansible,
        "monitoring_server",
        {
            files["password"]: "{{ monitoring_server_scrape_basic_auth_password }}",
            files["prometheus.yml"]: NICE % "_monitoring_server_prometheus_config",
            files["alertmanager.yml"]: NICE % "_monitoring_server_alertmanager_config",
            files["am-args.json"]: "{{ _monitoring_server_alertmanager_args | to_json }}",
        },
        {
            # Production intervals, for: and group_wait; only addresses, ports and paths differ.
            "monitoring_server_scrape_jobs": [dict(node_job, port=exporter["port"])],
            "monitoring_server_scrape_ca_file": str(cert_factory.ca_file),
            "monitoring_server_scrape_basic_auth_username": USER,
            "monitoring_server_scrape_basic_auth_password": exporter["password"],
            "monitoring_server_prometheus_port": prometheus_port,
            "monitoring_server_alertmanager_port": alertmanager_port,
            "monitoring_server_webhook_urls": [f"http://127.0.0.1:{receiver.server_address[1]}/alerts"],
            "_monitoring_server_scrape_password_file": str(files["password"]),
            "_monitoring_server_rules_dir": str(rules_dir),
        },
        tmp_path,
    )
    intervals = yaml.safe_load(files["prometheus.yml"].read_text())["global"]
    assert intervals == {"scrape_interval": "10s", "evaluation_interval": "10s"}
    interval = int(intervals["scrape_interval"][:-1])
    alertmanager = ManagedProcess(
        [
            ALERTMANAGER,
            f"--config.file={files['alertmanager.yml']}",
            f"--storage.path={tmp_path / 'am'}",
            *json.loads(files["am-args.json"].read_text()),
        ],
        log=tmp_path / "alertmanager.log",
    ).start()
    prometheus = ManagedProcess(
        [
            PROMETHEUS,
            f"--config.file={files['prometheus.yml']}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        log=tmp_path / "prometheus.log",
    ).start()
    try:
        wait_for_port("127.0.0.1", alertmanager_port, timeout=30, proc=alertmanager.proc, log=alertmanager.log)
        _wait_ready(prometheus_port, prometheus)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _query(prometheus_port, 'up{job="node"} == 1') == []:
            time.sleep(1)
        assert _query(prometheus_port, 'up{job="node"} == 1'), "the TLS exporter is never scraped"
        critical = next(r for r in yaml.safe_load(files["alertmanager.yml"].read_text())["route"]["routes"]
                        if r.get("matchers") == ['severity="critical"'])  # fmt: skip
        group_wait, group_interval = (int(critical[key].rstrip("s")) for key in ("group_wait", "group_interval"))
        assert (group_wait, group_interval) == (5, 10), "the production defaults this test times"
        first = _page_after_outage(
            receiver, prometheus_port, exporter["proc"], interval, "first outage", alertmanager.log
        )
        assert 30 + group_wait <= first <= 2 * interval + 30 + group_wait + 5, first
        exporter["proc"].start()
        back = time.time()
        assert _notified(receiver, "resolved", back, timeout=60), "HostDown never resolved at the receiver"
        second = _page_after_outage(
            receiver, prometheus_port, exporter["proc"], interval, "second outage", alertmanager.log
        )
        assert 30 <= second <= 2 * interval + 30 + group_interval + 5, second
    finally:
        prometheus.stop()
        alertmanager.stop()
        receiver.shutdown()
