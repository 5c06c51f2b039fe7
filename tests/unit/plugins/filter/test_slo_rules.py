from __future__ import annotations

import pytest
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
