"""playbooks/awx_configure.yml without an AWX server: the schedules' rrules parse and fire at the times
docs/awx.md documents, every scenario playbook has a job template, and no secret is written in plain text.

The playbook's own Jinja expressions are rendered with ansible's Templar, as ansible-playbook would."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from dateutil.rrule import DAILY, MONTHLY, WEEKLY, rrulestr

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = REPO / "playbooks" / "awx_configure.yml"
DOC = REPO / "docs" / "awx.md"
SCENARIOS = {"harden", "audit", "secrets", "backup", "tls_audit", "monitoring", "dr_drill", "site"}
# AWX stores a schedule as "DTSTART;TZID=<zone>:<local time> RRULE:<rule>" and rejects other shapes.
AWX_RRULE = re.compile(r"^DTSTART;TZID=[A-Za-z_/+-]+:\d{8}T\d{6} RRULE:FREQ=[A-Z]+(;[A-Z]+=[A-Z0-9,+-]+)+$")
WEEKDAYS = {"Monday": 0, "Tuesday": 1, "Wednesday": 2, "Thursday": 3, "Friday": 4, "Saturday": 5, "Sunday": 6}
SECRET_INPUTS = {"ssh_key_data", "vault_password", "password", "token", "secret_key", "controller_oauthtoken"}

_LOADER = DataLoader()


def load_play() -> dict:
    (play,) = _LOADER.load_from_file(str(PLAYBOOK), trusted_as_template=True)
    return play


def render(value, **extra):
    """Template a value from the playbook with the play's vars plus `extra` (extra vars win, as with -e)."""
    play = load_play()
    return Templar(loader=_LOADER, variables={**play["vars"], **extra}).template(value)


def task(play: dict, prefix: str) -> dict:
    (found,) = [t for t in play["tasks"] if t["name"].startswith(prefix)]
    return found


def documented_schedules() -> dict[str, dict]:
    """Rows of the schedules table in docs/awx.md: name -> {job_template, runs, job_type}."""
    rows = {}
    section = DOC.read_text().split("### Schedules", 1)[1].split("\n#", 1)[0]
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("locksmith "):
            rows[cells[0]] = {"job_template": cells[1], "runs": cells[2], "job_type": cells[3], "rrule": cells[4]}
    return rows


def expectation(runs: str) -> tuple[int, int | None, int, int]:
    """'daily 02:00' / 'weekly Sunday 04:00' / 'monthly day 1 03:00' -> (freq, day, hour, minute)."""
    match = re.fullmatch(r"(daily|weekly (\w+day)|monthly day (\d+)) (\d\d):(\d\d)", runs)
    assert match, f"docs/awx.md: cannot read the time {runs!r}"
    if match[1] == "daily":
        freq, day = DAILY, None
    elif match[2]:
        freq, day = WEEKLY, WEEKDAYS[match[2]]
    else:
        freq, day = MONTHLY, int(match[3])
    return freq, day, int(match[4]), int(match[5])


def occurrences(rule: str, count: int = 40) -> list[dt.datetime]:
    return list(rrulestr(rule)[:count])


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Berlin", "America/New_York"])
def test_every_schedule_fires_at_its_documented_time(timezone):
    play = load_play()
    documented = documented_schedules()
    schedules = play["vars"]["awx_schedules"]
    assert {s["name"] for s in schedules} == set(documented), "docs/awx.md schedules table != awx_schedules"
    for schedule in schedules:
        rule = render(schedule["rrule"], awx_schedule_timezone=timezone)
        assert AWX_RRULE.match(rule), f"{schedule['name']}: {rule!r} is not in AWX's DTSTART;TZID=... RRULE: form"
        assert f"TZID={timezone}:" in rule
        doc = documented[schedule["name"]]
        assert doc["rrule"] == render(schedule["rrule"]), "docs/awx.md shows the rule with the default zone, UTC"
        assert doc["job_template"] == schedule["job_template"]
        assert doc["job_type"] == schedule.get("job_type", "run")
        freq, day, hour, minute = expectation(doc["runs"])
        parsed = rrulestr(rule)
        assert parsed._freq == freq, f"{schedule['name']}: frequency {parsed._freq} != documented {doc['runs']}"
        times = occurrences(rule)
        assert times[0].tzinfo is not None and times[0].tzname() is not None
        for when in times:
            # Local wall-clock time in the schedule's zone, across DST changes.
            assert (when.hour, when.minute) == (hour, minute), f"{schedule['name']} fires at {when}"
            if freq == WEEKLY:
                assert when.weekday() == day
            if freq == MONTHLY:
                assert when.day == day
        gaps = {(b.date() - a.date()).days for a, b in itertools.pairwise(times)}
        assert gaps == {DAILY: {1}, WEEKLY: {7}}.get(freq, gaps), f"{schedule['name']}: gaps {gaps}"
        if freq == MONTHLY:
            assert [t.month for t in times[:12]] == list(range(1, 13))


def test_the_documented_time_check_can_fail():
    wrong = "DTSTART;TZID=UTC:20260101T021500 RRULE:FREQ=DAILY;INTERVAL=1"
    freq, _day, hour, minute = expectation("daily 02:00")
    assert rrulestr(wrong)._freq == freq
    assert (occurrences(wrong)[0].hour, occurrences(wrong)[0].minute) != (hour, minute)
    with pytest.raises(AssertionError, match="cannot read the time"):
        expectation("every full moon")


def test_schedules_named_in_the_issue_exist():
    by_template = {}
    for schedule in load_play()["vars"]["awx_schedules"]:
        by_template.setdefault(schedule["job_template"], []).append(schedule)
    assert set(by_template) == {
        "locksmith backup",
        "locksmith dr_drill",
        "locksmith tls_audit",
        "locksmith secrets",
        "locksmith harden",
    }
    (nightly,) = by_template["locksmith harden"]
    assert nightly["job_type"] == "check" and nightly["diff_mode"] is True
    assert rrulestr(render(nightly["rrule"]))._freq == DAILY
    assert all("job_type" not in s for t, group in by_template.items() if t != "locksmith harden" for s in group)


def test_one_job_template_per_scenario_playbook():
    play = load_play()
    templates = play["vars"]["awx_job_templates"]
    playbooks = {Path(t["playbook"]).stem for t in templates}
    assert playbooks == SCENARIOS
    assert len(templates) == len(SCENARIOS)
    names = {t["name"] for t in templates}
    for schedule in play["vars"]["awx_schedules"]:
        assert schedule["job_template"] in names
    # A schedule may prompt for job type / diff mode only if its job template asks for them on launch.
    harden = next(t for t in templates if t["name"] == "locksmith harden")
    assert harden["ask_job_type_on_launch"] and harden["ask_diff_mode_on_launch"]
    for template in templates:
        assert set(template["credentials"]) <= set(play["vars"]["awx_credential_names"])


def test_job_template_playbooks_exist_in_the_repository():
    missing = [t["playbook"] for t in load_play()["vars"]["awx_job_templates"] if not (REPO / t["playbook"]).is_file()]
    assert not missing, f"job templates name playbooks the project does not hold: {missing}"


def test_inventories_come_from_the_repository():
    play = load_play()
    for inventory in play["vars"]["awx_inventories"]:
        assert (REPO / inventory["source_path"]).is_file(), inventory
    source = task(play, "Ensure each inventory syncs")["awx.awx.inventory_source"]
    assert source["source"] == "scm" and source["update_on_launch"] is True


def test_credentials_attach_only_what_is_configured():
    play = load_play()
    expr = task(play, "Ensure one job template")["awx.awx.job_template"]["credentials"]
    site = next(t for t in play["vars"]["awx_job_templates"] if t["name"] == "locksmith site")
    assert render(expr, item=site) == ["locksmith machine", "locksmith ansible-vault"]
    full = {"awx_aws_access_key": "x", "awx_aws_secret_key": "y", "awx_openbao_url": "https://bao", "item": site}
    assert render(expr, **full) == [
        "locksmith machine",
        "locksmith ansible-vault",
        "locksmith AWS",
        "locksmith OpenBao token",
    ]


def test_machine_and_vault_inputs_leave_out_what_is_not_given():
    play = load_play()
    machine = task(play, "Ensure the machine credential")["awx.awx.credential"]["inputs"]
    assert render(machine, awx_machine_username="deploy") == {"username": "deploy", "become_method": "sudo"}
    given = render(machine, awx_machine_username="deploy", awx_machine_ssh_key_data="KEY")
    assert given["ssh_key_data"] == "KEY"
    vault = task(play, "Ensure the ansible-vault credential")["awx.awx.credential"]["inputs"]
    assert render(vault, awx_vault_password="pw") == {"vault_password": "pw"}
    assert render(vault, awx_vault_password="pw", awx_vault_id="prod")["vault_id"] == "prod"


def test_token_credential_type_injects_the_variables_our_lookup_reads():
    injectors = task(load_play(), "Ensure the credential type")["awx.awx.credential_type"]["injectors"]
    # AWX renders these itself at job start: they must reach it as literal templates.
    assert render(injectors) == {"env": {"VAULT_ADDR": "{{ url }}", "VAULT_TOKEN": "{{ token }}"}}
    fragment = (REPO / "plugins" / "doc_fragments" / "secrets_backend.py").read_text()
    assert "name: VAULT_ADDR" in fragment and "name: VAULT_TOKEN" in fragment


def _secret_values(node, path=()):
    """(path, value) for every secret-named key under a task's module arguments."""
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key) in SECRET_INPUTS:
                yield (*path, key), value
            yield from _secret_values(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _secret_values(value, (*path, str(index)))


def test_no_secret_is_written_in_the_playbook():
    play = load_play()
    secret_named = [n for n, v in play["vars"].items() if re.search(r"token|password|secret|ssh_key", n)]
    assert [n for n in secret_named if not isinstance(play["vars"][n], bool)] == []
    for module_args in ({"module_defaults": play["module_defaults"]}, *play["tasks"]):
        for path, value in _secret_values(module_args):
            if "injectors" in path or "metadata" in path:
                continue  # AWX's own templates; the name of a key inside Vault
            assert re.fullmatch(r"\{\{ awx_[a-z_]+( \| default\(omit\))? \}\}", str(value)), (path, value)
    for credential in [t for t in play["tasks"] if "awx.awx.credential" in t]:
        assert credential.get("no_log") is True, f"{credential['name']}: set no_log"
        assert credential["awx.awx.credential"]["update_secrets"] == "{{ awx_update_secrets }}"
    assert play["vars"]["awx_update_secrets"] is False


def test_preflight_names_every_required_setting():
    assertion = task(load_play(), "Check the required settings")["ansible.builtin.assert"]
    for name in ("awx_project_scm_url", "awx_ee_image", "awx_machine_username", "awx_vault_password"):
        assert any(name in str(condition) for condition in assertion["that"])
        assert name in assertion["fail_msg"]
