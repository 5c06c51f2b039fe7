"""benchmarks/fleet.py: the CPU each run used, and the lowest 8-host/1-host ratio that CPU allows."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(name="fleet")
def _fleet():
    spec = importlib.util.spec_from_file_location("locksmith_fleet_benchmark", ROOT / "benchmarks" / "fleet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_busy_cpu_counts_everything_but_idle_and_iowait(fleet):
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice
    text = f"cpu  {3 * hz} {1 * hz} {2 * hz} {50 * hz} {7 * hz} 0 {1 * hz} 0 {4 * hz} 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    # guest time is already part of user: it is not added twice.
    assert fleet.busy_cpu_seconds(text) == pytest.approx(7.0)


def test_busy_cpu_refuses_a_file_that_is_not_proc_stat(fleet):
    with pytest.raises(ValueError, match="cpu"):
        fleet.busy_cpu_seconds("intr 1 2 3\n")


CGROUP = "/libpod_parent/libpod-0123abcd"


@pytest.mark.parametrize(
    "relative, text, seconds",
    [
        pytest.param("cpuacct/libpod_parent/libpod-0123abcd/cpuacct.usage", "2500000000\n", 2.5, id="v1-nanoseconds"),
        pytest.param(
            "libpod_parent/libpod-0123abcd/cpu.stat", "usage_usec 1500000\nuser_usec 1000000\n", 1.5, id="v2-usec"
        ),
    ],
)
def test_a_containers_cpu_from_either_cgroup_version(fleet, tmp_path, relative, text, seconds):
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert fleet.cgroup_cpu_seconds(CGROUP, root=tmp_path) == pytest.approx(seconds)


def test_a_containers_cpu_is_unknown_without_a_readable_cgroup(fleet, tmp_path):
    assert fleet.cgroup_cpu_seconds(CGROUP, root=tmp_path) is None


def test_the_hosts_cpu_is_unknown_if_any_host_is_unreadable(fleet, monkeypatch):
    readings = {"/a": 1.0, "/b": None}
    monkeypatch.setattr(fleet, "cgroup_cpu_seconds", readings.get)
    assert fleet._hosts_cpu_seconds(["/a"]) == 1.0
    assert fleet._hosts_cpu_seconds(["/a", "/b"]) is None


def test_cpu_bound_is_the_n_host_cpu_over_the_cpus_against_the_1_host_time(fleet):
    # Session 10's shape: 1 host re-runs in 40 s with one CPU busy; 8 hosts use 8 x 38 s of CPU on 2 CPUs.
    one = {"hosts": 1, "seconds": 40.0, "cpu_seconds": 38.0}
    eight = {"hosts": 8, "seconds": 154.3, "cpu_seconds": 304.0}
    bound = fleet.cpu_bound(one, eight, cpus=2)
    assert bound["floor_seconds_n"] == 152.0
    assert bound["lowest_ratio"] == 3.8  # above 3: the target needs less CPU per host on this machine
    assert bound["cpu_per_host_n"] == 38.0
    assert bound["cores_busy_1"] == 0.95
    # The same work on 4 CPUs leaves room for 3x.
    assert fleet.cpu_bound(one, eight, cpus=4)["lowest_ratio"] == 1.9


def test_no_cpu_bound_without_the_hosts_cpu(fleet):
    one = {"hosts": 1, "seconds": 40.0, "cpu_seconds": None}
    eight = {"hosts": 8, "seconds": 154.3, "cpu_seconds": 304.0}
    assert fleet.cpu_bound(one, eight, cpus=2) is None
