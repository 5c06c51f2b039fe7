from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.locksmith.ops.plugins.filter.slo_rules import FilterModule, slo_rules

SPEC = {
    "name": "web_latency",
    "objective": 99.5,
    "error_query": (
        "sum(rate(http_request_duration_seconds_count[$window]))"
        ' - sum(rate(http_request_duration_seconds_bucket{le="0.5"}[$window]))'
    ),
    "total_query": "sum(rate(http_request_duration_seconds_count[$window]))",
    "labels": {"service": "web"},
}


def test_recording_rules_cover_every_window_and_alerts_use_both_windows():
    (group,) = slo_rules([SPEC])
    assert group["name"] == "slo-web_latency"
    records = [r["record"] for r in group["rules"] if "record" in r]
    windows = [rec.rsplit("ratio_rate", 1)[1] for rec in records if "ratio_rate" in rec]
    assert windows == ["1h", "5m", "6h", "30m", "3d"]
    assert "[$window]" not in str(group) and "[5m]" in str(group)
    alerts = [r for r in group["rules"] if "alert" in r]
    assert [(a["labels"]["burn_rate"], a["labels"]["severity"], a["for"]) for a in alerts] == [
        ("14.4", "critical", "2m"),
        ("6.0", "critical", "15m"),
        ("1.0", "warning", "1h"),
    ]
    fast = alerts[0]["expr"]
    # 14.4 x a 0.5 % budget, on both the 1 h and the 5 m series of this SLO only
    assert 'slo:sli_error:ratio_rate1h{service="web",slo="web_latency"} > 0.072' in fast
    assert 'slo:sli_error:ratio_rate5m{service="web",slo="web_latency"} > 0.072' in fast


def test_custom_burn_table():
    (group,) = slo_rules([SPEC], [[2, "2h", "10m", "warning", "5m"]])
    alerts = [r for r in group["rules"] if "alert" in r]
    assert len(alerts) == 1 and alerts[0]["labels"]["long_window"] == "2h"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"objective": 100}, r"slos\[0\] objective 100 must be between 0 and 100"),
        ({"objective": "high"}, r"objective 'high' must be a percentage"),
        ({"name": "Web-Latency"}, r"name 'Web-Latency' must be lower-case"),
        ({"total_query": "sum(rate(x[5m]))"}, r"total_query must contain the placeholder \$window"),
        ({"labels": {"bad-label": "x"}}, r"label name 'bad-label' is not a valid Prometheus label"),
    ],
)
def test_bad_specs_name_the_entry_and_the_fix(change, message):
    with pytest.raises(AnsibleFilterError, match=message):
        slo_rules([dict(SPEC, **change)])


def test_missing_keys_and_wrong_shapes():
    with pytest.raises(AnsibleFilterError, match=r"slos\[0\] is missing 'error_query'"):
        slo_rules([{"name": "x", "objective": 99, "total_query": "$window"}])
    with pytest.raises(AnsibleFilterError, match="expected a list"):
        slo_rules({"name": "x"})
    with pytest.raises(AnsibleFilterError, match="must be a dict"):
        slo_rules(["x"])
    with pytest.raises(AnsibleFilterError, match="burn_alerts entry"):
        slo_rules([SPEC], [[1, "1 hour", "5m", "warning", "1m"]])


def test_filter_is_registered():
    assert FilterModule().filters()["slo_rules"] is slo_rules


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus) is not installed")
INJECTION = 'web"} or vector(1) or x{y="'


def _promtool_test(tmp_path, groups, input_series, exp_alerts):
    """Run `promtool test rules` on the generated groups (annotations dropped: only labels are compared)."""
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "slo.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    test = tmp_path / "slo.test.yml"
    test.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": input_series,
                        "alert_rule_test": [
                            {"eval_time": "20m", "alertname": "SLOErrorBudgetBurn", "exp_alerts": exp_alerts}
                        ],
                    }
                ],
            }
        )
    )
    return subprocess.run([PROMTOOL, "test", "rules", str(test)], capture_output=True, text=True, check=False)


def _spec_with(service):
    return {
        "name": "web",
        "objective": 99,
        "error_query": "sum(rate(errors_total[$window]))",
        "total_query": "sum(rate(requests_total[$window]))",
        "labels": {"service": service},
    }


@needs_promtool
def test_a_label_value_cannot_inject_promql_into_the_alert(tmp_path):
    groups = slo_rules([_spec_with(INJECTION)], [[1, "10m", "5m", "critical", "0m"]])
    # No errors at all: the alert must stay silent. Unescaped, `or vector(1)` made it fire forever.
    series = [
        {"series": "errors_total", "values": "0+0x30"},
        {"series": "requests_total", "values": "0+60x30"},
    ]
    result = _promtool_test(tmp_path, groups, series, [])
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("service", [INJECTION, 'we"b', "back\\slash", "two\nlines", "wéb ✓"])
def test_a_hostile_label_value_still_selects_its_own_series(tmp_path, service):
    groups = slo_rules([_spec_with(service)], [[1, "10m", "5m", "critical", "0m"]])
    series = [
        {"series": "errors_total", "values": "0+30x30"},
        {"series": "requests_total", "values": "0+60x30"},
    ]
    labels = {"service": service, "slo": "web", "severity": "critical", "long_window": "10m", "burn_rate": "1"}
    result = _promtool_test(tmp_path, groups, series, [{"exp_labels": labels}])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"tier": None}, "label tier value None must be a string"),
        ({"tier": True}, "label tier value True must be a string"),
        ({"tier": {"a": 1}}, r"label tier value \{'a': 1\} must be a string"),
        ({"tier": "{{ x }}"}, r"must not contain \{\{"),
        ({"__name__": "x"}, "label name '__name__' is not a valid Prometheus label"),
        ({1: "x"}, "label name 1 is not a valid Prometheus label"),
        (["service"], r"labels \['service'\] must be a dict"),
        ("service", "labels 'service' must be a dict"),
    ],
)
def test_bad_labels_are_refused(labels, message):
    with pytest.raises(AnsibleFilterError, match=message):
        slo_rules([dict(SPEC, labels=labels)])


def test_numeric_label_values_are_the_same_string_in_labels_and_selectors():
    (group,) = slo_rules([dict(SPEC, labels={"tier": 1})])
    assert group["rules"][0]["labels"]["tier"] == "1"
    assert 'tier="1"' in next(r for r in group["rules"] if "alert" in r)["expr"]


def test_a_name_used_twice_is_refused():
    with pytest.raises(AnsibleFilterError, match=r"slos\[1\] name 'web_latency' is used twice"):
        slo_rules([SPEC, SPEC])


@pytest.mark.parametrize(
    "burn_alerts",
    [
        [["14.4", "1h", "5m", "critical", "2m"]],
        [[0, "1h", "5m", "critical", "2m"]],
        [[-1, "1h", "5m", "critical", "2m"]],
        [[float("nan"), "1h", "5m", "critical", "2m"]],
        [[True, "1h", "5m", "critical", "2m"]],
        [[1, "0m", "5m", "critical", "2m"]],
        [[1, "99999999999w", "5m", "critical", "2m"]],
        [[1, "1h", "5m", None, "2m"]],
        [[1, "1h", "5m", "{{ x }}", "2m"]],
        [5],
        "14.4",
    ],
)
def test_bad_burn_alerts_are_refused(burn_alerts):
    with pytest.raises(AnsibleFilterError, match="burn_alerts"):
        slo_rules([SPEC], burn_alerts)
