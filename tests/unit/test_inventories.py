"""The shipped inventories: they parse, they name the groups the playbooks target, and they hold no secret."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventories" / "example"
SECRET_NAME = re.compile(r"(password|passwd|secret|token|_key$|key_content|routing_key|webhook_url)", re.I)
# A secret variable's value must be a reference resolved at run time, never a literal.
SECRET_REFERENCE = re.compile(r"^\{\{\s*(vault_[a-z0-9_]+|lookup\(.+\))\s*\}\}$", re.S)


def inventory(path: Path) -> dict:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"))
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list", "--export"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout)


def playbook_groups() -> set[str]:
    """Default host patterns of the scenario playbooks, e.g. `{{ backup_hosts | default('databases') }}`."""
    groups = set()
    for playbook in (REPO / "playbooks").glob("*.yml"):
        for play in yaml.safe_load(playbook.read_text()) or []:
            hosts = str(play.get("hosts", ""))
            match = re.search(r"default\('([^']+)'\)", hosts)
            pattern = match.group(1) if match else hosts
            groups.update(g for g in re.split(r"[:,!&]+", pattern) if g and "{" not in g)
    return groups - {"all", "localhost", "controller"}


def test_example_inventory_has_every_group_the_playbooks_target():
    data = inventory(EXAMPLE)
    missing = playbook_groups() - set(data)
    assert not missing, f"inventories/example lacks groups {sorted(missing)}"
    for group in playbook_groups():
        assert hosts_of(data, group), f"group {group} has no example host"


def hosts_of(data: dict, group: str) -> set[str]:
    """Hosts of a group, directly or through its children."""
    found = set(data.get(group, {}).get("hosts", []))
    for child in data.get(group, {}).get("children", []):
        found |= hosts_of(data, child)
    return found


def walk(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, str(index)))
    else:
        yield path, value


@pytest.mark.parametrize("varfile", sorted(EXAMPLE.glob("group_vars/*.yml")), ids=lambda p: p.name)
def test_example_group_vars_hold_no_plain_secret(varfile):
    for path, value in walk(yaml.safe_load(varfile.read_text()) or {}):
        name = path[0]
        if SECRET_NAME.search(name) and isinstance(value, str) and not name.endswith(("_file", "_to", "_from")):
            assert SECRET_REFERENCE.match(value.strip()), f"{varfile.name}: {'.'.join(path)} is not from vault/lookup"


def test_the_secret_check_catches_a_literal(tmp_path):
    leaked = {"backup_login_password": "hunter2", "backup_encryption_key": "{{ vault_backup_encryption_key }}"}
    offenders = [
        name
        for path, value in walk(leaked)
        if SECRET_NAME.search(name := path[0]) and not SECRET_REFERENCE.match(str(value))
    ]
    assert offenders == ["backup_login_password"]


def test_vault_example_names_every_vault_variable_used():
    used = set()
    for varfile in EXAMPLE.glob("group_vars/*.yml"):
        used.update(re.findall(r"\bvault_[a-z0-9_]+", varfile.read_text()))
    declared = set(yaml.safe_load((EXAMPLE / "group_vars" / "vault.yml.example").read_text()))
    assert used == declared
