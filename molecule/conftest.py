"""Shared by the scenarios' testinfra tests (molecule/<scenario>/tests): running the role again, as an operator
would, to test a refusal, a rollback or a second run on the converged instance."""

import json
import os
import subprocess

import pytest

CONVERGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_shared", "converge.yml")
# Over SSH to a container made for the test: no host key to check, one connection reused within a run.
SSH_ENV = {
    "ANSIBLE_HOST_KEY_CHECKING": "False",
    "ANSIBLE_PIPELINING": "True",
    "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null",
}


def run_playbook(extra_vars=None, *, playbook=CONVERGE, ssh_to=None, user="root", options=(), timeout=600):
    """ansible-playbook on the scenario's instance (podman exec), or over SSH to ``ssh_to`` as ``user``
    (with sudo when not root); ``playbook`` is the shared converge, which applies the scenario's role.

    Returns the exit code and the whole output on one line: failures go to stderr and the callback wraps lines.
    """
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    if ssh_to:
        key = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "id_ed25519")
        target = ["--inventory", f"{ssh_to},", "--user", user, "--private-key", key]
        target += [] if user == "root" else ["--become"]
        env.update(SSH_ENV)
    else:
        target = ["--inventory", os.environ["MOLECULE_INVENTORY_FILE"]]
    run = subprocess.run(
        ["ansible-playbook", *target, *options, "--extra-vars", json.dumps(extra_vars or {}), playbook],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=timeout,
    )
    return run.returncode, " ".join((run.stdout + run.stderr).split())


@pytest.fixture(scope="session")
def run_role():
    """run_playbook, for the tests that run the role again."""
    return run_playbook
