# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus recording and burn-rate alerting rules generated from an SLO spec.

Follows the multiwindow, multi-burn-rate method of the Google SRE workbook (chapter "Alerting on
SLOs"): an alert needs both a long and a short window over the threshold, so it fires fast on a real
burn and resets fast once the burn stops.
"""

from __future__ import annotations

import json
import math
import re

from ansible.errors import AnsibleFilterError

# (burn factor, long window, short window, severity, for)
DEFAULT_BURN_ALERTS = (
    (14.4, "1h", "5m", "critical", "2m"),
    (6.0, "6h", "30m", "critical", "15m"),
    (1.0, "3d", "6h", "warning", "1h"),
)
_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")
_WINDOW = re.compile(r"^[0-9]+[smhdw]\Z")
# Not Jinja's {{ }}: the spec lives in inventory variables, which Ansible templates.
PLACEHOLDER = "$window"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Prometheus durations are int64 nanoseconds: about 292 years.
_MAX_WINDOW_SECONDS = 100 * 365 * 86400
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _fail(index, message):
    raise AnsibleFilterError("slo_rules: slos[%d] %s" % (index, message))


def selector(labels):
    """PromQL label matchers for ``labels``; each value is a quoted string literal, so a value cannot close it."""
    # json.dumps escapes \\, " and control characters as PromQL (Go) string escapes do.
    return ",".join("%s=%s" % (key, json.dumps(labels[key], ensure_ascii=False)) for key in sorted(labels))


def _window_ok(window, zero=False):
    text = str(window)
    if not _WINDOW.match(text):
        return False
    seconds = int(text[:-1]) * _UNIT_SECONDS[text[-1]]
    return (zero or seconds > 0) and seconds <= _MAX_WINDOW_SECONDS


def _windows(burn_alerts):
    seen = []
    for entry in burn_alerts:
        for window in (entry[1], entry[2]):  # long and short window
            if window not in seen:
                seen.append(window)
    return seen


def _validate(index, slo):
    if not isinstance(slo, dict):
        _fail(index, "must be a dict with name, objective, error_query and total_query")
    for key in ("name", "objective", "error_query", "total_query"):
        if key not in slo:
            _fail(index, "is missing '%s'" % key)
    if not _NAME.match(str(slo["name"])):
        _fail(index, "name %r must be lower-case letters, digits and _, starting with a letter" % slo["name"])
    try:
        objective = float(slo["objective"])
    except (TypeError, ValueError):
        _fail(index, "objective %r must be a percentage such as 99.5" % slo["objective"])
    if not 0 < objective < 100:
        _fail(index, "objective %r must be between 0 and 100 (exclusive), e.g. 99.5" % slo["objective"])
    for key in ("error_query", "total_query"):
        if PLACEHOLDER not in str(slo[key]):
            _fail(
                index,
                "%s must contain the placeholder %s where the rate window goes, e.g. [%s]"
                % (key, PLACEHOLDER, PLACEHOLDER),
            )
    labels = slo.get("labels") or {}
    if not isinstance(labels, dict):
        _fail(index, "labels %r must be a dict of label name: value, e.g. {service: web}" % (labels,))
    for label, value in labels.items():
        if not isinstance(label, str) or not _LABEL_NAME.match(label) or label.startswith("__"):
            _fail(index, "label name %r is not a valid Prometheus label (letters, digits and _, no leading __)" % label)
        # None or a bool would be written one way in the rule's labels and another way in the alert's selector.
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            _fail(index, "label %s value %r must be a string, e.g. %s: web" % (label, value, label))
        if "{{" in str(value):
            _fail(index, "label %s value %r must not contain {{ (Prometheus templates alert labels)" % (label, value))
    return objective, {key: str(value) for key, value in labels.items()}


def _query(template, window):
    return str(template).replace(PLACEHOLDER, window)


def slo_rules(slos, burn_alerts=None):
    """Rule groups (a list, ready for a Prometheus rules file) for a list of SLO specs.

    Each spec: name, objective (percent), error_query and total_query with a $window placeholder,
    optional labels (added to every series and alert) and optional description.
    """
    if not isinstance(slos, list):
        raise AnsibleFilterError("slo_rules: expected a list of SLO specs, got %s" % type(slos).__name__)
    burn_alerts = burn_alerts or DEFAULT_BURN_ALERTS
    if not isinstance(burn_alerts, (list, tuple)) or not all(isinstance(e, (list, tuple)) for e in burn_alerts):
        raise AnsibleFilterError(
            "slo_rules: burn_alerts %r must be a list of [factor, long window, short window, severity, for]"
            % (burn_alerts,)
        )
    burn_alerts = [tuple(entry) for entry in burn_alerts]
    for entry in burn_alerts:
        if (
            len(entry) != 5
            or not (_window_ok(entry[1]) and _window_ok(entry[2]) and _window_ok(entry[4], zero=True))
            or isinstance(entry[0], bool)
            or not isinstance(entry[0], (int, float))
            or not 0 < entry[0] < math.inf
            or not isinstance(entry[3], str)
            or not entry[3]
            or "{{" in entry[3]
        ):
            raise AnsibleFilterError(
                "slo_rules: burn_alerts entry %r must be [factor, long window, short window, severity, for]: "
                "a factor above 0 such as 14.4, windows like 1h or 5m, and a severity such as critical" % (list(entry),)
            )
    groups, names = [], set()
    for index, slo in enumerate(slos):
        objective, labels = _validate(index, slo)
        name = slo["name"]
        if name in names:
            _fail(index, "name %r is used twice; every SLO needs its own (it names the rule group)" % name)
        names.add(name)
        labels["slo"] = name
        budget = round(1 - objective / 100.0, 10)
        selector_text = selector(labels)
        rules = []
        for window in _windows(burn_alerts):
            rules.append(
                {
                    "record": "slo:sli_error:ratio_rate%s" % window,
                    "expr": "(%s)\n/\n(%s)" % (_query(slo["error_query"], window), _query(slo["total_query"], window)),
                    "labels": dict(labels),
                }
            )
        rules.append(
            {"record": "slo:objective:ratio", "expr": "vector(%s)" % (objective / 100.0), "labels": dict(labels)}
        )
        for factor, long_window, short_window, severity, for_duration in burn_alerts:
            threshold = round(factor * budget, 10)
            rules.append(
                {
                    "alert": "SLOErrorBudgetBurn",
                    "expr": "slo:sli_error:ratio_rate%s{%s} > %s\nand\nslo:sli_error:ratio_rate%s{%s} > %s"
                    % (long_window, selector_text, threshold, short_window, selector_text, threshold),
                    "for": for_duration,
                    "labels": dict(labels, severity=severity, long_window=long_window, burn_rate=str(factor)),
                    "annotations": {
                        "summary": "SLO %s is burning its error budget %sx too fast" % (name, factor),
                        "description": (
                            "Errors over the last %s and %s exceed %s of requests (objective %s%%). %s"
                            % (long_window, short_window, threshold, objective, slo.get("description", ""))
                        ).strip(),
                    },
                }
            )
        groups.append({"name": "slo-%s" % name, "rules": rules})
    return groups


class FilterModule:
    def filters(self):
        return {"slo_rules": slo_rules}
