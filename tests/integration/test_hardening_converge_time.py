"""The six hardening roles on localhost: a role turned off, or its converge time turned off, removes the
locksmith_hardening_<role>.prom it published, which otherwise stood on the posture dashboard for a converge that
never came again.

Only the removal runs here: with <role>_enabled false the role's block is skipped; with <role>_metrics_enabled false
the run is limited to the removal's tag (and skips the always-tagged preflight), so nothing hardens this machine.
"""

from __future__ import annotations

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics
from ansible_collections.locksmith.ops.plugins.plugin_utils import _posture_watched

# The roles harden.yml runs, each publishing its converge time (one list, the posture report's).
HARDENING_ROLES = _posture_watched.HARDENING_ROLES
TASK = "Remove the converge time this role no longer publishes"


def _plays(textfile, switch):
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "roles": [
                {
                    "role": f"locksmith.ops.{role}",
                    "vars": {f"{role}_{switch}": False, f"{role}_metrics_dir": str(textfile)},
                }
            ],
        }
        for role in HARDENING_ROLES
    ]


def _removed(run):
    return sorted(
        task["hosts"]["localhost"].get("path", "")
        for task in run.tasks()
        if task["task"]["name"].endswith(" : " + TASK) and task["hosts"]["localhost"].get("changed")
    )


def test_a_role_or_its_converge_time_turned_off_removes_the_published_time(ansible, tmp_path):
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    files = sorted(str(textfile / _metrics.textfile_name("hardening", role)) for role in HARDENING_ROLES)
    # Not theirs: another subject of the producer, other producers, a temporary file of a killed writer.
    others = ["locksmith_hardening_lynis_audit.prom", "locksmith_lynis.prom", "locksmith_ids.prom"]
    others.append(".locksmith_hardening_firewall.prom.locksmith-tmp-a1b2c3")
    tags = ",".join(f"{role}_metrics_retired" for role in HARDENING_ROLES)
    for switch, options in (
        ("enabled", {}),
        ("metrics_enabled", {"tags": tags, "env": {"ANSIBLE_SKIP_TAGS": "always"}}),
    ):
        for path in files:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("# planted\n")
        for name in others:
            (textfile / name).write_text("# planted\n")

        check = ansible.run_playbook(_plays(textfile, switch), check=True, **options)
        assert check.rc == 0, check.stdout[-3000:] + check.stderr[-2000:]
        assert _removed(check) == files, switch
        assert sorted(str(p) for p in textfile.glob("locksmith_hardening_*")) == sorted(
            [*files, str(textfile / others[0])]
        )

        run = ansible.run_playbook(_plays(textfile, switch), diff=True, **options)
        assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert _removed(run) == files, switch
        # intrusion_detection with its metrics off also retires its ban metrics' writer and their file.
        left = [name for name in others if switch == "enabled" or name != "locksmith_ids.prom"]
        assert sorted(p.name for p in textfile.iterdir()) == sorted(left), switch
        again = ansible.run_playbook(_plays(textfile, switch), **options)
        assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
