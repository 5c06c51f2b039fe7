"""locksmith.ops.copy and locksmith.ops.template against the builtins, run by ansible-playbook on localhost.

Each module run on the host is counted with an interpreter wrapper that logs the payload's name before it
starts Python. The claims: the same results as ansible.builtin.copy/template, the stat alone on a file that is
already right, and the file module still run (and still fixing) wherever the stat cannot settle it.
"""

from __future__ import annotations

import collections
import grp
import os
import pwd
import shutil
import sys
from pathlib import Path

import pytest

from tests.harness import ansible

pytestmark = pytest.mark.slow

OURS = {"copy": "locksmith.ops.copy", "template": "locksmith.ops.template"}
BUILTIN = {"copy": "ansible.builtin.copy", "template": "ansible.builtin.template"}


def _site(root: Path) -> None:
    """The directory everything is written to, with a template and a link to an existing file."""
    root.mkdir()
    (root / "motd.j2").write_text("Managed for {{ site_name }}\n", encoding="utf-8")
    (root / "real.conf").write_text("linked\n", encoding="utf-8")
    (root / "link.conf").symlink_to(root / "real.conf")


def _play(root: Path, actions: dict) -> list:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    owned = {"owner": user, "group": group}
    uid = str(os.getuid())
    tasks = [
        ("rendered", "template", {"src": str(root / "motd.j2"), "dest": str(root / "motd"), "mode": "0640", **owned}),
        ("content", "copy", {"content": "umask 027\n", "dest": str(root / "umask.sh"), "mode": "0600", **owned}),
        ("numeric owner", "copy", {"content": "x\n", "dest": str(root / "numeric"), "owner": uid, "mode": "644"}),
        ("no attributes", "copy", {"content": "y\n", "dest": str(root / "plain")}),
        ("symbolic mode", "copy", {"content": "z\n", "dest": str(root / "symbolic"), "mode": "u=rw,go=r"}),
        ("through a link", "copy", {"content": "linked\n", "dest": str(root / "link.conf"), "follow": True}),
    ]
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {"site_name": "db1"},
            "tasks": [{"name": name, actions[action]: args} for name, action, args in tasks],
        }
    ]


@pytest.fixture
def counted(tmp_path):
    """run(play, **kw) -> (PlaybookRun, Counter of module names run on the host)."""
    log = tmp_path / "modules.log"
    wrapper = tmp_path / "python-counting"
    wrapper.write_text(f'#!/bin/sh\nbasename "$1" >> {log}\nexec {sys.executable} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={wrapper}\n", encoding="utf-8")

    def run(play, **kwargs):
        log.write_text("", encoding="utf-8")
        result = ansible.run_playbook(play, inventory=inventory, **kwargs)
        assert result.rc == 0, result.stdout[-3000:] + result.stderr[-3000:]
        names = [line.removeprefix("AnsiballZ_").removesuffix(".py") for line in log.read_text().split()]
        return result, collections.Counter(names)

    return run


def _results(run, root: Path) -> dict:
    """Each task's result with the site directory written as <root>, so two sites compare."""
    found = {}
    for task in run.tasks():
        result = task["hosts"]["localhost"]
        found[task["task"]["name"]] = {
            key: (value.replace(str(root), "<root>") if isinstance(value, str) else value)
            for key, value in result.items()
            # The action's name, and the temporary source a changed file was sent through, differ by design.
            if key not in ("invocation", "diff", "action", "src")
        }
    return found


def test_a_converged_file_costs_one_module_run_and_returns_what_the_builtin_returns(tmp_path, counted):
    builtin_root, ours_root = tmp_path / "builtin", tmp_path / "ours"
    _site(builtin_root)
    _site(ours_root)

    first_builtin = counted(_play(builtin_root, BUILTIN))[0]
    first_ours = counted(_play(ours_root, OURS))[0]
    assert _results(first_ours, ours_root) == _results(first_builtin, builtin_root)
    assert first_ours.changed() == 5  # the linked file already had that content and mode

    again_builtin, builtin_runs = counted(_play(builtin_root, BUILTIN))
    again_ours, our_runs = counted(_play(ours_root, OURS))
    assert again_builtin.changed() == again_ours.changed() == 0
    assert _results(again_ours, ours_root) == _results(again_builtin, builtin_root)
    # The builtins: a stat and a file run per task, and one more stat for the link it follows.
    assert builtin_runs == {"stat": 7, "file": 6}
    # Ours: the stats alone, except where the stat cannot settle it (a symbolic mode; a followed link).
    assert our_runs == {"stat": 7, "file": 2}


def test_drifted_attributes_are_put_back_and_check_mode_only_reports_them(tmp_path, counted):
    root = tmp_path / "site"
    _site(root)
    counted(_play(root, OURS))
    (root / "motd").chmod(0o644)
    (root / "umask.sh").chmod(0o666)

    predicted, runs = counted(_play(root, OURS), check=True, diff=True)
    assert predicted.changed() == 2
    assert predicted.result("rendered")["changed"] is True
    assert predicted.result("content")["changed"] is True
    assert runs["file"] == 4  # the two drifted files, the symbolic mode, the link
    assert (root / "motd").stat().st_mode & 0o7777 == 0o644

    fixed = counted(_play(root, OURS))[0]
    assert fixed.changed() == 2
    assert (root / "motd").stat().st_mode & 0o7777 == 0o640
    assert (root / "umask.sh").stat().st_mode & 0o7777 == 0o600
    assert counted(_play(root, OURS))[0].changed() == 0


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root")
def test_a_file_given_away_gets_its_owner_back(tmp_path, counted):
    root = tmp_path / "site"
    _site(root)
    counted(_play(root, OURS))
    shutil.chown(root / "umask.sh", user="nobody")

    fixed, runs = counted(_play(root, OURS))
    assert fixed.result("content")["changed"] is True
    assert fixed.result("content")["owner"] == "root"
    assert (root / "umask.sh").stat().st_uid == 0
    assert runs["file"] == 3


def test_changed_content_is_written_by_the_copy_module_as_before(tmp_path, counted):
    root = tmp_path / "site"
    _site(root)
    counted(_play(root, OURS))
    (root / "umask.sh").write_text("umask 000\n", encoding="utf-8")

    rewritten, runs = counted(_play(root, OURS), diff=True)
    assert rewritten.changed() == 1
    assert (root / "umask.sh").read_text(encoding="utf-8") == "umask 027\n"
    assert runs["copy"] == 1


def test_an_owner_or_group_that_does_not_exist_writes_nothing(tmp_path):
    """The copy module moves the new file into place before chown: ansible.builtin.copy and .template leave the
    content (a secret, often) there with mode 0644 when the owner does not exist. Ours refuse before writing."""
    root = tmp_path / "site"
    _site(root)
    (root / "kept.env").write_text("OLD=1\n", encoding="utf-8")
    (root / "kept.env").chmod(0o600)
    tasks = [
        ("new", "copy", {"content": "KEY=s3cret\n", "dest": str(root / "new.env"), "owner": "no-such-user-x"}),
        ("kept", "copy", {"content": "KEY=s3cret\n", "dest": str(root / "kept.env"), "group": "no-such-group-x"}),
        ("rendered", "template", {"src": str(root / "motd.j2"), "dest": str(root / "motd"), "owner": "no-such-user-x"}),
    ]
    for name, action, args in tasks:
        play = [
            {
                "hosts": "localhost",
                "gather_facts": False,
                "vars": {"site_name": "db1"},
                "tasks": [{"name": name, OURS[action]: {**args, "mode": "0600"}}],
            }
        ]
        run = ansible.run_playbook(play, extra_vars={"ansible_python_interpreter": sys.executable})
        result = run.result(name)
        assert run.rc != 0 and result["failed"] is True, result
        option = "group" if "group" in args else "owner"
        assert result["msg"].startswith("%s '%s' does not exist on the host" % (option, args[option])), result
        assert "nothing was written to %s" % args["dest"] in result["msg"]
    assert not (root / "new.env").exists() and not (root / "motd").exists()
    assert (root / "kept.env").read_text(encoding="utf-8") == "OLD=1\n"
    assert (root / "kept.env").stat().st_mode & 0o7777 == 0o600
