# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Retention planning for one label at one destination: pure, so check mode and tests see the same plan.

Kept: the newest ``keep_last``; for ``daily``/``weekly``/``monthly`` N, the newest backup of each of
the N most recent days/ISO weeks/months that have one (GFS). With no keep rule, every backup is kept.
``max_age_days`` then removes anything older, whatever kept it. The newest complete backup is never
pruned. Incomplete leftovers (no manifest) are pruned once older than a day, so a run in progress is
never touched.
"""

from __future__ import annotations

import time

LEFTOVER_GRACE_SECONDS = 86400


def _bucket_keys(when):
    tm = time.gmtime(when)
    # The ISO year (%G), not the calendar year: the days of one ISO week around New Year are one weekly slot.
    return {
        "daily": time.strftime("%Y-%m-%d", tm),
        "weekly": time.strftime("%G-W%V", tm),
        "monthly": time.strftime("%Y-%m", tm),
    }


def plan_retention(entries, policy, now):
    """Return (keep, prune) lists of (backup_id, reason) for entries of one label.

    ``entries`` are dicts with id, when (epoch seconds) and complete (bool), in any order.
    """
    policy = policy or {}
    complete = sorted((e for e in entries if e["complete"]), key=lambda e: e["when"], reverse=True)
    reasons = {}
    rules = [r for r in ("keep_last", "daily", "weekly", "monthly") if policy.get(r)]
    if not rules:
        for entry in complete:
            reasons.setdefault(entry["id"], []).append("no keep rule")
    if policy.get("keep_last"):
        for entry in complete[: policy["keep_last"]]:
            reasons.setdefault(entry["id"], []).append("keep_last")
    for period in ("daily", "weekly", "monthly"):
        count = policy.get(period)
        if not count:
            continue
        seen = []
        for entry in complete:
            bucket = _bucket_keys(entry["when"])[period]
            if bucket in seen:
                continue
            if len(seen) == count:
                break
            seen.append(bucket)
            reasons.setdefault(entry["id"], []).append(period)
    max_age = policy.get("max_age_days")
    if max_age:
        for entry in complete:
            if now - entry["when"] > max_age * 86400:
                reasons.pop(entry["id"], None)
    if complete:
        # Never delete the last good backup, whatever the rules say.
        reasons.setdefault(complete[0]["id"], []).append("newest")
    keep, prune = [], []
    for entry in complete:
        if entry["id"] in reasons:
            keep.append((entry["id"], ",".join(reasons[entry["id"]])))
        else:
            prune.append((entry["id"], "retention"))
    for entry in entries:
        if not entry["complete"] and entry["when"] is not None and now - entry["when"] > LEFTOVER_GRACE_SECONDS:
            prune.append((entry["id"], "incomplete leftover"))
    return keep, prune
