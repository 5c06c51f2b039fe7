"""The mtail SLI program on real access-log lines, and the web SLOs' burn-rate alerts on its real series.

mtail's own test mode (`--one_shot`) reads log lines in the locksmith format (docs/web_hardening.md) and prints
the metrics it would export; those names and label sets, not hand-written ones, feed `promtool test rules`
with the SLO rules that playbooks/monitoring.yml generates (playbooks/vars/monitoring_slos.yml).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ansible_collections.locksmith.ops.plugins.filter.slo_rules import slo_rules

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "roles" / "monitoring_agents" / "files" / "locksmith_nginx.mtail"
SLO_SPECS = ROOT / "playbooks" / "vars" / "monitoring_slos.yml"
MTAIL = shutil.which("mtail")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(MTAIL is None or PROMTOOL is None, reason="needs mtail and promtool (Debian)")

# Port 0: a test run never collides with a running mtail.
MTAIL_ARGS = [MTAIL, "--emit_prog_label=false", "--logtostderr", "--address", "127.0.0.1", "--port", "0"]
SAMPLE = '{ip} - - [27/Nov/2026:04:00:43 +0000] "GET {path} HTTP/2.0" {status} 153 "-" "curl/8" rt={rt} ut="-" host=a'
SERIES = re.compile(r"^(?P<name>locksmith_[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$", re.M)


def _doc_example_line() -> str:
    """The example line of docs/web_hardening.md, which molecule/web_hardening checks against nginx's output."""
    text = (ROOT / "docs" / "web_hardening.md").read_text()
    return next(line for line in text.splitlines() if line.startswith("127.0.0.23 - - ["))


def _one_shot(tmp_path: Path, lines: list[str]) -> dict[str, float]:
    """Run the program in mtail's test mode; {'name{labels}': value} of the locksmith_* series."""
    progs = tmp_path / "progs"
    progs.mkdir(exist_ok=True)
    shutil.copy(PROGRAM, progs / PROGRAM.name)
    log = tmp_path / "access.log"
    log.write_text("".join(line + "\n" for line in lines))
    result = subprocess.run(
        [*MTAIL_ARGS, "--progs", str(progs), "--logs", str(log), "--one_shot", "--one_shot_format", "prometheus"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return {
        m["name"] + ("{%s}" % m["labels"] if m["labels"] else ""): float(m["value"])
        for m in SERIES.finditer(result.stdout)
    }


def _line(status: int, rt: str, n: int = 0) -> str:
    return SAMPLE.format(ip="10.0.0.%d" % (n % 250 + 1), path="/p%d" % n, status=status, rt=rt)


def test_program_compiles_and_a_broken_one_is_refused(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(PROGRAM, good / PROGRAM.name)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.mtail").write_text(PROGRAM.read_text().replace("} else {", "} else", 1))
    for directory, expected in ((good, 0), (bad, 1)):
        result = subprocess.run(
            [*MTAIL_ARGS, "--compile_only", "--progs", str(directory)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == expected, result.stderr


def test_access_log_lines_become_status_counts_and_a_latency_histogram(tmp_path):
    lines = [
        _doc_example_line(),  # 404, rt=0.000
        _line(200, "0.120"),
        _line(200, "0.500"),  # exactly 0.5 s is within the 0.5 s bucket
        _line(503, "0.501"),
        _line(502, "12.000"),  # beyond the last bucket: only +Inf
        '10.0.0.9 - - [27/Nov/2026:04:00:43 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8"',  # combined, no rt=
    ]
    metrics = _one_shot(tmp_path, lines)
    assert {k: v for k, v in metrics.items() if k.startswith("locksmith_http_requests_total")} == {
        'locksmith_http_requests_total{status="200",status_class="2xx"}': 2,
        'locksmith_http_requests_total{status="404",status_class="4xx"}': 1,
        'locksmith_http_requests_total{status="502",status_class="5xx"}': 1,
        'locksmith_http_requests_total{status="503",status_class="5xx"}': 1,
    }
    bucket = 'locksmith_http_request_duration_seconds_bucket{le="%s"}'
    assert metrics[bucket % "0.005"] == 1  # the 0.000 line (mtail would drop an exact 0 from every bucket)
    assert metrics[bucket % "0.25"] == 2
    assert metrics[bucket % "0.5"] == 3
    assert metrics[bucket % "1"] == 4
    assert metrics[bucket % "10"] == 4
    assert metrics[bucket % "+Inf"] == 5
    assert metrics["locksmith_http_request_duration_seconds_count"] == 5
    assert metrics["locksmith_http_request_duration_seconds_sum"] == pytest.approx(13.1215)
    assert metrics["locksmith_http_log_lines_unparsed_total"] == 1


# ---- the SLO rules on mtail's series ------------------------------------------------------------------
def _specs() -> list[dict]:
    return yaml.safe_load(SLO_SPECS.read_text())["monitoring_web_slos"]


def _mtail_series(tmp_path: Path) -> list[str]:
    """The series mtail exports for 2xx, 4xx, 502/503/504 traffic at every latency."""
    statuses = (200, 404, 500, 502, 503, 504)
    lines = [_line(s, rt, i) for i, (s, rt) in enumerate((s, rt) for s in statuses for rt in ("0.001", "0.700"))]
    return sorted(_one_shot(tmp_path, lines))


def test_every_series_the_slo_queries_read_is_exported_by_mtail(tmp_path):
    exported = _mtail_series(tmp_path)
    names = {s.split("{")[0] for s in exported}
    for spec in _specs():
        for query in (spec["error_query"], spec["total_query"]):
            for name in re.findall(r"(locksmith_[a-z_]+)\{", query):
                assert name in names, (spec["name"], name, sorted(names))
            for label, value in re.findall(r'(status_class|le)="([^"]+)"', query):
                assert any(f'{label}="{value}"' in s for s in exported), (spec["name"], label, value)


def _traffic(series: list[str], errors: dict[str, float], slow: float, per_minute: int = 1000) -> dict[str, float]:
    """Per-minute increase of each real mtail series: `errors` maps a status to its share of requests,
    `slow` is the share over 0.5 s (they land in the 1 s bucket); 2xx takes the rest."""
    rates = {}
    ok_share = 1 - sum(errors.values())
    for name in series:
        status = re.search(r'status="(\d+)"', name)
        le = re.search(r'le="([^"]+)"', name)
        if name.startswith("locksmith_http_requests_total"):
            share = errors.get(status.group(1), 0.0) if status.group(1) != "200" else ok_share
            rates[name] = per_minute * share
        elif le:
            bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
            rates[name] = per_minute if bound >= 1 else per_minute * (1 - slow)
        elif name.endswith("_count"):
            rates[name] = per_minute
        elif name.endswith("_sum"):
            rates[name] = per_minute * (0.05 + 0.7 * slow)
        else:
            rates[name] = 0
    return rates


def _input_series(rates: dict[str, float], minutes: int) -> list[dict]:
    def with_target(name):
        extra = 'job="mtail",instance="web1:3903"'
        return name[:-1] + "," + extra + "}" if name.endswith("}") else name + "{" + extra + "}"

    return [{"series": with_target(name), "values": f"0+{rate:g}x{minutes}"} for name, rate in rates.items()]


def _burn(slo: str, factor: str, window: str, severity: str) -> dict:
    return {
        "exp_labels": {"slo": slo, "service": "web", "severity": severity, "burn_rate": factor, "long_window": window}
    }


def _promtool(tmp_path: Path, tests: list[dict]) -> subprocess.CompletedProcess:
    groups = slo_rules(_specs())
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # promtool compares annotations verbatim; labels are the point here
    rules = tmp_path / "slo.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    test_file = tmp_path / "slo.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}))
    return subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, check=False)


def test_burn_rate_alerts_fire_on_mtail_series(tmp_path):
    series = _mtail_series(tmp_path)
    tests = [
        {  # 8 % of requests answered 503: 16x the 0.5 % availability budget pages within 5 minutes;
            # against the 1 % error budget it is 8x, under the 14.4x page.
            "interval": "1m",
            "input_series": _input_series(_traffic(series, {"503": 0.08}, slow=0.01), 60),
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "SLOErrorBudgetBurn", "exp_alerts": []},
                {
                    "eval_time": "5m",
                    "alertname": "SLOErrorBudgetBurn",
                    "exp_alerts": [_burn("web_availability", "14.4", "1h", "critical")],
                },
            ],
        },
        {  # 20 % of requests over 0.5 s: P95 is broken; 20 % > 14.4 x 5 % is false, 6 x 5 % = 30 % is false,
            # so only the slow 1x ticket fires once its 1 h `for:` has passed. 80 % slow pages fast.
            "interval": "1m",
            "input_series": _input_series(_traffic(series, {}, slow=0.8), 60),
            "alert_rule_test": [
                {
                    "eval_time": "5m",
                    "alertname": "SLOErrorBudgetBurn",
                    "exp_alerts": [_burn("web_latency_p95", "14.4", "1h", "critical")],
                },
            ],
        },
        {  # 2 % 500s (not an availability failure): 2x the error budget, the 1x ticket after its `for:`.
            "interval": "1m",
            "input_series": _input_series(_traffic(series, {"500": 0.02}, slow=0.01), 200),
            "alert_rule_test": [
                {"eval_time": "30m", "alertname": "SLOErrorBudgetBurn", "exp_alerts": []},
                {
                    "eval_time": "190m",
                    "alertname": "SLOErrorBudgetBurn",
                    "exp_alerts": [_burn("web_errors", "1.0", "3d", "warning")],
                },
            ],
        },
        {  # healthy: 0.2 % 503s, 2 % slow, 0.3 % 500s: nothing fires.
            "interval": "1m",
            "input_series": _input_series(_traffic(series, {"503": 0.002, "500": 0.003}, slow=0.02), 200),
            "alert_rule_test": [
                {"eval_time": t, "alertname": "SLOErrorBudgetBurn", "exp_alerts": []} for t in ("5m", "1h", "190m")
            ],
        },
    ]
    result = _promtool(tmp_path, tests)
    assert result.returncode == 0, result.stdout + result.stderr
