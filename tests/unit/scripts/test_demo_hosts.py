"""scripts/demo.py ensure_hosts(): a host is reused, started or made again according to what podman reports.

podman is replaced by a recorder that answers as the real command does for each state; nothing runs.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(name="demo")
def _demo(monkeypatch):
    spec = importlib.util.spec_from_file_location("locksmith_demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HOSTS", {"db1": ("locksmith-demo-db", "10.89.42.10", ["NET_ADMIN"])})
    monkeypatch.setattr(module, "wait_for_systemd", lambda container: None)
    monkeypatch.setattr(module, "KNOWN_HOSTS", Path("/nonexistent/known_hosts"))
    # The image build script and nothing else goes through subprocess.run here.
    monkeypatch.setattr(module.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 0))
    return module


def _podman(calls, inspect: tuple[int, str], exec_rc: int):
    def fake(*args, check=True, **_kw):
        calls.append(args)
        if args[:2] == ("network", "exists"):
            return subprocess.CompletedProcess(args, 0, "", "")
        if args[:2] == ("container", "inspect"):
            return subprocess.CompletedProcess(args, inspect[0], inspect[1], "")
        if args[0] == "exec":
            return subprocess.CompletedProcess(args, exec_rc, "", "cannot exec in a stopped container")
        return subprocess.CompletedProcess(args, 0, "", "")

    return fake


def _verbs(calls):
    return [args[0] for args in calls if args[0] not in ("network", "container")]


@pytest.mark.parametrize(
    "inspect, exec_rc, verbs, says",
    [
        pytest.param((0, "true\n"), 0, ["exec"], "host db1 already up", id="running-and-answers-reused"),
        pytest.param((0, "false\n"), 0, ["start"], "starting host db1", id="stopped-started-not-made-again"),
        pytest.param((0, "true\n"), 126, ["exec", "rm", "run"], "does not answer; removing it", id="stale-made-again"),
        pytest.param((125, ""), 0, ["run"], "creating host db1", id="missing-created"),
    ],
)
def test_each_host_state_leads_to_its_action(demo, monkeypatch, capsys, inspect, exec_rc, verbs, says):
    calls = []
    monkeypatch.setattr(demo, "podman", _podman(calls, inspect, exec_rc))
    demo.ensure_hosts()
    assert _verbs(calls) == verbs
    assert says in capsys.readouterr().out


def test_a_stale_host_is_removed_by_name_and_made_again_at_its_address(demo, monkeypatch):
    calls = []
    monkeypatch.setattr(demo, "podman", _podman(calls, (0, "true\n"), exec_rc=126))
    demo.ensure_hosts()
    rm = next(args for args in calls if args[0] == "rm")
    assert rm[-1] == "locksmith-demo-db" and "--force" in rm
    run = next(args for args in calls if args[0] == "run")
    assert run[run.index("--ip") + 1] == "10.89.42.10"
