"""The generated Grafana dashboards hold to the metrics contract and to Prometheus' parser.

The dashboards come from roles/monitoring_server/files/grafana/dashboards.yml through the
locksmith.ops.grafana_dashboards filter, with every SLO the project ships (role defaults, inventories,
molecule scenarios) and the seeds' web SLOs. For them: the JSON is valid and laid out on Grafana's
grid, every metric a query names is in docs/metrics.md, in docs/exporter_metrics.yml or recorded by
the collection's rules, every expression parses (`promtool check rules` on a file holding each one as
a recording rule), and every SLO gets its error-budget panel.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ansible_collections.locksmith.ops.plugins.filter.grafana_dashboards import grafana_dashboards
from ansible_collections.locksmith.ops.plugins.filter.slo_rules import slo_rules

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "monitoring_server"
SPEC = ROLE / "files" / "grafana" / "dashboards.yml"
PROMTOOL = shutil.which("promtool")

# The seeds' web SLOs (99.5 % availability, 95 % of requests under 500 ms) on the mtail SLIs, so the
# SLO panels are checked even while no shipped inventory sets monitoring_server_slos.
SEED_SLOS = [
    {
        "name": "web_availability",
        "objective": 99.5,
        "error_query": 'sum(rate(locksmith_http_requests_total{status_class="5xx"}[$window]))',
        "total_query": "sum(rate(locksmith_http_requests_total[$window]))",
        "labels": {"service": "web"},
    },
    {
        "name": "web_latency",
        "objective": 95,
        "error_query": (
            "sum(rate(locksmith_http_request_duration_seconds_count[$window]))"
            ' - sum(rate(locksmith_http_request_duration_seconds_bucket{le="0.5"}[$window]))'
        ),
        "total_query": "sum(rate(locksmith_http_request_duration_seconds_count[$window]))",
        "labels": {"service": "web"},
    },
]

# ---- metric names in PromQL -----------------------------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    "and or unless by without on ignoring group_left group_right offset bool inf nan "
    "sum avg min max count group stddev stdvar topk bottomk quantile count_values".split()
)
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions, keywords or labels."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub(" ", text)
    return {m[1] for m in _IDENT.finditer(text) if not m[2] and m[1] not in _KEYWORDS}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('rate(foo_total{a="b(c)",d=~"x|y"}[5m])', {"foo_total"}),
        ("sum by (host) (rate(a[5m])) / on (host) group_left b", {"a", "b"}),
        ("time() - x_timestamp_seconds offset 5m > 1e3", {"x_timestamp_seconds"}),
        ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))", {"h_bucket"}),
        ('1 - slo:sli_error:ratio_rate5m{slo="a"}', {"slo:sli_error:ratio_rate5m"}),
        ("count without (cpu) (node_cpu_seconds_total) and up", {"node_cpu_seconds_total", "up"}),
    ],
)
def test_metric_names_reads_selectors_only(expr, names):
    assert metric_names(expr) == names


# ---- what the dashboards may use ----------------------------------------------------------------
def contract_names() -> set[str]:
    """Names in docs/metrics.md's table; a histogram row also allows its _bucket, _sum and _count."""
    names = set()
    for line in (REPO / "docs" / "metrics.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"[a-z_:][a-z0-9_:]*", cells[0]) and cells[0] != "metric":
            names.add(cells[0])
            if "histogram" in line:
                names.update(cells[0] + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def exporter_names() -> set[str]:
    data = yaml.safe_load((REPO / "docs" / "exporter_metrics.yml").read_text(encoding="utf-8"))
    return {
        m["name"] if isinstance(m, dict) else m for exporter in data["exporters"].values() for m in exporter["metrics"]
    }


def recorded_names(slos: list[dict]) -> set[str]:
    groups = [g for f in sorted((ROLE / "files" / "rules").glob("*.rules.yml")) for g in _load(f)["groups"]]
    groups += slo_rules(slos)
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def _load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def shipped_slos() -> list[dict]:
    """Every SLO list the project ships (role defaults, inventories, playbooks/vars, molecule), plus the seeds'."""
    found = list(_load(ROLE / "defaults" / "main.yml").get("monitoring_server_slos") or [])
    for path in sorted((REPO / "inventories").glob("*/group_vars/**/*.yml")):
        found += (_load(path) or {}).get("monitoring_server_slos") or []
    for path in sorted((REPO / "playbooks" / "vars").glob("*.yml")):
        for key, value in (_load(path) or {}).items():
            if key.endswith("_slos"):
                found += value
    for path in sorted((REPO / "molecule").glob("*/molecule.yml")):
        group_vars = ((_load(path).get("provisioner") or {}).get("inventory") or {}).get("group_vars") or {}
        for values in group_vars.values():
            for slo in (values or {}).get("monitoring_server_slos") or []:
                # molecule interpolates the environment, so the placeholder is escaped there
                found.append({k: v.replace("$$", "$") if isinstance(v, str) else v for k, v in slo.items()})
    by_name = {slo["name"]: slo for slo in SEED_SLOS + found}
    return list(by_name.values())


@pytest.fixture(scope="module")
def slos():
    return shipped_slos()


@pytest.fixture(scope="module")
def dashboards(slos):
    return grafana_dashboards(_load(SPEC), slos)


def expressions(dashboards) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every variable's label_values selector."""
    out = []
    for board in dashboards:
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append(("%s / %s / %s" % (board["uid"], panel["title"], target["refId"]), target["expr"]))
        for var in board["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["query"]["query"])
            assert match, "%s: variable %s query is not label_values(selector, label)" % (board["uid"], var["name"])
            out.append(("%s / variable %s" % (board["uid"], var["name"]), match[1]))
    return out


def _resolve(board_vars: set[str], where: str, expr: str) -> str:
    """Grafana variables replaced as their 'All' value; an unknown variable is an error."""
    unknown = set(_VARIABLE.findall(expr)) - board_vars
    assert not unknown, "%s uses undefined variable(s) %s: %s" % (where, sorted(unknown), expr)
    return _VARIABLE.sub(".+", expr)


# ---- the checks -------------------------------------------------------------------------------
def test_dashboards_are_valid_json_on_grafanas_grid(dashboards):
    assert [b["uid"] for b in dashboards] == [
        "locksmith-hosts",
        "locksmith-postgres",
        "locksmith-web",
        "locksmith-posture",
    ]
    for board in dashboards:
        again = json.loads(json.dumps(board, allow_nan=False))
        assert again == board and again["schemaVersion"] == 39
        cells = set()
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (board["uid"], panel["title"])
            mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not mine & cells, "%s: panel %r overlaps another" % (board["uid"], panel["title"])
            cells |= mine


def test_every_metric_is_in_the_contract_or_documented_by_its_exporter(dashboards, slos):
    allowed = contract_names() | exporter_names() | recorded_names(slos)
    used, unknown = set(), []
    for where, expr in expressions(dashboards):
        names = metric_names(expr)
        assert names, "%s selects no metric: %s" % (where, expr)
        used |= names
        unknown += ["%s: %s" % (where, n) for n in sorted(names - allowed)]
    assert not unknown, "metrics in neither docs/metrics.md nor docs/exporter_metrics.yml:\n" + "\n".join(unknown)
    # The exporter list names what we rely on: each entry is used by a dashboard or an alert rule.
    rule_exprs = [
        r["expr"]
        for f in (ROLE / "files" / "rules").glob("*.rules.yml")
        for g in _load(f)["groups"]
        for r in g["rules"]
    ]
    rule_names = set().union(*(metric_names(e) for e in rule_exprs))
    assert exporter_names() - used - rule_names == set()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus) is not installed")
def test_every_expression_parses_with_promtool(dashboards, tmp_path):
    rules, places = [], []
    for board in dashboards:
        board_vars = {v["name"] for v in board["templating"]["list"]}
        for where, expr in expressions([board]):
            rules.append({"record": "grafana:check_%d" % len(rules), "expr": _resolve(board_vars, where, expr)})
            places.append("grafana:check_%d is %s" % (len(places), where))
    assert len(rules) > 50
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana-dashboards", "rules": rules}]}), encoding="utf-8")
    check = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr + "\n".join(places)
    assert "SUCCESS: %d rules found" % len(rules) in check.stdout


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus) is not installed")
def test_promtool_check_catches_a_bad_expression(tmp_path):
    """The check above can fail: a broken query is refused."""
    path = tmp_path / "bad.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "r", "expr": "sum(rate(x[5m])"}]}]}))
    check = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode != 0


def test_every_slo_gets_an_error_budget_panel(dashboards, slos):
    assert {"web_availability", "web_latency", "node_scrape_availability"} <= {s["name"] for s in slos}
    assert len(slos) >= 4  # the shipped lists were found, not only the seeds'
    (web,) = [b for b in dashboards if b["uid"] == "locksmith-web"]
    titles = {p["title"]: p for p in web["panels"]}
    for slo in slos:
        panel = titles.get("%s: error budget left (30d)" % slo["name"])
        assert panel, "SLO %s has no error-budget panel" % slo["name"]
        expr = panel["targets"][0]["expr"]
        for query in (slo["error_query"], slo["total_query"]):
            assert " ".join(query.replace("$window", "30d").split()) in expr
        assert "%s: burn rate" % slo["name"] in titles


def test_posture_dashboard_covers_every_promise(dashboards):
    (posture,) = [b for b in dashboards if b["uid"] == "locksmith-posture"]
    used = set().union(*(metric_names(t["expr"]) for p in posture["panels"] for t in p.get("targets", [])))
    assert {
        "locksmith_backup_last_success_timestamp_seconds",
        "locksmith_backup_rpo_target_seconds",
        "locksmith_drill_rto_seconds",
        "locksmith_drill_rto_target_seconds",
        "locksmith_tls_cert_not_after_timestamp_seconds",
        "locksmith_secret_last_rotation_timestamp_seconds",
        "locksmith_ids_bans_total",
        "locksmith_lynis_hardening_index",
    } <= used


def test_docs_describe_every_panel():
    docs = (REPO / "docs" / "dashboards.md").read_text(encoding="utf-8")
    missing = [
        "%s / %s" % (board["uid"], panel["title"])
        for board in _load(SPEC)["dashboards"]
        for panel in board["panels"]
        if "title" in panel and "**%s**" % panel["title"] not in docs
    ]
    assert not missing, "docs/dashboards.md does not describe: %s" % missing
