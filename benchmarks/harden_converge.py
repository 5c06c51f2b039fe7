"""Converge time of playbooks/harden.yml on 1 and on N podman containers, and of the idempotent re-run.

For each fleet size it starts that many bookworm-systemd containers (unprivileged, podman's own bridge network,
never --privileged), runs playbooks/harden.yml with forks equal to the fleet size, runs it again, and prints
the wall time of both runs, the changed count of each host on the second run and the Lynis index before and
after. The containers are removed at the end (also on failure).

    .venv/bin/python benchmarks/harden_converge.py [--sizes 1 4] [--extra-vars '{"firewall_enabled": false}']

By default only the roles that converge without site data run: the roles with an allowlist (ssh_hardening,
firewall, intrusion_detection) and web_hardening are switched off with their <role>_enabled, unless
--extra-vars switches them on and gives their data. Run `make image` first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = "localhost/bookworm-systemd"
DEFAULT_VARS = {
    "ssh_hardening_enabled": False,
    "firewall_enabled": False,
    "intrusion_detection_enabled": False,
    "web_hardening_enabled": False,
}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)
LYNIS = re.compile(r"Lynis hardening index on (\S+): before (\S+), after (\d+)")


def _env() -> dict:
    env = dict(os.environ)
    env.update(
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"),
        CONTAINERS_CONF=str(REPO / "molecule" / "containers.conf"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="False",
        PATH=f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}",
    )
    return env


def _podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True, env=_env()).stdout


def _run_playbook(inventory: Path, forks: int, extra_vars: dict) -> tuple[float, str]:
    start = time.monotonic()
    run = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "--inventory",
            str(inventory),
            "--forks",
            str(forks),
            "--extra-vars",
            json.dumps(extra_vars),
            str(REPO / "playbooks" / "harden.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=_env(),
    )
    elapsed = time.monotonic() - start
    if run.returncode != 0:
        sys.stderr.write(run.stdout[-6000:] + run.stderr[-3000:])
        raise SystemExit(f"harden.yml failed (rc {run.returncode}) on {inventory}")
    return elapsed, run.stdout


def measure(size: int, extra_vars: dict) -> dict:
    """Start `size` containers, converge twice, return the figures; the containers are always removed."""
    names = [f"harden-bench-{size}-{i}" for i in range(size)]
    try:
        for name in names:
            _podman("run", "-d", "--name", name, "--hostname", "bookworm", "--systemd=always", IMAGE, "/sbin/init")
        with tempfile.TemporaryDirectory() as tmp:
            inventory = Path(tmp) / "inventory.ini"
            inventory.write_text(
                "[all]\n"
                + "".join(
                    f"{n} ansible_connection=containers.podman.podman ansible_python_interpreter=/usr/bin/python3\n"
                    for n in names
                )
            )
            first, out1 = _run_playbook(inventory, size, extra_vars)
            second, out2 = _run_playbook(inventory, size, extra_vars)
    finally:
        subprocess.run(["podman", "rm", "-f", *names], capture_output=True, check=False, env=_env())
    return {
        "hosts": size,
        "converge_seconds": round(first, 1),
        "rerun_seconds": round(second, 1),
        "rerun_changed": {m[0]: int(m[2]) for m in RECAP.findall(out2)},
        "lynis": {m[0]: {"before": m[1], "after": int(m[2])} for m in LYNIS.findall(" ".join(out1.split()))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--extra-vars", default="{}", help="JSON merged over the default role switches")
    args = parser.parse_args()
    extra_vars = {**DEFAULT_VARS, **json.loads(args.extra_vars)}
    print(f"harden.yml with {json.dumps(extra_vars)}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for size in args.sizes:
        result = measure(size, extra_vars)
        print(json.dumps(result))
        print(
            f"{size} host(s), forks {size}: converge {result['converge_seconds']} s, "
            f"idempotent re-run {result['rerun_seconds']} s (changed per host: {result['rerun_changed']})"
        )


if __name__ == "__main__":
    main()
