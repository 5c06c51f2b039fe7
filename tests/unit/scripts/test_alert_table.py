"""scripts/alert_table.py: the README's alert list is generated from the rule files and --check catches drift."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "alert_table.py"
RULES = ROOT / "roles" / "monitoring_server" / "files" / "rules"


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False, cwd=cwd)


def test_readme_table_is_current_and_lists_every_alert():
    assert _run("--check").returncode == 0
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- BEGIN ALERTS")[1].split("<!-- END ALERTS -->")[0]
    for path in RULES.glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                row = next(line for line in table.splitlines() if line.startswith(f"| {rule['alert']} |"))
                assert rule["annotations"]["seed"] in row and rule["labels"]["severity"] in row
    for slo in ("web_availability", "web_latency_p95", "web_errors"):
        assert table.count(f"| SLOErrorBudgetBurn ({slo}) |") == 3


def test_check_fails_on_a_stale_table_and_the_writer_mends_it(tmp_path):
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    readme.write_text(text.replace("| HostDown |", "| HostGone |"))
    stale = _run("--check", str(readme))
    assert stale.returncode == 1 and "out of date" in stale.stderr
    assert _run(str(readme)).returncode == 0
    assert readme.read_text() == text


def test_an_alert_without_seed_is_reported(tmp_path):
    copy = tmp_path / "repo"
    for part in ("scripts", "plugins/filter", "playbooks/vars", "roles/monitoring_server/files/rules"):
        shutil.copytree(ROOT / part, copy / part)
    shutil.copy(ROOT / "README.md", copy / "README.md")
    rules = copy / "roles/monitoring_server/files/rules/host.rules.yml"
    doc = yaml.safe_load(rules.read_text())
    del doc["groups"][0]["rules"][0]["annotations"]["seed"]
    rules.write_text(yaml.safe_dump(doc))
    script = copy / "scripts" / "alert_table.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "has no 'seed' annotation" in result.stderr
