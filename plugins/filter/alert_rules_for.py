# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Override the `for:` of every alert in a Prometheus rules document (test and lab profiles)."""

from __future__ import annotations

import copy
import re

from ansible.errors import AnsibleFilterError

_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d|w|y)\Z")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "w": 604800000, "y": 31536000000}
# Prometheus durations are int64 nanoseconds (about 292 years); a longer one fails promtool.
_MAX_MS = 100 * _UNIT_MS["y"]


def alert_rules_for(document, duration):
    """Return a copy of ``document`` ({'groups': [...]}) where each alert waits ``duration``.

    ``duration`` None or empty returns the document unchanged, so production keeps its `for:` values.
    """
    if not duration:
        return document
    match = _DURATION.match(str(duration))
    if not match or int(match.group(1)) * _UNIT_MS[match.group(2)] > _MAX_MS:
        raise AnsibleFilterError(
            "alert_rules_for: duration %r must be a Prometheus duration such as 10s or 1m, at most 100y" % (duration,)
        )
    if not isinstance(document, dict) or not isinstance(document.get("groups"), list):
        raise AnsibleFilterError("alert_rules_for: expected a rules document with a 'groups' list")
    result = copy.deepcopy(document)
    for index, group in enumerate(result["groups"]):
        rules = (group.get("rules") or []) if isinstance(group, dict) else None
        if not isinstance(rules, list) or not all(isinstance(rule, dict) for rule in rules):
            raise AnsibleFilterError(
                "alert_rules_for: groups[%d] must be a dict with a 'rules' list of rule dicts, got %r" % (index, group)
            )
        for rule in rules:
            if "alert" in rule:
                rule["for"] = str(duration)
    return result


class FilterModule:
    def filters(self):
        return {"alert_rules_for": alert_rules_for}
