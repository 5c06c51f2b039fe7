"""Hardening roles publish locksmith_hardening_last_run_timestamp_seconds only after every control of a converge.

The time stands for the newest complete converge (docs/metrics.md): a run that fails on a control must publish
nothing, so the task has to come after every control; only reports (tagged always) and facts may follow it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.locksmith.ops.plugins.plugin_utils import _posture_watched

ROLES = Path(__file__).resolve().parents[3] / "roles"
# The roles harden.yml runs, each publishing its converge time (one list, the posture report's).
HARDENING_ROLES = _posture_watched.HARDENING_ROLES


def _flatten(tasks: list) -> list:
    """Every task of tasks/main.yml in the order it runs, the tasks of blocks included (not the blocks)."""
    flat = []
    for task in tasks:
        if "block" in task:
            flat.extend(_flatten(task["block"]))
            flat.extend(_flatten(task.get("rescue", [])))
            flat.extend(_flatten(task.get("always", [])))
        else:
            flat.append(task)
    return flat


@pytest.mark.parametrize("role", HARDENING_ROLES)
def test_the_converge_time_is_published_after_every_control(role):
    tasks = _flatten(yaml.safe_load((ROLES / role / "tasks" / "main.yml").read_text()))
    publish = [i for i, task in enumerate(tasks) if "locksmith.ops.textfile_timestamp" in task]
    assert len(publish) == 1, "%s publishes its converge time %d times" % (role, len(publish))
    assert tasks[publish[0]]["locksmith.ops.textfile_timestamp"]["labels"] == {"role": role}
    # Reports (tagged always) and facts, which change nothing on the host, may follow it.
    later = [
        task["name"]
        for task in tasks[publish[0] + 1 :]
        if "always" not in (task.get("tags") or []) and "ansible.builtin.set_fact" not in task
    ]
    assert later == [], "%s: these controls run after the converge time is published: %s" % (role, later)
