# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Override the `for:` of every alert in a Prometheus rules document (test and lab profiles)."""

from __future__ import annotations

import copy
import re

from ansible.errors import AnsibleFilterError

_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)\Z")


def alert_rules_for(document, duration):
    """Return a copy of ``document`` ({'groups': [...]}) where each alert waits ``duration``.

    ``duration`` None or empty returns the document unchanged, so production keeps its `for:` values.
    """
    if not duration:
        return document
    if not _DURATION.match(str(duration)):
        raise AnsibleFilterError(
            "alert_rules_for: duration %r must be a Prometheus duration such as 10s or 1m" % duration
        )
    if not isinstance(document, dict) or not isinstance(document.get("groups"), list):
        raise AnsibleFilterError("alert_rules_for: expected a rules document with a 'groups' list")
    result = copy.deepcopy(document)
    for group in result["groups"]:
        for rule in group.get("rules", []):
            if "alert" in rule:
                rule["for"] = str(duration)
    return result


class FilterModule:
    def filters(self):
        return {"alert_rules_for": alert_rules_for}
