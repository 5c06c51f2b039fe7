"""scripts/demo.py proofs: what counts as measured. A probe that could reach nothing, a ban fail2ban does not hold,
a failure that is not the input check, or a recap that could not be read must never read as a kept promise.

podman, SSH and the probes are replaced by stubs that answer as the real ones do; nothing runs.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
REFUSED = {
    "failed": True,
    "option": "tables[0]",
    "msg": "tables[0] 'x; --' is not a valid identifier: use letters, ...; nothing was sent to the server",
}


@pytest.fixture(name="demo")
def _demo(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("locksmith_demo_proofs", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "REPORT_DIR", tmp_path)
    return module


@pytest.mark.parametrize(
    ("result", "option", "clean"),
    [
        (REFUSED, "tables", True),
        (REFUSED, "schema", False),  # refused, but for another option than the one holding the payload
        ({**REFUSED, "msg": "unable to connect to database: connection refused"}, "tables", False),
        ({"failed": True, "msg": "Failed to import the required Python library (psycopg2)"}, "tables", False),
        ({**REFUSED, "exception": "Traceback (most recent call last): ..."}, "tables", False),
        ({**REFUSED, "failed": False}, "tables", False),
    ],
)
def test_only_the_input_check_counts_as_a_clean_rejection(demo, result, option, clean):
    assert demo.clean_failure(result, option) is clean


def test_a_recap_without_every_host_is_not_a_run_without_changes(demo):
    full = {host: {"changed": 0} for host in demo.HOSTS}
    assert demo.changed_count({**full, "_rc": 0, "_seconds": 1.0}) == 0
    assert demo.changed_count({**full, "db1": {"changed": 2}}) == 2
    assert demo.changed_count({"_rc": 0, "_seconds": 1.0}) is None
    assert demo.changed_count({"db1": {"changed": 0}}) is None


@pytest.mark.parametrize(
    ("outside", "control", "leaks"),
    [
        ("refused", "open", 0),
        ("timeout", "open", 0),
        ("open", "open", 2),
        ("refused", "timeout", None),  # the outside address reaches nothing: no proof
        ("OSError", "open", None),  # the probe failed, it did not find the port closed
        ("Error: requested ip address 10.89.42.66 is already allocated", "open", None),
    ],
)
def test_a_closed_port_counts_only_when_the_outside_address_reaches_the_public_one(
    demo, monkeypatch, outside, control, leaks
):
    def from_address(address, action, host, port):
        return control if (host, port) == (demo.HOSTS["web1"][1], "443") else outside

    monkeypatch.setattr(demo, "from_address", from_address)
    monkeypatch.setattr(demo, "from_admin", lambda host, port: "open")
    monkeypatch.setattr(demo, "admin_ssh", lambda address, *command: (0, ""))
    promises = {p["name"]: p for p in demo.prove_network()}
    assert promises["network_outside_reachable"]["value"] == leaks
    assert promises["network_admin_reachable"]["value"] == 3
    assert f"control: web1:443 {control}" in promises["network_outside_reachable"]["detail"]


@pytest.mark.parametrize(
    ("attacker", "banned_list", "seconds"),
    [
        ("banned 4.2", "[{'locksmith-nginx-sqli': ['10.89.42.66']}]", 4.2),
        ("banned 4.2", "[{'locksmith-nginx-sqli': []}]", None),  # refused, but not by fail2ban
        ("unreachable-before timeout", "[{'locksmith-nginx-sqli': ['10.89.42.66']}]", None),  # banned already
        ("open", "[{'locksmith-nginx-sqli': []}]", None),
    ],
)
def test_a_ban_counts_only_when_fail2ban_holds_it_and_the_attacker_reached_the_site_first(
    demo, monkeypatch, attacker, banned_list, seconds
):
    monkeypatch.setattr(demo, "from_address", lambda address, *argv: attacker if address == demo.OUTSIDER else "open")
    calls = []

    def podman(*argv, check=True):
        calls.append(argv)
        out = banned_list if argv[-1] == "banned" else ""
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(demo, "podman", podman)
    promises = {p["name"]: p for p in demo.prove_intrusion()}
    assert promises["intrusion_ban_seconds"]["value"] == seconds
    assert promises["intrusion_benign_banned"]["value"] == 0
    assert calls[-1][-2:] == ("unban", demo.OUTSIDER)


@pytest.mark.parametrize(
    ("runs", "unclean"),
    [
        ({"pg_backup tables": [REFUSED], "audit_trigger tables": [REFUSED]}, 0),
        ({"pg_backup tables": [REFUSED], "audit_trigger tables": [{**REFUSED, "failed": False}]}, 1),
        # A module whose payloads never ran (an empty loop, a skipped include) proves nothing: not "0 unclean".
        ({"pg_backup tables": [REFUSED], "audit_trigger tables": []}, None),
        ({}, None),
    ],
)
def test_injection_counts_only_when_every_module_was_tried(demo, monkeypatch, runs, unclean):
    def fake_play(*_args, **_kwargs):
        data = {"rows_before": 5, "rows_after": 5, "runs": runs}
        (demo.REPORT_DIR / "injection.json").write_text(json.dumps(data))
        return {"_rc": 0}

    monkeypatch.setattr(demo, "run_play", fake_play)
    promise = {p["name"]: p for p in demo.prove_injection()}["injection_not_rejected"]
    assert promise["value"] == unclean
