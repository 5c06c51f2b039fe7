"""The HTTPS probe of a site whose certificate comes from a private CA, end to end on 127.0.0.1, with real binaries.

The defect this guards: monitoring_server's https_2xx module had no way to trust a private CA, so on the demo the
probe of the web host (certificate from the site's own CA) failed on every scrape with "x509: certificate signed
by unknown authority", and no alert read probe_success.

The files come from the role itself: a playbook evaluates its defaults and vars (`_monitoring_server_blackbox_config`
and `_monitoring_server_prometheus_config`) and the `content` expressions of the tasks in tasks/blackbox.yml, with
only paths and ports overridden, and the tasks' own `validate` commands check them. Debian's
prometheus-blackbox-exporter then probes an `openssl s_server` presenting a leaf of a private CA (tests/harness/tls.py):
probe_success is 1 with monitoring_server_https_probe_ca_content set to that CA, 0 with the role's default (the
system trust store) and 0 with another CA; Debian's Prometheus, with the generated probe job, scrapes it as
probe_success 1 with the probe's `host` label.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.harness.process import ManagedProcess, free_port, wait_for_port
from tests.harness.tls import CertFactory

REPO = Path(__file__).resolve().parents[2]
BLACKBOX = shutil.which("prometheus-blackbox-exporter")
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    None in (BLACKBOX, PROMETHEUS), reason="Debian prometheus-blackbox-exporter and prometheus needed"
)
TASKS = {
    task["name"]: task for task in yaml.safe_load((REPO / "roles/monitoring_server/tasks/blackbox.yml").read_text())
}
CA_TASK = TASKS["Install the HTTPS probes' CA certificate, validated as PEM certificates"]["locksmith.ops.copy"]
CONFIG_TASK = TASKS["Write the blackbox exporter's modules, validated by the exporter"]["locksmith.ops.copy"]


def _validate(task: dict, path: Path) -> subprocess.CompletedProcess:
    """The task's `validate` command on ``path``, split as the copy module splits it."""
    argv = shlex.split(task["validate"] % path)
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def _render(ansible, tmp_path: Path, name: str, extra_vars: dict) -> dict[str, Path]:
    """blackbox.yml, the probe CA file and prometheus.yml as the role writes them, under ``tmp_path/name``."""
    out = tmp_path / name
    out.mkdir()
    files = {"config": out / "blackbox.yml", "prometheus": out / "prometheus.yml"}
    outputs = {
        files["config"]: CONFIG_TASK["content"],
        files["prometheus"]: "{{ _monitoring_server_prometheus_config | to_nice_yaml(indent=2, width=1000) }}",
    }
    if extra_vars.get("monitoring_server_https_probe_ca_content"):
        files["ca"] = out / "blackbox-https-probe-ca.pem"
        outputs[files["ca"]] = CA_TASK["content"]
    ansible.render_role_vars(
        "monitoring_server",
        outputs,
        {"_monitoring_server_https_probe_ca_file": str(out / "blackbox-https-probe-ca.pem"), **extra_vars},
        out,
    )
    for key in ("config", "ca"):
        if key in files:
            task = CONFIG_TASK if key == "config" else CA_TASK
            check = _validate(task, files[key])
            assert check.returncode == 0, f"{task['validate']}: {check.stdout}{check.stderr}"
    return files


def _probe(port: int, target: str) -> tuple[float, str]:
    """probe_success of one probe of ``target`` through the exporter's https_2xx module, and the probe's log."""
    query = urllib.parse.urlencode({"module": "https_2xx", "target": target, "debug": "true"})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/probe?{query}", timeout=30) as response:
        text = response.read().decode()
    values = [line.split()[1] for line in text.splitlines() if line.startswith("probe_success ")]
    assert len(values) == 1, text
    return float(values[0]), text


def _exporter(config: Path, port: int, tmp_path: Path, name: str) -> ManagedProcess:
    argv = [BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"]
    proc = ManagedProcess(argv, log=tmp_path / f"{name}.log").start()
    wait_for_port("127.0.0.1", port, timeout=15, proc=proc.proc, log=proc.log)
    return proc


@pytest.fixture
def site(cert_factory, tls_peer):
    """An HTTPS site on 127.0.0.1 whose certificate chains to the private CA of ``cert_factory``."""
    peer = tls_peer(cert_factory.leaf("localhost"))
    return f"https://127.0.0.1:{peer.port}/"


def test_https_probe_succeeds_with_the_private_ca_and_fails_without_it(ansible, cert_factory, site, tmp_path):
    blackbox_port = free_port()
    prometheus_port = free_port()
    common = {
        "monitoring_server_https_probes": [{"url": site, "host": "localhost"}],
        "monitoring_server_blackbox_port": blackbox_port,
        "monitoring_server_prometheus_port": prometheus_port,
        "monitoring_server_scrape_jobs": [],
        "monitoring_server_alertmanager_enabled": False,
        "monitoring_server_scrape_interval": "2s",
        "_monitoring_server_rules_dir": str(tmp_path / "rules"),
    }
    ca_pem = cert_factory.ca_file.read_text()
    trusted = _render(ansible, tmp_path, "trusted", {**common, "monitoring_server_https_probe_ca_content": ca_pem})
    default = _render(ansible, tmp_path, "default", common)

    module = yaml.safe_load(trusted["config"].read_text())["modules"]["https_2xx"]
    assert module["http"]["tls_config"] == {"min_version": "TLS12", "ca_file": str(trusted["ca"])}
    assert trusted["ca"].read_text() == ca_pem.strip() + "\n"
    default_module = yaml.safe_load(default["config"].read_text())["modules"]["https_2xx"]
    assert default_module["http"]["tls_config"] == {"min_version": "TLS12"}, "unset: the system trust store"

    # The CA task's validate refuses what the exporter could not load as a CA.
    for bad in ("not a certificate\n", cert_factory.root.key_path.read_text()):
        junk = tmp_path / "junk.pem"
        junk.write_text(bad)
        assert _validate(CA_TASK, junk).returncode != 0, bad[:40]

    procs = []
    try:
        # The trusted exporter on the port the generated prometheus.yml sends the probes to.
        procs.append(_exporter(trusted["config"], blackbox_port, tmp_path, "blackbox-trusted"))
        success, log = _probe(blackbox_port, site)
        assert success == 1, log
        assert "probe_http_status_code 200" in log, log

        default_port = free_port()
        procs.append(_exporter(default["config"], default_port, tmp_path, "blackbox-default"))
        success, log = _probe(default_port, site)
        assert success == 0, log
        assert "certificate signed by unknown authority" in log, log

        # Another CA in the file: refused at the next probe, without a restart; the right one back: trusted again.
        other = CertFactory(tmp_path / "other-ca")
        trusted["ca"].write_text(other.ca_file.read_text())
        success, log = _probe(blackbox_port, site)
        assert success == 0 and "unknown authority" in log, log
        trusted["ca"].write_text(ca_pem)
        assert _probe(blackbox_port, site)[0] == 1

        # Prometheus with the generated probe job: the probe's series carries the URL and the host it named.
        server = ManagedProcess(
            [
                PROMETHEUS,
                f"--config.file={trusted['prometheus']}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            log=tmp_path / "prometheus.log",
        ).start()
        procs.append(server)
        wait_for_port("127.0.0.1", prometheus_port, timeout=60, proc=server.proc, log=server.log)
        series = _query_until(prometheus_port, 'probe_success{job="blackbox_https"}', timeout=60)
        assert [(r["metric"].get("host"), r["metric"]["instance"], r["value"][1]) for r in series] == [
            ("localhost", site, "1")
        ], series
    finally:
        for proc in procs:
            proc.stop()


def _query_until(port: int, expr: str, timeout: float) -> list[dict]:
    """The query's result once it is not empty (Prometheus answers 503 until its TSDB is ready)."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                result = json.loads(response.read())["data"]["result"]
            if result:
                return result
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no result for {expr} within {timeout}s"
        time.sleep(0.5)
