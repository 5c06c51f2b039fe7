# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Grafana dashboard JSON models generated from one small YAML spec.

Dashboards are data (title, PromQL, unit, thresholds per panel), never hand-edited JSON: the layout,
ids, datasource references and the per-SLO error-budget panels are computed here, so a new SLO in
``monitoring_server_slos`` gets its panels without anyone touching a dashboard.
"""

from __future__ import annotations

import math
import re

from ansible.errors import AnsibleFilterError

from ansible_collections.locksmith.ops.plugins.filter.slo_rules import PLACEHOLDER, selector, slo_rules

SCHEMA_VERSION = 39
DATASOURCE_UID = "locksmith-prometheus"
_UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}\Z")
_VAR_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
_WINDOW = re.compile(r"^[0-9]+[smhdw]\Z")
# Grafana unit ids the spec may use; a typo would silently show raw numbers.
UNITS = frozenset(
    "none short percent percentunit bytes decbytes Bps binBps s ms m h d dtdurations reqps ops cps "
    "dateTimeAsIso dateTimeFromNow bool_yes_no".split()
)
PANEL_TYPES = {"timeseries": (12, 8), "stat": (6, 5), "gauge": (6, 5)}  # default width, height
PANEL_KEYS = frozenset(
    "title description type expr legend targets unit thresholds mappings width height min max decimals".split()
)
DASHBOARD_KEYS = frozenset("uid title description tags variables panels slos refresh time_from".split())
GRID_WIDTH = 24


def _fail(where, message):
    raise AnsibleFilterError("grafana_dashboards: %s %s" % (where, message))


def _number(value):
    """True for a finite int or float: JSON has no NaN or Infinity, and a bool is no threshold."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _list(where, key, value):
    if not isinstance(value, list):
        _fail(where, "%s %r must be a list" % (key, value))
    return value


def _datasource(uid):
    return {"type": "prometheus", "uid": uid}


def _thresholds(where, steps):
    """Grafana threshold steps from [[value, color], ...]; a first value of null sets the base colour."""
    if steps is None:
        steps = []
    if not isinstance(steps, list) or not all(isinstance(s, (list, tuple)) and len(s) == 2 for s in steps):
        _fail(where, "thresholds must be a list of [value, color] pairs, e.g. [[null, red], [7, orange], [30, green]]")
    out = []
    for index, (value, color) in enumerate(steps):
        if value is None and index != 0:
            _fail(where, "thresholds: only the first step may have the value null (the base colour)")
        if value is not None and not _number(value):
            _fail(where, "thresholds: value %r must be a number" % (value,))
        out.append({"value": value, "color": str(color)})
    if not out or out[0]["value"] is not None:
        out.insert(0, {"value": None, "color": "green"})
    values = [s["value"] for s in out[1:]]
    if values != sorted(values):
        _fail(where, "thresholds must be in ascending order of value, got %s" % values)
    return {"mode": "absolute", "steps": out}


def _mappings(where, mappings):
    if not mappings:
        return []
    if not isinstance(mappings, dict):
        _fail(where, "mappings must be a dict of value: text, e.g. {0: failed, 1: ok}")
    options = {str(k): {"text": str(v), "index": i} for i, (k, v) in enumerate(mappings.items())}
    return [{"type": "value", "options": options}]


def _targets(where, panel, datasource, instant):
    if "targets" in panel:
        if "expr" in panel:
            _fail(where, "has both expr and targets; use one")
        targets = panel["targets"]
        if not isinstance(targets, list) or not targets:
            _fail(where, "targets must be a non-empty list of {expr, legend}")
    elif "expr" in panel:
        targets = [{"expr": panel["expr"], "legend": panel.get("legend", "")}]
    else:
        _fail(where, "needs expr (PromQL) or targets")
    out = []
    for index, target in enumerate(targets):
        if not isinstance(target, dict) or not str(target.get("expr", "")).strip():
            _fail(where, "targets[%d] needs a non-empty expr" % index)
        out.append(
            {
                "refId": chr(ord("A") + index),
                "datasource": datasource,
                "expr": " ".join(str(target["expr"]).split()),
                "legendFormat": str(target.get("legend", "")) or "__auto",
                # A stat or gauge shows one value: an instant query, not a range of 30-day rates.
                "range": not instant,
                "instant": instant,
            }
        )
    return out


def _panel(where, spec, datasource):
    """One Grafana panel (without id and gridPos) from a panel spec."""
    if not isinstance(spec, dict):
        _fail(where, "must be a dict with title, expr and unit, or {row: title}")
    unknown = sorted(set(spec) - PANEL_KEYS)
    if unknown:
        _fail(where, "has unknown keys %s; allowed: %s" % (unknown, ", ".join(sorted(PANEL_KEYS))))
    if not str(spec.get("title", "")).strip():
        _fail(where, "needs a title")
    kind = spec.get("type", "timeseries")
    if kind not in PANEL_TYPES:
        _fail(where, "type %r is not one of %s" % (kind, ", ".join(sorted(PANEL_TYPES))))
    unit = spec.get("unit", "none")
    if unit not in UNITS:
        _fail(where, "unit %r is not a Grafana unit this generator knows: %s" % (unit, ", ".join(sorted(UNITS))))
    defaults = {
        "unit": unit,
        "thresholds": _thresholds(where, spec.get("thresholds")),
        "mappings": _mappings(where, spec.get("mappings")),
        "color": {"mode": "thresholds" if kind != "timeseries" else "palette-classic"},
    }
    for key in ("min", "max", "decimals"):
        if key in spec:
            if not _number(spec[key]):
                _fail(where, "%s %r must be a number" % (key, spec[key]))
            defaults[key] = spec[key]
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            # Thresholds are the targets (RPO, 80 % CPU...): draw them as lines on the graph.
            "thresholdsStyle": {"mode": "line" if spec.get("thresholds") else "off"},
        }
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto",
            "textMode": "auto",
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
        }
        if kind == "gauge":
            options = {
                "reduceOptions": options["reduceOptions"],
                "showThresholdLabels": False,
                "showThresholdMarkers": True,
            }
    return {
        "type": kind,
        "title": str(spec["title"]),
        "description": str(spec.get("description", "")),
        "datasource": datasource,
        "targets": _targets(where, spec, datasource, instant=kind != "timeseries"),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    }


def _size(where, spec):
    width, height = PANEL_TYPES[spec.get("type", "timeseries")]
    width, height = spec.get("width", width), spec.get("height", height)
    if not isinstance(width, int) or not 1 <= width <= GRID_WIDTH:
        _fail(where, "width %r must be 1 to %d grid columns" % (width, GRID_WIDTH))
    if not isinstance(height, int) or height < 1:
        _fail(where, "height %r must be a positive number of grid rows" % (height,))
    return width, height


def _layout(where, items, datasource):
    """Panels with ids and grid positions, filled left to right and wrapped at 24 columns."""
    panels, x, y, line_height = [], 0, 0, 0
    for index, item in enumerate(items):
        here = "%s.panels[%d]" % (where, index)
        if isinstance(item, dict) and "row" in item:
            if set(item) != {"row"}:
                _fail(here, "a row takes only its title: {row: Backups}")
            y += line_height
            row = {"type": "row", "title": str(item["row"]), "collapsed": False, "panels": []}
            row["gridPos"] = {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}
            panels.append(row)
            x, y, line_height = 0, y + 1, 0
            continue
        panel = _panel(here, item, datasource)
        width, height = _size(here, item)
        if x + width > GRID_WIDTH:
            x, y, line_height = 0, y + line_height, 0
        panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
        x, line_height = x + width, max(line_height, height)
        panels.append(panel)
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return panels


def _variable(where, spec, datasource):
    if not isinstance(spec, dict) or not _VAR_NAME.match(str(spec.get("name", ""))) or not spec.get("query"):
        _fail(where, "must have a name (a Grafana variable name) and a query such as label_values(up, host)")
    return {
        "name": spec["name"],
        "label": spec.get("label", spec["name"]),
        "type": "query",
        "datasource": datasource,
        "query": {"query": spec["query"], "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": spec["query"],
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        # Panels select with =~"$name": "All" must match every value, not only the ones listed.
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
        "options": [],
    }


def _slo_items(slos, period):
    """A row and three panels per SLO: error budget left over the period, burn rates, and the SLI."""
    items = []
    for group, slo in zip(slo_rules(slos), slos, strict=True):
        rules = group["rules"]
        objective_rule = next(r for r in rules if r.get("record") == "slo:objective:ratio")
        matchers = selector(objective_rule["labels"])
        objective = float(slo["objective"]) / 100.0
        budget = round(1 - objective, 10)
        alerts = [r for r in rules if "alert" in r]
        factors = sorted({float(a["labels"]["burn_rate"]) for a in alerts})
        long_windows = [a["labels"]["long_window"] for a in alerts]
        windows = [r["record"].rsplit("ratio_rate", 1)[1] for r in rules if "ratio_rate" in r.get("record", "")]
        shortest = min(windows, key=_seconds)
        error = str(slo["error_query"]).replace(PLACEHOLDER, period)
        total = str(slo["total_query"]).replace(PLACEHOLDER, period)
        name = slo["name"]
        items += [
            {"row": "SLO %s: objective %s %%" % (name, slo["objective"])},
            {
                "title": "%s: error budget left (%s)" % (name, period),
                "type": "stat",
                "description": "Share of the %s error budget (%s %% of requests) not yet spent; below 0 the SLO "
                "is missed for the period." % (period, round(budget * 100, 6)),
                "expr": "1 - ((%s) / (%s)) / %s" % (error, total, budget),
                "unit": "percentunit",
                "thresholds": [[None, "red"], [0, "orange"], [0.25, "green"]],
                "decimals": 1,
                "width": 6,
                "height": 8,
            },
            {
                "title": "%s: burn rate" % name,
                "description": "Error rate divided by the budget rate over each alert window; the lines are the "
                "burn-rate alert thresholds (%s)." % ", ".join("%gx" % f for f in factors),
                "targets": [
                    {"expr": "slo:sli_error:ratio_rate%s{%s} / %s" % (w, matchers, budget), "legend": w}
                    for w in long_windows
                ],
                "unit": "short",
                "thresholds": [[None, "green"], [factors[0], "orange"], [factors[-1], "red"]],
                "width": 9,
            },
            {
                "title": "%s: SLI" % name,
                "description": "Share of good events over the shortest recorded window; the line is the objective.",
                "expr": "1 - slo:sli_error:ratio_rate%s{%s}" % (shortest, matchers),
                "legend": "SLI (%s)" % shortest,
                "unit": "percentunit",
                "thresholds": [[None, "red"], [objective, "green"]],
                "width": 9,
            },
        ]
    return items


def _seconds(window):
    return int(window[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[window[-1]]


def grafana_dashboards(spec, slos=None, datasource_uid=DATASOURCE_UID):
    """Grafana dashboard models (a list of dicts, each one JSON file) from a dashboard spec.

    spec: {dashboards: [{uid, title, panels, ...}], slo_period: 30d}. A dashboard with slos: true
    gets a row of error-budget, burn-rate and SLI panels for every SLO in slos (the slo_rules spec).
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("dashboards"), list):
        raise AnsibleFilterError("grafana_dashboards: expected a dict with a 'dashboards' list, got %r" % (spec,))
    slos = slos or []
    period = str(spec.get("slo_period", "30d"))
    if not _WINDOW.match(period) or not int(period[:-1]):
        raise AnsibleFilterError("grafana_dashboards: slo_period %r must be a duration such as 30d" % period)
    datasource = _datasource(datasource_uid)
    seen, out = set(), []
    for index, board in enumerate(spec["dashboards"]):
        where = "dashboards[%d]" % index
        if not isinstance(board, dict):
            _fail(where, "must be a dict with uid, title and panels")
        unknown = sorted(set(board) - DASHBOARD_KEYS)
        if unknown:
            _fail(where, "has unknown keys %s; allowed: %s" % (unknown, ", ".join(sorted(DASHBOARD_KEYS))))
        uid = str(board.get("uid", ""))
        if not _UID.match(uid):
            _fail(where, "uid %r must be 1 to 40 letters, digits, - or _ (it is the dashboard's stable URL)" % uid)
        if uid in seen:
            _fail(where, "uid %r is used twice; every dashboard needs its own" % uid)
        seen.add(uid)
        if not str(board.get("title", "")).strip():
            _fail(where, "needs a title")
        items = list(_list(where, "panels", board.get("panels") or []))
        if board.get("slos"):
            items += _slo_items(slos, period)
        if not items:
            _fail(where, "has no panels")
        variables = [
            _variable("%s.variables[%d]" % (where, i), v, datasource)
            for i, v in enumerate(_list(where, "variables", board.get("variables") or []))
        ]
        out.append(
            {
                "uid": uid,
                "title": str(board["title"]),
                "description": str(board.get("description", "")),
                "tags": ["locksmith"] + [str(t) for t in _list(where, "tags", board.get("tags") or [])],
                "schemaVersion": SCHEMA_VERSION,
                "version": 1,
                "id": None,
                "editable": False,
                "graphTooltip": 1,
                "timezone": "browser",
                "refresh": board.get("refresh", "1m"),
                "time": {"from": board.get("time_from", "now-6h"), "to": "now"},
                "templating": {"list": variables},
                "annotations": {"list": []},
                "links": [],
                "panels": _layout(where, items, datasource),
            }
        )
    return out


class FilterModule:
    def filters(self):
        return {"grafana_dashboards": grafana_dashboards}
