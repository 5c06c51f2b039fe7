# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus recording and burn-rate alerting rules generated from an SLO spec.

Follows the multiwindow, multi-burn-rate method of the Google SRE workbook (chapter "Alerting on
SLOs"): an alert needs both a long and a short window over the threshold, so it fires fast on a real
burn and resets fast once the burn stops.
"""

from __future__ import annotations

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


def _fail(index, message):
    raise AnsibleFilterError("slo_rules: slos[%d] %s" % (index, message))


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
    for label in slo.get("labels", {}) or {}:
        if not _LABEL_NAME.match(label):
            _fail(index, "label name %r is not a valid Prometheus label" % label)
    return objective


def _query(template, window):
    return str(template).replace(PLACEHOLDER, window)


def slo_rules(slos, burn_alerts=None):
    """Rule groups (a list, ready for a Prometheus rules file) for a list of SLO specs.

    Each spec: name, objective (percent), error_query and total_query with a $window placeholder,
    optional labels (added to every series and alert) and optional description.
    """
    if not isinstance(slos, list):
        raise AnsibleFilterError("slo_rules: expected a list of SLO specs, got %s" % type(slos).__name__)
    burn_alerts = [tuple(entry) for entry in (burn_alerts or DEFAULT_BURN_ALERTS)]
    for entry in burn_alerts:
        if len(entry) != 5 or not all(_WINDOW.match(str(w)) for w in (entry[1], entry[2], entry[4])):
            raise AnsibleFilterError(
                "slo_rules: burn_alerts entry %r must be [factor, long window, short window, severity, for], "
                "windows like 1h or 5m" % (list(entry),)
            )
    groups = []
    for index, slo in enumerate(slos):
        objective = _validate(index, slo)
        name = slo["name"]
        labels = dict(slo.get("labels") or {}, slo=name)
        budget = round(1 - objective / 100.0, 10)
        selector = ",".join('%s="%s"' % (key, labels[key]) for key in sorted(labels))
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
                    % (long_window, selector, threshold, short_window, selector, threshold),
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
