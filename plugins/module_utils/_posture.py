# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""FOR INTERNAL COLLECTION USE ONLY: the posture report's evaluation and its three renderings.

Pure functions over plain data, so the unit tests feed them promises and read the text back. The
module (plugins/modules/posture_report.py) only adds the file handling.
"""

from __future__ import annotations

import html
import json
import math

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError

COMPARISONS = {
    "le": (lambda value, target: value <= target, "<="),
    "lt": (lambda value, target: value < target, "<"),
    "ge": (lambda value, target: value >= target, ">="),
    "gt": (lambda value, target: value > target, ">"),
    "eq": (lambda value, target: value == target, "=="),
}
STATUS_MARK = {"met": "PASS", "missed": "FAIL", "unmeasured": "NOT MEASURED"}


class PostureError(LocksmithError):
    """A promise that cannot be evaluated as given."""


def _number(value, where):
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PostureError(
            "%s is %r, not a number; give the measured figure as a number (seconds, count, index)" % (where, value)
        ) from None
    if math.isnan(number) or math.isinf(number):
        raise PostureError("%s is %r; give a finite number" % (where, value))
    return number


def evaluate(promises):
    """Each promise with its numbers parsed and its status: met, missed or unmeasured (no value)."""
    evaluated = []
    seen = set()
    for index, promise in enumerate(promises):
        where = "promises[%d] (%s)" % (index, promise.get("name"))
        if promise["name"] in seen:
            raise PostureError("%s: the name is used twice; give each promise its own name" % where)
        seen.add(promise["name"])
        compare = promise.get("compare") or "le"
        value = _number(promise.get("value"), where + ".value")
        target = _number(promise.get("target"), where + ".target")
        baseline = _number(promise.get("baseline"), where + ".baseline")
        if value is None:
            status = "unmeasured"
        else:
            status = "met" if COMPARISONS[compare][0](value, target) else "missed"
        evaluated.append(
            {
                "name": promise["name"],
                "title": promise["title"],
                "value": value,
                "unit": promise.get("unit") or "",
                "target": target,
                "compare": compare,
                "baseline": baseline,
                "status": status,
                "evidence": promise.get("evidence") or "",
                "detail": promise.get("detail") or "",
            }
        )
    return evaluated


def summarize(evaluated):
    counts = {"total": len(evaluated), "met": 0, "missed": 0, "unmeasured": 0}
    for promise in evaluated:
        counts[promise["status"]] += 1
    return counts


def _figure(number, unit=""):
    if number is None:
        return "-"
    # Two decimals at most, without trailing zeros: 48 s, 50.5 s and 0.36 s side by side, not 50.50 s.
    text = ("%d" % number) if float(number).is_integer() else ("%.2f" % number).rstrip("0").rstrip(".")
    return "%s %s" % (text, unit) if unit else text


def _target_text(promise):
    return "%s %s" % (COMPARISONS[promise["compare"]][1], _figure(promise["target"], promise["unit"]))


def render_json(title, evaluated, generated_at):
    document = {
        "title": title,
        "generated_at": generated_at,
        "summary": summarize(evaluated),
        "passed": all(p["status"] == "met" for p in evaluated),
        "promises": evaluated,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def render_markdown(title, evaluated, generated_at):
    counts = summarize(evaluated)
    lines = [
        "# %s" % title,
        "",
        "Generated %s: %d of %d promises met, %d missed, %d not measured."
        % (generated_at, counts["met"], counts["total"], counts["missed"], counts["unmeasured"]),
        "",
        "| Promise | Measured | Before | Target | Result | Evidence |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in evaluated:
        cells = [
            p["title"] + (" (%s)" % p["detail"] if p["detail"] else ""),
            _figure(p["value"], p["unit"]),
            _figure(p["baseline"], p["unit"]) if p["baseline"] is not None else "",
            _target_text(p),
            STATUS_MARK[p["status"]],
            "`%s`" % p["evidence"] if p["evidence"] else "",
        ]
        # A line break or a bare | in a title or path would end the row or add a column.
        lines.append("| " + " | ".join(" ".join(cell.split()).replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _bar_chart(promise):
    """A small SVG: the measured bar (green met, red missed), the target as a line, the baseline as a tick."""
    numbers = [n for n in (promise["value"], promise["target"], promise["baseline"]) if n is not None]
    scale_max = max([abs(n) for n in numbers] + [1e-9]) * 1.15
    width, height = 260.0, 26.0

    def x(number):
        return round(width * max(number, 0) / scale_max, 1)

    colour = {"met": "#2e7d32", "missed": "#c62828", "unmeasured": "#9e9e9e"}[promise["status"]]
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="%s">'
        % (width, height, html.escape(promise["title"], quote=True)),
        '<rect x="0" y="7" width="%.1f" height="12" fill="#eeeeee"/>' % width,
    ]
    if promise["value"] is not None:
        parts.append('<rect x="0" y="7" width="%.1f" height="12" fill="%s"/>' % (x(promise["value"]), colour))
    if promise["baseline"] is not None:
        parts.append(
            '<rect x="%.1f" y="4" width="2" height="18" fill="#616161"><title>before</title></rect>'
            % x(promise["baseline"])
        )
    parts.append(
        '<rect x="%.1f" y="1" width="2" height="24" fill="#1565c0"><title>target</title></rect>' % x(promise["target"])
    )
    parts.append("</svg>")
    return "".join(parts)


def render_html(title, evaluated, generated_at):
    counts = summarize(evaluated)
    esc = html.escape
    rows = []
    for p in evaluated:
        rows.append(
            '<tr class="%s"><td>%s%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td><code>%s</code></td></tr>'
            % (
                p["status"],
                esc(p["title"]),
                ("<br><small>%s</small>" % esc(p["detail"])) if p["detail"] else "",
                esc(_figure(p["value"], p["unit"])),
                esc(_target_text(p)),
                _bar_chart(p),
                STATUS_MARK[p["status"]],
                esc(p["evidence"]),
            )
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>%s</title><style>'
        "body{font-family:sans-serif;margin:2em;color:#212121}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #e0e0e0;padding:.4em .8em;text-align:left;vertical-align:middle}"
        "tr.met td:nth-child(5){color:#2e7d32;font-weight:bold}tr.missed td:nth-child(5),"
        "tr.unmeasured td:nth-child(5){color:#c62828;font-weight:bold}small{color:#616161}"
        "</style></head><body>\n<h1>%s</h1>\n<p>Generated %s: %d of %d promises met, %d missed, %d not measured. "
        "Bars: measured (green met, red missed); blue line: target; grey tick: before.</p>\n"
        "<table><thead><tr><th>Promise</th><th>Measured</th><th>Target</th><th>Chart</th><th>Result</th>"
        "<th>Evidence</th></tr></thead><tbody>\n%s\n</tbody></table>\n</body></html>\n"
        % (
            esc(title),
            esc(title),
            esc(generated_at),
            counts["met"],
            counts["total"],
            counts["missed"],
            counts["unmeasured"],
            "\n".join(rows),
        )
    )
