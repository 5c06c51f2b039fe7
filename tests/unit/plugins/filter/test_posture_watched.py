"""posture_promises' Watched rows: each series the inventory's producers should publish, and whether Prometheus has it.

The Prometheus answers are crafted as ansible.builtin.uri registers them (status, json, msg); tests/integration/
test_posture_playbook.py asks a real Prometheus.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.locksmith.ops.plugins.filter.posture_promises import posture_promises
from ansible_collections.locksmith.ops.plugins.plugin_utils import _posture_watched

REPO = Path(__file__).resolve().parents[4]
URL = "http://10.0.30.11:9090"
# The roles' defaults as posture.yml reads them (roles/<role>/defaults/main.yml), for the switches the rows read.
DEFAULTS = {
    "backup_enabled": True,
    "backup_jobs_enabled": True,
    "backup_metrics_enabled": True,
    "dr_restore_enabled": True,
    "dr_restore_metrics_enabled": True,
    "secrets_enabled": True,
    "secrets_rotate_enabled": True,
    "secrets_metrics_enabled": True,
    "secrets_metrics_dir": "/var/lib/prometheus/node-exporter",
    "audit_enabled": True,
    "audit_metrics_enabled": True,
    "audit_metrics_dir": "/var/lib/prometheus/node-exporter",
}
HARDEN = ["os_hardening", "ssh_hardening", "firewall", "intrusion_detection"]


def site():
    """A small site as posture.yml notes it: db1 backs up and audits app, restore1 drills it, web1 rotates a secret,
    mon1 runs the TLS audit of web1, every host is hardened (db1 as a database host, web1 as a web host)."""
    return {
        "defaults": dict(DEFAULTS),
        "backup": {"db1": {"backup_databases": ["app"]}},
        "drill": {"restore1": {"databases": ["app"]}},
        "tls": {"mon1": {"tls_audit_endpoints": [{"host": "10.0.20.11", "port": 443, "server_name": "web1"}]}},
        "secrets": {"web1": {"secrets_rotations": ["app/webhook"]}},
        "audit": {"db1": {"audit_databases": {"app": "present"}}},
        "hardening": {
            "db1": {"roles": [*HARDEN[:3], "postgresql_hardening", "intrusion_detection"]},
            "web1": {"roles": [*HARDEN[:3], "web_hardening", "intrusion_detection"]},
        },
    }


def series(*pairs):
    """Prometheus' instant-vector answer (as uri registers it) holding these series: (metric, host, labels)."""
    result = [
        {"metric": dict(labels, __name__=metric, host=host, instance="%s:9100" % host, job="node"), "value": [0, "1"]}
        for metric, host, labels in pairs
    ]
    return {"status": 200, "json": {"status": "success", "data": {"resultType": "vector", "result": result}}}


def every_series():
    m = _posture_watched.METRICS
    pairs = [
        (m["backup"], "db1", {"database": "app"}),
        (m["drill"], "restore1", {"database": "app"}),
        (m["tls_run"], "mon1", {"subject": "audit"}),
        (m["tls_expiry"], "mon1", {"endpoint": "10.0.20.11:443", "subject": "audit"}),
        (m["secrets"], "web1", {"secret": "app/webhook"}),
        (m["audit"], "db1", {"database": "app"}),
        (m["intrusion"], "db1", {}),
        (m["intrusion"], "web1", {}),
    ]
    pairs += [(m["hardening"], "db1", {"role": r}) for r in site()["hardening"]["db1"]["roles"]]
    pairs += [(m["hardening"], "web1", {"role": r}) for r in site()["hardening"]["web1"]["roles"]]
    return pairs


def rows(watched, answer=None, url=URL):
    watched = dict(watched, prometheus={"url": url, "source": "test", "answer": answer})
    promises = posture_promises({"watched": watched})
    return {p["name"]: p for p in promises if p["name"].startswith("watched_")}


def test_every_area_has_its_row_and_passes_when_prometheus_has_every_series():
    found = rows(site(), series(*every_series()))
    assert list(found) == [
        "watched_backup",
        "watched_drill",
        "watched_tls",
        "watched_secrets",
        "watched_audit",
        "watched_intrusion",
        "watched_hardening",
    ]
    figures = {name: (row["value"], row["target"], row["compare"]) for name, row in found.items()}
    assert figures == {
        "watched_backup": (1, 1, "ge"),
        "watched_drill": (1, 1, "ge"),
        "watched_tls": (2, 2, "ge"),
        "watched_secrets": (1, 1, "ge"),
        "watched_audit": (1, 1, "ge"),
        "watched_intrusion": (2, 2, "ge"),
        "watched_hardening": (10, 10, "ge"),
    }
    assert found["watched_tls"]["detail"] == (
        "all 2 present (locksmith_tls_cert_not_after_timestamp_seconds, locksmith_tls_last_check_timestamp_seconds)"
    )
    assert found["watched_backup"]["evidence"] == URL + "/api/v1/query"


def test_a_missing_series_fails_its_row_and_is_named_by_host_and_label():
    m = _posture_watched.METRICS
    # The TLS audit ran on the controller (not scraped), and the firewall of web1 never published its converge.
    gone = {(m["tls_run"], "mon1"), (m["tls_expiry"], "mon1")}
    present = [p for p in every_series() if (p[0], p[1]) not in gone]
    present = [p for p in present if p[2] != {"role": "firewall"} or p[1] != "web1"]
    found = rows(site(), series(*present, (m["tls_run"], "localhost", {"subject": "audit"})))
    tls = found["watched_tls"]
    assert (tls["value"], tls["target"]) == (0, 2)
    assert tls["detail"] == (
        "missing in Prometheus (locksmith_tls_cert_not_after_timestamp_seconds, "
        'locksmith_tls_last_check_timestamp_seconds): mon1 subject="audit", mon1 endpoint="10.0.20.11:443" '
        'subject="audit"'
    )
    hardening = found["watched_hardening"]
    assert (hardening["value"], hardening["target"]) == (9, 10)
    assert hardening["detail"].endswith(': web1 role="firewall"')
    # A series of another host, or with another label value, stands for none.
    assert found["watched_backup"]["value"] == 1
    assert rows(site(), series((m["backup"], "db2", {"database": "app"})))["watched_backup"]["value"] == 0
    assert rows(site(), series((m["backup"], "db1", {"database": "App"})))["watched_backup"]["value"] == 0


def test_a_long_list_of_missing_series_names_the_first_ten():
    watched = site()
    watched["hardening"] = {"host%02d" % i: {"roles": HARDEN} for i in range(5)}
    row = rows(watched, series())["watched_hardening"]
    assert (row["value"], row["target"]) == (0, 20)
    assert row["detail"].count("role=") == 10 and row["detail"].endswith(" and 10 more")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            {
                "status": -1,
                "msg": "Status code was -1 and not [200]: Request failed: <urlopen error [Errno 111] "
                "Connection refused>",
            },
            "no answer from Prometheus at %s (Status code was -1 and not [200]: Request failed: <urlopen error "
            "[Errno 111] Connection refused>)" % URL,
        ),
        (
            {"status": 400, "json": {"status": "error", "errorType": "bad_data", "error": "parse error"}},
            "no answer from Prometheus at %s (HTTP 400: parse error)" % URL,
        ),
        (
            {"status": 200, "content": "<html>a proxy</html>"},
            "no answer from Prometheus at %s (HTTP 200, not the Prometheus API)" % URL,
        ),
        (
            {"status": 200, "json": {"status": "success", "data": {"resultType": "matrix", "result": []}}},
            "Prometheus at %s answered with no instant vector" % URL,
        ),
        ({"skipped": True}, "Prometheus at %s was not asked" % URL),
    ],
)
def test_a_prometheus_that_does_not_answer_leaves_the_rows_not_measured_with_the_reason(answer, reason):
    found = rows(site(), answer)
    for name, row in found.items():
        assert row["value"] is None, name
        assert row["detail"] == "not measured: " + reason, name


def test_without_a_prometheus_the_rows_are_not_measured_and_say_why():
    watched = dict(
        site(),
        prometheus={"url": "", "source": "posture_prometheus_url is not set and the group monitoring has no host"},
    )
    found = {p["name"]: p for p in posture_promises({"watched": watched})}
    assert found["watched_backup"]["value"] is None and found["watched_backup"]["evidence"] == ""
    assert found["watched_backup"]["detail"] == (
        "not measured: no Prometheus to ask: posture_prometheus_url is not set and the group monitoring has no host"
    )


def test_a_producer_turned_off_is_not_expected_and_the_row_says_so():
    watched = site()
    watched["backup"]["db1"]["backup_metrics_enabled"] = False
    watched["hardening"]["web1"]["firewall_enabled"] = "false"  # as an ini inventory or -e gives it
    watched["hardening"]["db1"]["intrusion_detection_metrics_enabled"] = False
    watched["tls"]["mon1"]["tls_audit_metrics_dir"] = ""
    watched["audit"]["db1"]["audit_metrics_dir"] = ""  # the off switch before audit_metrics_enabled
    watched["secrets"]["web1"]["secrets_rotations"] = ["app/webhook", "app/db", ""]  # "": an entry without a name
    watched["secrets"]["web1"]["secrets_rotation_metrics_dirs"] = {"app/webhook": ""}
    watched["secrets"]["web1"]["secrets_metrics_enabled"] = False
    found = rows(watched, series())
    backup = found["watched_backup"]
    assert (backup["value"], backup["target"]) == (0, 0)
    assert (
        backup["detail"] == "nothing to watch: every producer is off; off, so not expected: db1 "
        "(backup_metrics_enabled is false)"
    )
    assert found["watched_tls"]["detail"].endswith("mon1 (tls_audit_metrics_dir is empty)")
    assert found["watched_audit"]["detail"].endswith("db1 (audit_metrics_dir is empty)")
    assert found["watched_secrets"]["detail"].endswith(
        "web1 app/db (secrets_metrics_enabled is false), web1 app/webhook (its metrics_dir is empty)"
    )
    # What is still expected must still be there: the rest of the hardening roles are missing here.
    hardening = found["watched_hardening"]
    assert (hardening["value"], hardening["target"]) == (0, 8)
    assert hardening["detail"].endswith(
        "; off, so not expected: db1 (intrusion_detection_metrics_enabled is false), web1 (firewall_enabled is false)"
    )
    assert found["watched_intrusion"]["target"] == 1
    # Every row the report judges: a row with nothing expected is kept (0 of 0), never one that cannot fail.
    for name in ("watched_backup", "watched_tls", "watched_audit", "watched_secrets"):
        assert found[name]["value"] == 0 and found[name]["target"] == 0, name
    assert found["watched_hardening"]["value"] < found["watched_hardening"]["target"]


def test_the_role_defaults_apply_where_the_inventory_sets_nothing():
    watched = site()
    # The audit and secrets roles as they were before they published by default: an empty directory.
    watched["defaults"] = dict(DEFAULTS, audit_metrics_dir="", secrets_metrics_dir="")
    del watched["defaults"]["audit_metrics_enabled"], watched["defaults"]["secrets_metrics_enabled"]
    found = rows(watched, series(*every_series()))
    assert found["watched_audit"]["target"] == 0
    assert found["watched_audit"]["detail"].endswith("db1 (audit_metrics_dir is empty)")
    assert found["watched_secrets"]["detail"].endswith("web1 app/webhook (secrets_metrics_dir is empty)")
    # The inventory's own setting wins over the default; a rotation's own metrics_dir over the role's.
    watched["audit"]["db1"]["audit_metrics_dir"] = "/srv/textfile"
    watched["secrets"]["web1"]["secrets_rotation_metrics_dirs"] = {"app/webhook": "/srv/textfile"}
    found = rows(watched, series(*every_series()))
    assert (found["watched_audit"]["value"], found["watched_audit"]["target"]) == (1, 1)
    assert (found["watched_secrets"]["value"], found["watched_secrets"]["target"]) == (1, 1)
    # The overrides merged last into every rotation win over both.
    watched["secrets"]["web1"]["secrets_rotation_overrides"] = {"metrics_dir": ""}
    assert rows(watched, series())["watched_secrets"]["detail"].endswith(
        "web1 app/webhook (secrets_rotation_overrides.metrics_dir is empty)"
    )


def test_nothing_to_watch_passes_and_says_what_would_be_watched():
    found = rows({"defaults": DEFAULTS}, None, url="")
    for name, row in found.items():
        assert (row["value"], row["target"]) == (0, 0), name
        assert row["detail"].startswith("nothing to watch: "), name
    assert found["watched_secrets"]["detail"] == (
        "nothing to watch: no secrets host (secrets_hosts, default the group secrets) rotates a secret "
        "(secrets_rotations)"
    )
    # A database being removed, a TLS audit host without endpoints: nothing to publish either.
    watched = {"audit": {"db1": {"audit_databases": {"old": "absent"}}}, "tls": {"mon1": {"tls_audit_endpoints": []}}}
    found = rows(watched, series())
    assert found["watched_audit"]["target"] == 0 and found["watched_tls"]["target"] == 0


def test_hostile_label_values_are_compared_as_text_and_named_quoted():
    m = _posture_watched.METRICS
    hostile = 'app"} or vector(1) or {__name__=~".+'
    watched = {"defaults": DEFAULTS, "backup": {"db1": {"backup_databases": [hostile, "billing\nx"]}}}
    # Prometheus has a series whose value only looks like the selector; and one that is exactly the name.
    answer = series((m["backup"], "db1", {"database": "app"}), (m["backup"], "db1", {"database": hostile}))
    row = rows(watched, answer)["watched_backup"]
    assert (row["value"], row["target"]) == (1, 2)
    assert row["detail"].endswith(': db1 database="billing\\nx"')
    row = rows(watched, series((m["backup"], "db1", {"database": "app"})))["watched_backup"]
    assert 'db1 database="app\\"} or vector(1) or {__name__=~\\".+"' in row["detail"]


def test_series_without_a_host_label_are_pointed_out():
    m = _posture_watched.METRICS
    answer = series()
    answer["json"]["data"]["result"].append(
        {"metric": {"__name__": m["backup"], "database": "app", "instance": "10.0.10.11:9100"}, "value": [0, "1"]}
    )
    row = rows(site(), answer)["watched_backup"]
    assert row["value"] == 0
    assert row["detail"].endswith("; Prometheus has locksmith_backup_rpo_target_seconds without a host label")


def test_tls_endpoints_are_named_as_tls_check_names_them_and_a_subject_may_be_empty():
    m = _posture_watched.METRICS
    endpoints = [{"host": "db1", "port": 5432, "starttls": "postgres"}, {"host": "www", "name": "site"}, {"host": "a"}]
    watched = {"tls": {"mon1": {"tls_audit_endpoints": endpoints, "tls_audit_metrics_subject": ""}}}
    answer = series(
        (m["tls_run"], "mon1", {}),
        (m["tls_expiry"], "mon1", {"endpoint": "db1:5432"}),
        (m["tls_expiry"], "mon1", {"endpoint": "site"}),
        (m["tls_expiry"], "mon1", {"endpoint": "a:443"}),
    )
    row = rows(watched, answer)["watched_tls"]
    assert (row["value"], row["target"]) == (4, 4), row["detail"]


@pytest.mark.parametrize(
    ("watched", "message"),
    [
        ("x", "watched must be a dict, got str"),
        ({"backup": ["db1"]}, r"watched.backup must be a dict of hosts"),
        ({"backup": {"db1": "app"}}, r"watched.backup\['db1'\] must be a dict of the role's variables"),
        ({"backup": {"db1": {"backup_databases": "app"}}}, r"backup\['db1'\].backup_databases must be a list of names"),
        ({"backup": {"db1": {"backup_databases": ["app"], "backup_enabled": "maybe"}}}, r"backup_enabled is 'maybe'"),
        ({"audit": {"db1": {"audit_databases": ["app"]}}}, r"audit\['db1'\].audit_databases must be a dict"),
        ({"tls": {"mon1": {"tls_audit_endpoints": ["web1"]}}}, r"tls_audit_endpoints\[0\] must be a dict with a host"),
        ({"tls": {"mon1": {"tls_audit_endpoints": [{"host": "w", "port": "x"}]}}}, r"port is 'x', not a port"),
        ({"hardening": {"web1": {"roles": ["lynis"]}}}, r"hardening\['web1'\].roles must be a list of os_hardening"),
        ({"prometheus": "http://x"}, "watched.prometheus must be a dict"),
        ({"prometheus": {"url": 9090}}, "watched.prometheus.url must be a string"),
    ],
)
def test_measurements_of_the_wrong_shape_are_named(watched, message):
    with pytest.raises(AnsibleFilterError, match=message):
        posture_promises({"watched": watched})


def _posture_play(name):
    plays = yaml.safe_load((REPO / "playbooks" / "posture.yml").read_text())
    [play] = [p for p in plays if p["name"] == name]
    return play


def test_posture_yml_asks_prometheus_for_exactly_the_series_the_rows_compare():
    play = _posture_play("Judge every figure against its target and write the report")
    [ask] = [t for t in play["tasks"][0]["block"] if t["name"].startswith("Ask Prometheus")]
    query = ask["ansible.builtin.uri"]["body"]["query"]
    match = re.fullmatch(r'\{__name__=~"([a-z_|]+)"\}', query.strip())
    assert match, query
    assert sorted(match.group(1).split("|")) == sorted(set(_posture_watched.METRICS.values()))
    # Bound as a form field (the uri module encodes it), never spliced into the URL.
    assert ask["ansible.builtin.uri"]["body_format"] == "form-urlencoded" and "{{" not in query


def test_the_tls_audit_defaults_are_tls_audit_yml_s_own_and_its_hosts_the_same():
    text = (REPO / "playbooks" / "tls_audit.yml").read_text()
    for name, value in _posture_watched.TLS_AUDIT_DEFAULTS.items():
        assert "%s | default('%s')" % (name, value) in text, name
    [audit] = yaml.safe_load(text)
    play = _posture_play("Note where the TLS audit publishes its metrics")
    assert play["hosts"] == audit["hosts"]


def test_the_switches_the_rows_read_are_the_roles_variables():
    """A renamed switch would leave the rows expecting what the role no longer publishes."""
    specs = {}
    for path in (REPO / "roles").glob("*/meta/argument_specs.yml"):
        spec = yaml.safe_load(path.read_text())["argument_specs"]
        for entry in spec.values():
            specs.update(entry.get("options", {}))
    read = set(DEFAULTS) | {
        "%s_%s" % (r, s) for r in _posture_watched.HARDENING_ROLES for s in ("enabled", "metrics_enabled")
    }
    assert sorted(read - set(specs)) == []


def test_a_host_whose_settings_were_not_read_leaves_its_rows_not_measured():
    # db1 failed earlier in the run, before its audit settings were noted: its row must not read "nothing to watch"
    # (the only audit host) nor "all present" (the others), whatever Prometheus has.
    watched = site()
    unread = {_posture_watched.UNREAD: "the host failed earlier in this run"}
    watched["audit"] = {"db1": unread}
    watched["hardening"] = dict(watched["hardening"], db1=unread)
    found = rows(watched, series(*every_series()))
    for name in ("watched_audit", "watched_hardening"):
        assert found[name]["value"] is None, found[name]
        assert found[name]["detail"].startswith("not measured: settings not read on db1 (the host failed earlier")
    assert posture_promises({"watched": dict(watched, prometheus={"url": ""})})[4]["value"] is None
    assert found["watched_backup"]["value"] == 1  # the other areas are judged as before
