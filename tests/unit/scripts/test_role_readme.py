"""scripts/role_readme.py: each role README's tags table comes from tasks/main.yml, with the opt-out of each tag."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "role_readme.py"
SPEC = importlib.util.spec_from_file_location("role_readme", SCRIPT)
role_readme = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(role_readme)

MAIN = """---
- name: Do everything
  when: demo_enabled | bool
  tags: [demo]
  block:
    - name: Check inputs
      ansible.builtin.import_tasks: preflight.yml
      tags: [always]
    - name: Install it
      ansible.builtin.import_tasks: install.yml
      when: demo_install_enabled | bool and not ansible_check_mode
      tags: [demo_install]
    - name: Run the exporter where it is found
      ansible.builtin.import_tasks: exporter.yml
      when: _demo_exporter_on | bool
      tags: [demo_exporter]
    - name: Write the config
      ansible.builtin.import_tasks: config.yml
      tags: [demo_config]
    - name: Remove what the exporter published
      ansible.builtin.import_tasks: exporter_off.yml
      when: not demo_exporter_enabled | bool or not (demo_enabled | bool and demo_install_enabled | bool)
      tags: [demo_exporter_retired]
"""
VARS = '_demo_exporter_on: "{{ demo_exporter_enabled | bool and other_enabled | bool }}"\n'


def _role(tmp_path, readme):
    role = tmp_path / "demo"
    for sub in ("tasks", "vars"):
        (role / sub).mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text(MAIN)
    (role / "vars" / "main.yml").write_text(VARS)
    (role / "README.md").write_text(readme)
    return role


def test_each_tag_names_what_it_runs_and_the_variable_that_turns_it_off(tmp_path):
    table = role_readme.tags_table(_role(tmp_path, ""))
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `demo` | Do everything | `demo_enabled: false` |",
        "| `demo_install` | Install it | `demo_install_enabled: false` |",
        # Through a role-internal value of vars/main.yml; another role's variable is not this role's opt-out.
        "| `demo_exporter` | Run the exporter where it is found | `demo_exporter_enabled: false` |",
        "| `demo_config` | Write the config |  |",
        # A switch read under `not` turns the task on: it is no opt-out.
        "| `demo_exporter_retired` | Remove what the exporter published |  |",
    ]
    assert "Tagged `always`, so they run whatever `--tags` selects: Check inputs." in table


def test_a_hand_written_tags_section_is_replaced_and_a_missing_one_added(tmp_path):
    end = role_readme.END
    written = role_readme._with_tags(
        "# demo\n\n%s\n\n## Tags\n\n`demo` and more.\n\n## Tests\n\nx\n" % end, _role(tmp_path, "")
    )
    assert "`demo` and more." not in written and written.index("| `demo` |") < written.index("## Tests")
    added = role_readme._with_tags("# demo\n\n%s\n" % end, _role(tmp_path / "b", ""))
    assert added.index(end) < added.index("## Tags") < added.index("| `demo_install` |")


def test_every_role_readme_is_current():
    roles = sorted(str(path.parent.parent) for path in ROOT.glob("roles/*/meta/argument_specs.yml"))
    run = subprocess.run([sys.executable, str(SCRIPT), "--check", *roles], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
