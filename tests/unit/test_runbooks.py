"""The runbooks and the on-call page say only what is true: every `ansible-playbook` command in
docs/runbooks/*.md and docs/oncall.md names a playbook that exists and passes --syntax-check, every `-e`
variable is declared by that playbook or by the argument specs of a role it runs, every alert named
exists in roles/monitoring_server/files/rules/*.rules.yml (with the severity the on-call page gives it),
and every relative link resolves.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness.ansible import ansible_env

REPO = Path(__file__).resolve().parents[2]
RUNBOOK_DIR = REPO / "docs" / "runbooks"
ONCALL = REPO / "docs" / "oncall.md"
DOCS = [*sorted(RUNBOOK_DIR.glob("*.md")), ONCALL]
RUNBOOKS = [path for path in DOCS if path.parent == RUNBOOK_DIR and path.name != "README.md"]
SECTIONS = ("Symptoms", "Diagnosis", "Resolution", "Verification", "Escalation")
ALERT = re.compile(r"`([A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+)`")
COMMAND = re.compile(r"ansible-playbook\b[^`\n]*")
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def commands(text: str) -> list[str]:
    """Every ansible-playbook command line (shell continuations joined), in code blocks or inline code."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [m.group(0).strip() for m in COMMAND.finditer(joined) if len(m.group(0).split()) > 1]


def extra_var_names(tokens: list[str]) -> list[str]:
    """Names of the variables given with -e / --extra-vars (key=value pairs or a JSON object)."""
    names = []
    for flag, value in itertools.pairwise(tokens):
        if flag not in ("-e", "--extra-vars") or value.startswith("@"):
            continue
        if value.lstrip().startswith("{"):
            names += list(json.loads(value))
        else:
            names += [pair.split("=", 1)[0] for pair in shlex.split(value) if "=" in pair]
    return names


@functools.cache
def rule_alerts() -> dict[str, str]:
    """Alert name -> severity label, from the shipped rule files."""
    alerts = {}
    for path in sorted((REPO / "roles/monitoring_server/files/rules").glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts[rule["alert"]] = rule.get("labels", {}).get("severity", "")
    return alerts


@functools.cache
def role_options() -> dict[str, set[str]]:
    """Role name -> the variables its meta/argument_specs.yml declares (all entry points)."""
    roles = {}
    for spec in sorted((REPO / "roles").glob("*/meta/argument_specs.yml")):
        entries = yaml.safe_load(spec.read_text(encoding="utf-8"))["argument_specs"]
        roles[spec.parents[1].name] = {name for entry in entries.values() for name in entry.get("options", {})}
    return roles


def all_commands() -> list[tuple[str, str]]:
    return [(path.name, command) for path in DOCS for command in commands(path.read_text(encoding="utf-8"))]


def playbooks_in(command: str) -> list[str]:
    return [token for token in shlex.split(command) if token.startswith("playbooks/") and token.endswith(".yml")]


def playbook_of(command: str) -> str:
    found = playbooks_in(command)
    assert len(found) == 1, f"{command!r} must name exactly one playbooks/<name>.yml, found {found}"
    return found[0]


def test_commands_are_found():
    # The extraction itself must see the runbooks' commands, or every check below would pass vacuously.
    found = all_commands()
    assert len(found) >= 20
    assert {playbook_of(entry[1]) for entry in found} >= {
        "playbooks/recover_service.yml",
        "playbooks/dr_drill.yml",
        "playbooks/postgresql_install.yml",
        "playbooks/backup.yml",
        "playbooks/harden.yml",
        "playbooks/secrets.yml",
    }


def test_extraction_joins_continuations_and_reads_extra_vars():
    text = "```\nansible-playbook -i inv playbooks/dr_drill.yml \\\n  -e a=1 -e 'b=\"x y\"' \\\n  -e '{\"c\": 2}'\n```"
    [command] = commands(text)
    assert playbook_of(command) == "playbooks/dr_drill.yml"
    assert extra_var_names(shlex.split(command)) == ["a", "b", "c"]
    assert commands("Every `ansible-playbook` command here") == []


@pytest.mark.parametrize("source,command", all_commands(), ids=lambda value: value[:70])
def test_command_names_a_real_playbook_and_declared_variables(source, command):
    playbook = playbook_of(command)
    path = REPO / playbook
    assert path.is_file(), f"{source}: {command!r} names {playbook}, which does not exist"
    text = path.read_text(encoding="utf-8")
    options = role_options()
    for name in extra_var_names(shlex.split(command)):
        owners = [role for role in options if name.startswith(role + "_")]
        if owners:
            role = max(owners, key=len)
            assert name in options[role], f"{source}: -e {name} is not an option of role {role}"
            assert f"locksmith.ops.{role}" in text, f"{source}: -e {name} but {playbook} does not run role {role}"
        else:
            assert re.search(rf"\b{re.escape(name)}\b", text), f"{source}: -e {name} is not used by {playbook}"


@pytest.mark.slow
@pytest.mark.parametrize("playbook", sorted({p for entry in all_commands() for p in playbooks_in(entry[1])}))
def test_playbook_passes_syntax_check(playbook):
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "--syntax-check", "-i", "localhost,", playbook]
    env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "default"})
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, f"{playbook}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_every_alert_named_exists_in_the_rule_files(path):
    alerts = rule_alerts()
    named = set(ALERT.findall(path.read_text(encoding="utf-8")))
    unknown = sorted(named - set(alerts))
    assert not unknown, f"{path.name} names alerts that no rule file defines: {unknown}"


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda path: path.name)
def test_runbook_has_every_section_and_names_its_alerts(path):
    text = path.read_text(encoding="utf-8")
    headings = re.findall(r"^## (\w+)", text, flags=re.MULTILINE)
    assert [h for h in headings if h in SECTIONS] == list(SECTIONS), f"{path.name}: sections {headings}"
    symptoms = text.split("## Symptoms", 1)[1].split("\n## ", 1)[0]
    if path.name.startswith("incident-"):
        assert ALERT.search(symptoms), f"{path.name}: Symptoms must name the alerts that fire"
    assert "ansible-playbook " in text.split("## Resolution", 1)[1], f"{path.name}: Resolution runs no playbook"


def test_oncall_maps_every_severity_and_gives_each_alert_its_label():
    text = ONCALL.read_text(encoding="utf-8")
    alerts = rule_alerts()
    for level in ("P0", "P1", "P2", "P3"):
        assert f"| **{level}** |" in text, f"oncall.md does not define {level}"
    mapping = dict(re.findall(r"^\| `(critical|warning|info)` \| (P[0-3]) \|", text, flags=re.MULTILINE))
    assert set(alerts.values()) <= set(mapping), f"severity labels {set(alerts.values())} vs mapped {mapping}"
    rows = re.findall(r"^\| `([A-Z]\w+)` \| (\w+) \| (P[0-3])", text, flags=re.MULTILINE)
    assert rows, "oncall.md has no alert table"
    for name, severity, priority in rows:
        assert name in alerts, f"oncall.md lists {name}, which no rule file defines"
        assert severity == alerts[name], f"oncall.md gives {name} severity {severity}; the rule says {alerts[name]}"
        assert priority == mapping[severity], f"{name}: starting priority {priority}, mapping says {mapping[severity]}"


@pytest.mark.parametrize("path", [*DOCS, REPO / "docs" / "dr.md"], ids=lambda path: path.name)
def test_relative_links_resolve(path):
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (path.parent / target).is_file(), f"{path.name} links to {target}, which does not exist"


def test_dr_page_links_the_runbooks_and_the_oncall_page():
    text = (REPO / "docs" / "dr.md").read_text(encoding="utf-8")
    assert "runbooks/recovery-lost-vm.md" in text and "oncall.md" in text
