"""Systemd containers from localhost/bookworm-systemd as throwaway target hosts for integration tests.

Rootful podman with the repository's containers.conf (runc, cgroupfs); never --privileged, never host
networking. The controller reaches a container at its address on the podman bridge, and the container
sees the controller at the bridge gateway.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/bookworm-systemd"


def podman_env() -> dict:
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(REPO / "molecule/containers.conf"))}


def podman(*args: str, check: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=podman_env(), timeout=timeout, check=check
    )


def wait_for_systemd(name: str, timeout: float = 60) -> bool:
    """Wait until systemd in container `name` has booted (running or degraded), so `podman exec` can use it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = podman("exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return True
        time.sleep(0.5)
    return False


def podman_unavailable() -> str | None:
    """Why podman cannot run target hosts here, or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc)"
    try:
        podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        return f"podman does not work here: {getattr(err, 'stderr', err)}"
    return None


def ensure_image() -> None:
    """Build the target image with molecule/build-image.sh when it is missing (cached afterwards)."""
    if podman("image", "exists", IMAGE, check=False).returncode == 0:
        return
    subprocess.run([str(REPO / "molecule/build-image.sh")], env=podman_env(), check=True, timeout=900)


class PodmanHosts:
    """Containers named <prefix>-<role>-<hex>; remove_all() deletes every one this object started."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.run_id = uuid.uuid4().hex[:8]
        self.names: list[str] = []

    def start(self, role: str) -> dict:
        """Start one systemd container; return {name, address, gateway} once systemd runs."""
        name = f"{self.prefix}-{role}-{self.run_id}"
        self.names.append(name)
        podman(
            "run", "-d", "--name", name, "--hostname", f"{self.prefix}-{role}", "--systemd=always", IMAGE, "/sbin/init"
        )
        wait_for_systemd(name)
        network = json.loads(podman("inspect", name).stdout)[0]["NetworkSettings"]
        return {"name": name, "address": network["IPAddress"], "gateway": network["Gateway"]}

    def remove(self, name: str) -> None:
        podman("rm", "--force", "--time", "5", name, check=False)

    def remove_all(self) -> None:
        for name in self.names:
            self.remove(name)

    @staticmethod
    def inventory(path: Path, groups: dict[str, list[str]]) -> Path:
        """An INI inventory: containers through the podman connection, 'localhost' as the controller."""
        lines = []
        for group, hosts in groups.items():
            lines.append(f"[{group}]")
            for host in hosts:
                if host == "localhost":
                    lines.append(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}")
                else:
                    connection = "ansible_connection=containers.podman.podman"
                    lines.append(f"{host} {connection} ansible_python_interpreter=/usr/bin/python3")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
