from __future__ import annotations

import calendar

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils._backup_retention import plan_retention

DAY = 86400
NOW = calendar.timegm((2026, 11, 27, 12, 0, 0))


def entries(*ages_days, complete=True):
    return [{"id": "b%03d" % i, "when": NOW - age * DAY, "complete": complete} for i, age in enumerate(ages_days)]


def pruned(plan):
    return sorted(i for i, _reason in plan[1])


def test_no_policy_keeps_everything():
    assert pruned(plan_retention(entries(1, 2, 300), None, NOW)) == []


def test_keep_last_keeps_the_newest_n():
    assert pruned(plan_retention(entries(0, 1, 2, 3), {"keep_last": 2}, NOW)) == ["b002", "b003"]


def test_gfs_keeps_newest_per_day_week_and_month():
    # Two backups on each of the last 10 days (hours apart).
    items = [
        {"id": "d%02d%s" % (d, s), "when": NOW - d * DAY - h, "complete": True}
        for d in range(10)
        for s, h in (("a", 0), ("b", 3600))
    ]
    keep, prune = plan_retention(items, {"daily": 3}, NOW)
    assert sorted(i for i, _reason in keep) == ["d00a", "d01a", "d02a"]
    assert len(prune) == 17
    keep = plan_retention(items, {"weekly": 2, "monthly": 1}, NOW)[0]
    kept = {i for i, _reason in keep}
    assert "d00a" in kept and len(kept) == 2


def test_max_age_overrides_keep_rules_but_never_the_newest():
    plan = plan_retention(entries(40, 50, 60), {"keep_last": 3, "max_age_days": 30}, NOW)
    assert pruned(plan) == ["b001", "b002"]
    assert dict(plan[0])["b000"].endswith("newest")


def test_the_last_good_backup_survives_any_policy():
    plan = plan_retention(entries(400), {"max_age_days": 1, "keep_last": 1}, NOW)
    assert pruned(plan) == [] and [i for i, _reason in plan[0]] == ["b000"]


@pytest.mark.parametrize(("age", "expected"), [(0.5, []), (2, ["b000"])])
def test_incomplete_leftovers_are_pruned_after_a_day(age, expected):
    items = [*entries(age, complete=False), {"id": "good", "when": NOW, "complete": True}]
    assert pruned(plan_retention(items, {"keep_last": 5}, NOW)) == expected


def test_incomplete_backups_never_count_as_the_newest_good():
    items = entries(0, complete=False) + entries(3)[0:1]
    items[1]["id"] = "old-good"
    keep = plan_retention(items, {"max_age_days": 1}, NOW)[0]
    assert [i for i, _reason in keep] == ["old-good"]


def test_weekly_counts_an_iso_week_that_spans_new_year_once():
    # Mon 28 Dec 2026 to Sun 3 Jan 2027 is one ISO week (2026-W53): its two halves are one weekly slot, so weekly=4
    # keeps the newest backup of that week and of three more (down to the one of 20 Dec).
    days = [(2026, 12, d) for d in range(20, 32)] + [(2027, 1, d) for d in range(1, 11)]
    items = [{"id": "%d-%02d-%02d" % day, "when": calendar.timegm((*day, 2, 0, 0)), "complete": True} for day in days]
    keep = sorted(i for i, _reason in plan_retention(items, {"weekly": 4}, calendar.timegm((2027, 1, 10, 12, 0, 0)))[0])
    assert keep == ["2026-12-20", "2026-12-27", "2027-01-03", "2027-01-10"]
