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
    "inspect, exec_rc, verbs, says, made",
    [
        pytest.param((0, "true\n"), 0, ["exec"], "host db1 already up", [], id="running-and-answers-reused"),
        pytest.param((0, "false\n"), 0, ["start"], "starting host db1", [], id="stopped-started-not-made-again"),
        pytest.param(
            (0, "true\n"), 126, ["exec", "rm", "run"], "does not answer; removing it", ["db1"], id="stale-made-again"
        ),
        pytest.param((125, ""), 0, ["run"], "creating host db1", ["db1"], id="missing-created"),
    ],
)
def test_each_host_state_leads_to_its_action(demo, monkeypatch, capsys, inspect, exec_rc, verbs, says, made):
    calls = []
    monkeypatch.setattr(demo, "podman", _podman(calls, inspect, exec_rc))
    assert demo.ensure_hosts() == made
    assert _verbs(calls) == verbs
    assert says in capsys.readouterr().out


# A host made anew holds nothing of the earlier runs: judging its first site.yml run as a re-run would fail
# the idempotence promise with every change of a first converge (seen after a machine restore: 336 changed).
@pytest.mark.parametrize(
    "made, runs_done_after",
    [
        pytest.param(["db1"], None, id="host-made-anew-first-run-again"),
        pytest.param([], 3, id="hosts-kept-runs-kept"),
    ],
)
def test_runs_done_is_forgotten_only_when_a_host_is_made_anew(demo, monkeypatch, made, runs_done_after):
    monkeypatch.setattr(demo, "ensure_hosts", lambda: made)
    state = {"runs_done": 3, "prepared": "abc"}
    demo.bring_up_hosts(state)
    assert state.get("runs_done") == runs_done_after
    assert state["prepared"] == "abc"  # prepare.yml is chosen by whether the hosts answer SSH, not by this


def test_a_stale_host_is_removed_by_name_and_made_again_at_its_address(demo, monkeypatch):
    calls = []
    monkeypatch.setattr(demo, "podman", _podman(calls, (0, "true\n"), exec_rc=126))
    demo.ensure_hosts()
    rm = next(args for args in calls if args[0] == "rm")
    assert rm[-1] == "locksmith-demo-db" and "--force" in rm
    run = next(args for args in calls if args[0] == "run")
    assert run[run.index("--ip") + 1] == "10.89.42.10"
