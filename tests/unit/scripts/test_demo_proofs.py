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


def test_only_the_values_a_secret_record_holds_are_looked_for(demo):
    record = {
        "format": "locksmith.secret/1",
        "current": {
            "created": 1796014844.15,
            "version": "1",
            "value": {"password": "current-pass-1", "username": "app_owner_role"},
        },
        "previous": {"version": "0", "value": {"nested": {"key": "previous-key-0"}}},
        "pending": None,
        "promoted_at": 1796014844.16,
    }
    # The format name, versions, times and the login role's name are not secrets; a value shorter than 8 characters
    # would match by chance.
    assert demo.secret_parts(record) == {"current-pass-1", "previous-key-0"}
    assert demo.secret_parts(None) == set()


def test_a_value_is_found_as_written_and_as_json_escapes_it(demo):
    values = {"app/db": {'pa"ss\\word-1'}, "app/key": {"0123456789abcdef"}}
    assert demo.secrets_in(values, "nothing here") == []
    assert demo.secrets_in(values, "key=0123456789abcdef") == ["app/key"]
    assert demo.secrets_in(values, json.dumps({"password": 'pa"ss\\word-1'})) == ["app/db"]


def _host_logs(logs):
    def podman(*argv, check=True):
        assert argv[:1] == ("exec",) and argv[2:4] == ("python3", "-c")
        return subprocess.CompletedProcess(argv, 0, json.dumps(logs.get(argv[1], {})), "")

    return podman


def test_every_log_of_the_run_is_read_but_the_demo_settings_and_the_app_repository(demo, monkeypatch, tmp_path):
    state = tmp_path / "state"
    (state / "report" / "drills").mkdir(parents=True)
    (state / "app-repo").mkdir()
    for name in ("site.log", "report/posture.json", "report/drills/a.json", "endpoints.yml", "state.json",
                 "id_ed25519", "known_hosts", "app-repo/.env"):  # fmt: skip
        (state / name).write_text(name)
    for name in ("ENDPOINTS_FILE", "STATE_FILE", "KNOWN_HOSTS", "ADMIN_KEY", "APP_REPO"):
        monkeypatch.setattr(demo, name, state / getattr(demo, name).relative_to(demo.STATE_DIR))
    monkeypatch.setattr(demo, "STATE_DIR", state)
    monkeypatch.setattr(demo, "podman", _host_logs({"locksmith-demo-db": {"journal": "j", "/var/log/a.log": "a"}}))
    places = demo.run_output()
    assert sorted(p for p in places if p.startswith("/")) == [
        str(state / "report" / "drills" / "a.json"), str(state / "report" / "posture.json"), str(state / "site.log")
    ]  # fmt: skip
    assert places["db1:journal"] == "j" and places["db1:/var/log/a.log"] == "a"

    def failing(*argv, check=True):
        return subprocess.CompletedProcess(argv, 125, "", "Error: no container with name or ID")

    monkeypatch.setattr(demo, "podman", failing)
    with pytest.raises(RuntimeError, match="could not be read"):
        demo.run_output()


@pytest.mark.parametrize(
    ("stored", "places", "value", "detail"),
    [
        ({"app/db": {"s3cret-value"}}, {"db1:journal": "Invoked with password=NOT_LOGGING_PARAMETER"}, 0, "1 values"),
        (
            {"app/db": {"s3cret-value"}},
            {"/x/site.log": "ok", "web1:journal": "token s3cret-value"},
            1,
            "found: app/db in web1:journal",
        ),
        ({}, {"db1:journal": "anything"}, None, "holds no secret values"),  # nothing looked for proves nothing
        ({"app/pin": set()}, {"db1:journal": "anything"}, None, "holds no secret values"),  # every value too short
        (OSError("connection refused"), {}, None, "OSError: connection refused"),
        ({"app/db": {"s3cret-value"}}, RuntimeError("the logs of db1 could not be read"), None, "could not be read"),
    ],
)
def test_a_secret_in_any_log_fails_and_an_unread_store_or_host_measures_nothing(
    demo, monkeypatch, stored, places, value, detail
):
    def answer(result):
        def call(*_args):
            if isinstance(result, Exception):
                raise result
            return result

        return call

    monkeypatch.setattr(demo, "stored_secrets", answer(stored))
    monkeypatch.setattr(demo, "run_output", answer(places))
    promise = demo.prove_no_secret_logged("http://bao")[0]
    assert promise["value"] == value and promise["target"] == 0
    assert detail in promise["detail"]
    evidence = json.loads(Path(promise["evidence"]).read_text())
    assert "s3cret-value" not in json.dumps(evidence) and "s3cret-value" not in promise["detail"]
