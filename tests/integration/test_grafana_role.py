"""monitoring_server's Grafana tasks through ansible-playbook on localhost, under a temporary root.

Grafana itself cannot be installed here (it is not in Debian and its repository is out of reach),
so the converge runs with monitoring_server_grafana_install: false and no service to manage: it
proves the files Grafana would read (grafana.ini, the datasource and dashboard providers, the
generated dashboards), idempotence, check mode, stale-dashboard removal, preflight and no_log. The
first check run has the package step on, against a key served on 127.0.0.1: the repository steps
predict their changes and nothing is written.
"""

from __future__ import annotations

import configparser
import http.server
import json
import threading
from pathlib import Path

import pytest
import yaml

PASSWORD = "grafana-#;-Vault-7c1e"
SLO = {
    "name": "node_scrape_availability",
    "objective": 99.5,
    "error_query": 'sum(count_over_time(up{job="node"}[$window])) - sum(sum_over_time(up{job="node"}[$window]))',
    "total_query": 'sum(count_over_time(up{job="node"}[$window]))',
}
TASK = "locksmith.ops.monitoring_server : %s"
EXTRA = {"uid": "team-extra", "title": "Team extra", "panels": [{"title": "Up", "expr": "up", "unit": "none"}]}


def _play(root: Path, **overrides):
    variables = {
        "monitoring_server_grafana_install": False,
        "monitoring_server_grafana_service_name": "",
        "monitoring_server_grafana_group": "root",
        "monitoring_server_grafana_config_file": str(root / "etc/grafana/grafana.ini"),
        "monitoring_server_grafana_provisioning_dir": str(root / "etc/grafana/provisioning"),
        "monitoring_server_grafana_dashboards_dir": str(root / "var/lib/grafana/dashboards/locksmith"),
        "monitoring_server_grafana_listen_address": "10.0.0.5",
        "monitoring_server_grafana_admin_password": PASSWORD,
        "monitoring_server_grafana_ini_overrides": {"server": {"root_url": "https://grafana.example.com/"}},
        "monitoring_server_grafana_extra_dashboards": [EXTRA],
        "monitoring_server_slos": [SLO],
    }
    variables.update(overrides)
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Run the Grafana tasks of monitoring_server",
                    "ansible.builtin.include_role": {
                        "name": "locksmith.ops.monitoring_server",
                        "tasks_from": "grafana",
                    },
                    "vars": variables,
                }
            ],
        }
    ]


def _run(ansible, play, check=False):
    # Pipelining: the same tasks, fewer temporary files per module call on a busy machine.
    return ansible.run_playbook(play, check=check, env={"ANSIBLE_PIPELINING": "True"})


def _assert_ok(run, changed=None):
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    if changed is not None:
        assert run.changed() == changed, [
            t["task"]["name"] for t in run.tasks() if t["hosts"].get("localhost", {}).get("changed")
        ]
    assert PASSWORD not in run.stdout + run.stderr


@pytest.fixture
def root(tmp_path):
    (tmp_path / "etc/grafana").mkdir(parents=True)  # the grafana package's directory
    return tmp_path


class _Repo(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def apt_repo(tmp_path_factory):
    """Grafana's repository stand-in on 127.0.0.1: only its key is served, for the check run."""
    served = tmp_path_factory.mktemp("repo")
    (served / "gpg.key").write_text(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGTestKeyOnly\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **kw: _Repo(*a, directory=str(served), **kw))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


def test_check_converge_rerun_and_check_agree_and_files_read_back(root, ansible, apt_repo):
    # Check run on a fresh root with the package step on: the key, the repository and the cache
    # refresh are predicted, the install is skipped (apt cannot see the package yet), nothing is written.
    package = {
        "monitoring_server_grafana_install": True,
        "monitoring_server_grafana_apt_repo": apt_repo,
        "monitoring_server_grafana_apt_key_url": apt_repo + "/gpg.key",
    }
    predicted = _run(ansible, _play(root, **package), check=True)
    _assert_ok(predicted)
    package_tasks = (
        "Download the key that signs monitoring_server_grafana_apt_repo",
        "Add Grafana's apt repository",
        "Refresh the apt cache for the new Grafana repository",
    )
    for task in package_tasks:
        assert predicted.result(TASK % task)["changed"] is True, task
    assert predicted.result(TASK % "Install Grafana").get("skipped") is True
    assert not Path("/etc/apt/sources.list.d/grafana.sources").exists()
    assert not Path("/etc/apt/keyrings/grafana.asc").exists()
    assert not (root / "etc/grafana/grafana.ini").exists() and not (root / "var").exists()

    # Grafana cannot be installed here: the converge skips the package step and predicts the rest right.
    first = _run(ansible, _play(root))
    _assert_ok(first, changed=predicted.changed() - len(package_tasks))
    boards_dir = root / "var/lib/grafana/dashboards/locksmith"
    files = sorted(p.name for p in boards_dir.iterdir())

    # The second run changes nothing but the removal of dashboards the role no longer generates (a
    # retired file, and the extra dashboard dropped from the variables), and only those.
    (boards_dir / "retired.json").write_text("{}")
    again = _run(ansible, _play(root, monitoring_server_grafana_extra_dashboards=[]))
    _assert_ok(again, changed=1)
    assert again.result(TASK % "Remove dashboards the role no longer generates")["changed"] is True
    assert sorted(p.name for p in boards_dir.iterdir()) == sorted(f for f in files if f != "team-extra.json")
    _assert_ok(_run(ansible, _play(root, monitoring_server_grafana_extra_dashboards=[]), check=True), changed=0)

    ini_path = root / "etc/grafana/grafana.ini"
    assert oct(ini_path.stat().st_mode & 0o777) == "0o640"
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(ini_path.read_text())
    assert ini["server"]["http_addr"] == "10.0.0.5" and ini["server"]["http_port"] == "3000"
    assert ini["server"]["root_url"] == "https://grafana.example.com/"
    # Grafana strips the triple quotes; without them it would cut the password at '#'
    assert ini["security"]["admin_password"] == '"""%s"""' % PASSWORD
    assert ini["auth.anonymous"]["enabled"] == "false" and ini["users"]["allow_sign_up"] == "false"
    assert ini["paths"]["provisioning"] == str(root / "etc/grafana/provisioning")

    datasource = yaml.safe_load((root / "etc/grafana/provisioning/datasources/locksmith.yaml").read_text())
    (prometheus,) = datasource["datasources"]
    assert prometheus["url"] == "http://127.0.0.1:9090" and prometheus["uid"] == "locksmith-prometheus"
    provider = yaml.safe_load((root / "etc/grafana/provisioning/dashboards/locksmith.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == str(root / "var/lib/grafana/dashboards/locksmith")

    assert files == sorted(
        [
            "locksmith-hosts.json",
            "locksmith-postgres.json",
            "locksmith-web.json",
            "locksmith-posture.json",
            "team-extra.json",
        ]
    )
    web = json.loads((boards_dir / "locksmith-web.json").read_text())
    assert web["uid"] == "locksmith-web" and web["schemaVersion"] == 39
    assert "node_scrape_availability: error budget left (30d)" in [p["title"] for p in web["panels"]]
    datasource_uids = {t["datasource"]["uid"] for p in web["panels"] for t in p.get("targets", [])}
    assert datasource_uids == {"locksmith-prometheus"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"monitoring_server_grafana_listen_address": "0.0.0.0"},  # noqa: S104 - the value preflight refuses
            "Grafana's http_addr is '0.0.0.0'",
        ),
        # Go listens on every interface for these too; a list of '0.0.0.0' and '::' missed them.
        ({"monitoring_server_grafana_listen_address": "::0"}, "Grafana's http_addr is '::0'"),
        (
            {"monitoring_server_grafana_ini_overrides": {"server": {"http_addr": "::ffff:0.0.0.0"}}},
            "Grafana's http_addr is '::ffff:0.0.0.0'",
        ),
        ({"monitoring_server_grafana_admin_password": "admin"}, None),
    ],
)
def test_preflight_refuses_open_listen_and_weak_passwords(root, ansible, overrides, message):
    run = _run(ansible, _play(root, **overrides))
    assert run.rc != 0
    if message:
        assert message in run.stdout
    assert not (root / "etc/grafana/grafana.ini").exists()
