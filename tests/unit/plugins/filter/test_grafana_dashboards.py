from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.locksmith.ops.plugins.filter.grafana_dashboards import FilterModule, grafana_dashboards

SLO = {
    "name": "web_availability",
    "objective": 99.5,
    "error_query": 'sum(rate(locksmith_http_requests_total{status_class="5xx"}[$window]))',
    "total_query": "sum(rate(locksmith_http_requests_total[$window]))",
    "labels": {"service": "web"},
}


def _spec(*panels, **board):
    return {"dashboards": [dict({"uid": "t", "title": "T", "panels": list(panels)}, **board)]}


def _panel(**kw):
    return dict({"title": "P", "expr": "up", "unit": "none"}, **kw)


def test_model_is_schema_39_with_stable_uid_and_sequential_ids():
    (board,) = grafana_dashboards(_spec(_panel(), {"row": "R"}, _panel(type="stat")))
    assert board["uid"] == "t" and board["schemaVersion"] == 39 and board["id"] is None
    assert board["tags"] == ["locksmith"] and board["editable"] is False
    assert [p["id"] for p in board["panels"]] == [1, 2, 3]
    assert [p["type"] for p in board["panels"]] == ["timeseries", "row", "stat"]
    # the same spec gives byte-identical JSON: Grafana sees no change on a re-run
    assert json.dumps(grafana_dashboards(_spec(_panel())), sort_keys=True) == json.dumps(
        grafana_dashboards(_spec(_panel())), sort_keys=True
    )


def test_layout_wraps_at_24_columns_and_rows_take_a_full_line():
    panels = [_panel(width=12), _panel(width=12), _panel(width=8), {"row": "Next"}, _panel(type="stat")]
    grid = [p["gridPos"] for p in grafana_dashboards(_spec(*panels))[0]["panels"]]
    assert grid == [
        {"h": 8, "w": 12, "x": 0, "y": 0},
        {"h": 8, "w": 12, "x": 12, "y": 0},
        {"h": 8, "w": 8, "x": 0, "y": 8},
        {"h": 1, "w": 24, "x": 0, "y": 16},
        {"h": 5, "w": 6, "x": 0, "y": 17},
    ]


def test_targets_thresholds_mappings_and_units():
    panel = _panel(
        type="stat",
        targets=[{"expr": "a\n  + b", "legend": "{{host}}"}, {"expr": "c"}],
        thresholds=[[None, "red"], [7, "orange"], [30, "green"]],
        mappings={0: "failed", 1: "ok"},
        unit="percentunit",
        decimals=1,
    )
    del panel["expr"]
    (out,) = grafana_dashboards(_spec(panel), datasource_uid="ds")[0]["panels"]
    assert [(t["refId"], t["expr"], t["legendFormat"], t["instant"]) for t in out["targets"]] == [
        ("A", "a + b", "{{host}}", True),
        ("B", "c", "__auto", True),
    ]
    defaults = out["fieldConfig"]["defaults"]
    assert defaults["thresholds"]["steps"] == [
        {"value": None, "color": "red"},
        {"value": 7, "color": "orange"},
        {"value": 30, "color": "green"},
    ]
    assert defaults["mappings"][0]["options"]["1"]["text"] == "ok"
    assert defaults["unit"] == "percentunit" and defaults["decimals"] == 1
    assert out["datasource"] == {"type": "prometheus", "uid": "ds"}
    # without a null base, green is the base and the threshold is drawn on the graph
    (graph,) = grafana_dashboards(_spec(_panel(thresholds=[[80, "red"]])))[0]["panels"]
    assert graph["fieldConfig"]["defaults"]["thresholds"]["steps"][0] == {"value": None, "color": "green"}
    assert graph["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {"mode": "line"}
    assert graph["targets"][0]["range"] is True


def test_variables_match_all_values():
    spec = _spec(_panel(), variables=[{"name": "host", "query": "label_values(up, host)"}])
    (var,) = grafana_dashboards(spec)[0]["templating"]["list"]
    assert var["name"] == "host" and var["allValue"] == ".+" and var["includeAll"] and var["multi"]


def test_every_slo_gets_budget_burn_and_sli_panels():
    second = dict(SLO, name="web_latency", objective=99, labels={})
    (board,) = grafana_dashboards(_spec(_panel(), slos=True, **{}), [SLO, second])
    titles = [p["title"] for p in board["panels"]]
    assert titles[1:] == [
        "SLO web_availability: objective 99.5 %",
        "web_availability: error budget left (30d)",
        "web_availability: burn rate",
        "web_availability: SLI",
        "SLO web_latency: objective 99 %",
        "web_latency: error budget left (30d)",
        "web_latency: burn rate",
        "web_latency: SLI",
    ]
    budget, burn, sli = board["panels"][2:5]
    assert budget["targets"][0]["expr"] == (
        '1 - ((sum(rate(locksmith_http_requests_total{status_class="5xx"}[30d]))) / '
        "(sum(rate(locksmith_http_requests_total[30d])))) / 0.005"
    )
    # one series per alert window, on the SLO's own recorded series, against the alert factors
    assert [t["expr"] for t in burn["targets"]] == [
        'slo:sli_error:ratio_rate%s{service="web",slo="web_availability"} / 0.005' % w for w in ("1h", "6h", "3d")
    ]
    assert [s["value"] for s in burn["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, 1.0, 14.4]
    assert sli["targets"][0]["expr"] == '1 - slo:sli_error:ratio_rate5m{service="web",slo="web_availability"}'
    assert sli["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 0.995
    assert "$window" not in json.dumps(board)


def test_slo_period_and_dashboards_without_slos():
    spec = dict(_spec(_panel(), slos=True), slo_period="7d")
    (board,) = grafana_dashboards(spec, [SLO])
    assert board["panels"][2]["title"] == "web_availability: error budget left (7d)"
    assert "[7d]" in board["panels"][2]["targets"][0]["expr"]
    assert len(grafana_dashboards(_spec(_panel()), [SLO])[0]["panels"]) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "expected a dict with a 'dashboards' list"),
        ({"dashboards": [], "slo_period": "month"}, "slo_period 'month' must be a duration"),
        ({"dashboards": ["x"]}, r"dashboards\[0\] must be a dict"),
        ({"dashboards": [{"uid": "a b", "title": "T", "panels": [{}]}]}, r"uid 'a b' must be 1 to 40"),
        ({"dashboards": [{"uid": "x" * 41, "title": "T", "panels": [{}]}]}, "must be 1 to 40"),
        ({"dashboards": [{"uid": "t", "title": "T", "panels": [], "color": 1}]}, r"unknown keys \['color'\]"),
        ({"dashboards": [{"uid": "t", "title": "", "panels": []}]}, "needs a title"),
        ({"dashboards": [{"uid": "t", "title": "T", "panels": []}]}, "has no panels"),
        (
            {"dashboards": [{"uid": "t", "title": "T", "panels": [_panel()]}, {"uid": "t", "title": "U"}]},
            "uid 't' is used twice",
        ),
        (_spec(_panel(unit="precent")), "unit 'precent' is not a Grafana unit"),
        (_spec(_panel(type="pie")), "type 'pie' is not one of"),
        (_spec(_panel(colour="red")), r"panels\[0\] has unknown keys \['colour'\]"),
        (_spec(_panel(title=" ")), r"panels\[0\] needs a title"),
        (_spec({"title": "P", "unit": "none"}), "needs expr"),
        (_spec(_panel(targets=[{"expr": "b"}])), "has both expr and targets"),
        (_spec({"title": "P", "targets": []}), "targets must be a non-empty list"),
        (_spec({"title": "P", "targets": [{"legend": "x"}]}), r"targets\[0\] needs a non-empty expr"),
        (_spec(_panel(thresholds=[80])), r"list of \[value, color\] pairs"),
        (_spec(_panel(thresholds=[[1, "red"], [None, "green"]])), "only the first step may have the value null"),
        (_spec(_panel(thresholds=[["high", "red"]])), "value 'high' must be a number"),
        (_spec(_panel(thresholds=[[9, "red"], [3, "orange"]])), "ascending order"),
        (_spec(_panel(mappings=["ok"])), "mappings must be a dict"),
        (_spec(_panel(width=30)), "width 30 must be 1 to 24"),
        (_spec(_panel(height=0)), "height 0 must be a positive"),
        (_spec({"row": "R", "title": "x"}), "a row takes only its title"),
        (_spec("up"), r"panels\[0\] must be a dict"),
        (_spec(_panel(), variables=[{"name": "1x", "query": "q"}]), r"variables\[0\] must have a name"),
    ],
)
def test_bad_specs_name_the_entry_and_the_fix(spec, message):
    with pytest.raises(AnsibleFilterError, match=message):
        grafana_dashboards(spec)


def test_bad_slo_is_reported_by_slo_rules():
    with pytest.raises(AnsibleFilterError, match=r"slo_rules: slos\[0\] objective 100"):
        grafana_dashboards(_spec(_panel(), slos=True), [dict(SLO, objective=100)])


def test_filter_is_registered():
    assert FilterModule().filters()["grafana_dashboards"] is grafana_dashboards


def test_slo_label_values_are_escaped_in_panel_queries():
    hostile = dict(SLO, labels={"service": 'web"} or vector(1) or x{y="'})
    (board,) = grafana_dashboards(_spec(_panel(), slos=True), [hostile])
    burn, sli = board["panels"][3:5]
    selector = 'service="web\\"} or vector(1) or x{y=\\"",slo="web_availability"'
    assert burn["targets"][0]["expr"] == "slo:sli_error:ratio_rate1h{%s} / 0.005" % selector
    assert sli["targets"][0]["expr"] == "1 - slo:sli_error:ratio_rate5m{%s}" % selector


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_spec(**{"panels": 5}), r"dashboards\[0\] panels 5 must be a list"),
        (_spec(_panel(), tags=5), "tags 5 must be a list"),
        (_spec(_panel(), tags="web"), "tags 'web' must be a list"),
        (_spec(_panel(), variables={"name": "host"}), "variables .* must be a list"),
        (_spec(_panel(thresholds=[[float("nan"), "red"]])), "value nan must be a number"),
        (_spec(_panel(thresholds=[[True, "red"]])), "value True must be a number"),
        (_spec(_panel(max=float("inf"))), "max inf must be a number"),
        (_spec(_panel(decimals="two")), "decimals 'two' must be a number"),
        (dict(_spec(_panel()), slo_period="0d"), "slo_period '0d' must be a duration"),
    ],
)
def test_wrong_types_are_refused_with_the_entry(spec, message):
    with pytest.raises(AnsibleFilterError, match=message):
        grafana_dashboards(spec)
