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
import re

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
    except OverflowError:
        number = math.inf  # an integer past the float range: named below like inf
    except (TypeError, ValueError):
        raise PostureError(
            "%s is %r, not a number; give the measured figure as a number (seconds, count, index)" % (where, value)
        ) from None
    if math.isnan(number) or math.isinf(number):
        raise PostureError("%s is %r; give a finite number" % (where, value))
    return number


def evaluate(promises):
    """Each promise with its numbers parsed and its status: met, missed or unmeasured (no value)."""
    if not promises:
        # "0 of 0 met" would pass: an empty list (a variable gone missing) must not turn the job green.
        raise PostureError("promises is empty; a report with no promise proves nothing, give at least one")
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


def _figure(number, unit="", digits=2):
    if number is None:
        return "-"
    # Two decimals at most, without trailing zeros: 48 s, 50.5 s and 0.36 s side by side, not 50.50 s.
    text = ("%d" % number) if float(number).is_integer() else ("%.*f" % (digits, number)).rstrip("0").rstrip(".")
    return "%s %s" % (text, unit) if unit else text


def _digits(promise):
    """Decimals enough to tell the measured figure from the target: 60.004 s missing "<= 60 s" must not read 60 s."""
    value, target, digits = promise["value"], promise["target"], 2
    if value is None or value == target:
        return digits
    while digits < 17 and _figure(value, "", digits) == _figure(target, "", digits):
        digits += 1
    return digits


def _target_text(promise):
    return "%s %s" % (COMPARISONS[promise["compare"]][1], _figure(promise["target"], promise["unit"], _digits(promise)))


def render_json(title, evaluated, generated_at):
    document = {
        "title": title,
        "generated_at": generated_at,
        "summary": summarize(evaluated),
        "passed": all(p["status"] == "met" for p in evaluated),
        "promises": evaluated,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _md_text(text):
    """Text for Markdown: renderers pass raw HTML and links through, so a title or host name stays text."""
    # Only a < or & that could open a tag or an entity is escaped, so "<= 60 s" reads as written.
    text = re.sub(r"&(?=[A-Za-z#])", "&amp;", text)
    text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]").replace("`", "\\`")


def _md_code(text):
    """A code span shows its text as is; its fence must be longer than any run of backticks inside it."""
    fence = "`" * (max([len(run) for run in re.findall("`+", text)] + [0]) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return fence + pad + text + pad + fence


def render_markdown(title, evaluated, generated_at):
    counts = summarize(evaluated)
    lines = [
        "# %s" % _md_text(" ".join(title.split())),
        "",
        "Generated %s: %d of %d promises met, %d missed, %d not measured."
        % (generated_at, counts["met"], counts["total"], counts["missed"], counts["unmeasured"]),
        "",
        "| Promise | Measured | Before | Target | Result | Evidence |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in evaluated:
        cells = [
            _md_text(p["title"] + (" (%s)" % p["detail"] if p["detail"] else "")),
            _md_text(_figure(p["value"], p["unit"], _digits(p))),
            _md_text(_figure(p["baseline"], p["unit"])) if p["baseline"] is not None else "",
            _md_text(_target_text(p)),
            STATUS_MARK[p["status"]],
            _md_code(" ".join(p["evidence"].split())) if p["evidence"] else "",
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
                esc(_figure(p["value"], p["unit"], _digits(p))),
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
