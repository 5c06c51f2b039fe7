"""Run a playbook, or one module task, through ansible-playbook and return the parsed result.

Playbooks run exactly as users run them (ansible-playbook, the collection found on
ANSIBLE_COLLECTIONS_PATH) with the ansible.posix.json callback, so every task's per-host result is
returned as data. `run_module_inprocess` calls a module's main() in this process instead; it exists
so coverage sees module code, and is no substitute for the ansible-playbook path.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".build" / "collections"


def ensure_collection_path() -> Path:
    """The in-place collection symlink (`make collection`), created here too so pytest alone works."""
    link = COLLECTIONS / "ansible_collections" / "locksmith" / "ops"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO)
    return COLLECTIONS


def ansible_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(ensure_collection_path()),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra or {})
    return env


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    data: dict | None

    @property
    def stats(self) -> dict:
        return (self.data or {}).get("stats", {})

    def changed(self, host: str = "localhost") -> int:
        return self.stats.get(host, {}).get("changed", 0)

    def tasks(self) -> list[dict]:
        return [task for play in (self.data or {}).get("plays", []) for task in play.get("tasks", [])]

    def result(self, task_name: str, host: str = "localhost") -> dict:
        """The result of the last task with that name on that host."""
        found = [t["hosts"][host] for t in self.tasks() if t["task"]["name"] == task_name and host in t["hosts"]]
        if not found:
            names = [t["task"]["name"] for t in self.tasks()]
            raise KeyError(f"no task {task_name!r} ran on {host}; tasks: {names}\n{self.stderr[-2000:]}")
        return found[-1]


def _inventory_file(directory: Path) -> Path:
    path = directory / "inventory.ini"
    path.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n", encoding="utf-8"
    )
    return path


def run_playbook(
    playbook: str | Path | list,
    *,
    inventory: str | Path | None = None,
    extra_vars: dict | None = None,
    env: dict | None = None,
    check: bool = False,
    diff: bool = False,
    tags: str | None = None,
    verbosity: int = 0,
    timeout: int = 900,
) -> PlaybookRun:
    """Run a playbook (a path, or a list of plays as data). verbosity>0 switches to the default text
    callback, for tests that search -vvv output for leaked secrets (data is then None)."""
    with tempfile.TemporaryDirectory(prefix="locksmith-play-") as tmp:
        tmpdir = Path(tmp)
        if isinstance(playbook, list):
            path = tmpdir / "playbook.yml"
            path.write_text(yaml.safe_dump(playbook, sort_keys=False), encoding="utf-8")
        else:
            path = Path(playbook)
        argv = [
            str(Path(sys.executable).parent / "ansible-playbook"),
            str(path),
            "-i",
            str(inventory or _inventory_file(tmpdir)),
        ]
        if extra_vars:
            vars_file = tmpdir / "extra_vars.json"
            vars_file.write_text(json.dumps(extra_vars), encoding="utf-8")
            argv += ["-e", f"@{vars_file}"]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        if tags:
            argv += ["--tags", tags]
        run_env = ansible_env(env)
        if verbosity:
            argv.append("-" + "v" * verbosity)
            run_env["ANSIBLE_STDOUT_CALLBACK"] = "default"
        proc = subprocess.run(argv, capture_output=True, text=True, env=run_env, timeout=timeout, check=False)
        data = None
        if not verbosity:
            start = proc.stdout.find("{")
            if start >= 0:
                data = json.loads(proc.stdout[start:])
        return PlaybookRun(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr, data=data)


def render_role_vars(role: str, outputs: dict, extra_vars: dict, workdir: Path, host_vars: str = "") -> None:
    """Evaluate a role's defaults and vars files with ``extra_vars`` on top, as its tasks see them, and write each
    expression of ``outputs`` (path -> Jinja) to its file. ``host_vars`` (``name=value ...``) go on localhost."""
    role_dir = REPO / "roles" / role
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars_files": [str(role_dir / "defaults" / "main.yml"), str(role_dir / "vars" / "main.yml")],
        "tasks": [
            {
                "name": f"Write {path}",
                "ansible.builtin.copy": {"dest": str(path), "content": expression, "mode": "0600"},
            }
            for path, expression in outputs.items()
        ],
    }
    inventory = Path(workdir) / f"{role}.ini"
    inventory.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable} {host_vars}\n",
        encoding="utf-8",
    )
    run = run_playbook([play], inventory=inventory, extra_vars=extra_vars)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]


def run_task(
    module: str,
    args: dict | None = None,
    *,
    check: bool = False,
    diff: bool = False,
    env: dict | None = None,
    task_vars: dict | None = None,
    no_log: bool | None = None,
) -> dict:
    """Run one module task on localhost; return its result dict (``failed`` set when it failed)."""
    task = {"name": "task under test", module: args or {}}
    if no_log is not None:
        task["no_log"] = no_log
    play = {"hosts": "localhost", "gather_facts": False, "vars": task_vars or {}, "tasks": [task]}
    run = run_playbook([play], check=check, diff=diff, env=env)
    try:
        return run.result("task under test")
    except KeyError as err:
        raise AssertionError(f"ansible-playbook rc={run.rc}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}") from err


def run_module_inprocess(name: str, args: dict, *, check: bool = False, diff: bool = False) -> dict:
    """Call plugins/modules/<name>.py main() in this process; return the JSON it exits with."""
    from unittest import mock

    from ansible.module_utils import _internal
    from ansible.module_utils.testing import patch_module_args

    ensure_collection_path()
    module = importlib.import_module(f"ansible_collections.locksmith.ops.plugins.modules.{name}")
    from ansible.module_utils.common import warnings as module_warnings

    # A module process starts with no warnings; earlier in-process runs must not leak theirs into this one.
    module_warnings._global_warnings.clear()
    module_warnings._global_deprecations.clear()
    full_args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    # Once controller code is imported (any filter or plugin test), module warnings would go to the
    # controller's display instead of the result; a module process never has that, so neither does this.
    with (
        patch_module_args(full_args),
        contextlib.redirect_stdout(out),
        mock.patch.object(_internal, "is_controller", False),
    ):
        try:
            module.main()
        except SystemExit:
            pass
    text = out.getvalue()
    return json.loads(text[text.find("{") :])


class _SpecCaptured(Exception):
    """Raised by the AnsibleModule stand-in of module_spec() to stop main() once it has its spec."""


def module_spec(name: str) -> dict | None:
    """The keyword arguments plugins/modules/<name>.py main() gives AnsibleModule (argument_spec,
    mutually_exclusive, required_if, ...): the spec a run really checks. None for an action-backed module."""
    from unittest import mock

    ensure_collection_path()
    module = importlib.import_module(f"ansible_collections.locksmith.ops.plugins.modules.{name}")
    if not hasattr(module, "main"):
        return None
    seen = {}

    def capture(**kwargs):
        seen.update(kwargs)
        raise _SpecCaptured

    with mock.patch.object(module, "AnsibleModule", capture), contextlib.suppress(_SpecCaptured):
        module.main()
    return seen


def load_script(path: Path, name: str):
    """A role's stand-alone Python program (no .py suffix, run by systemd on hosts) imported as a module."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module
