# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn what the site's playbooks measured into posture_report promises (playbooks/posture.yml)."""

from __future__ import annotations

import calendar
import json
import math
import posixpath
import re
import time

from ansible.errors import AnsibleFilterError

from ansible_collections.locksmith.ops.plugins.plugin_utils._posture_watched import watched_promises

DEFAULT_TARGETS = {
    "lynis_index": 70,
    "rpo_seconds": 86400,
    "rto_seconds": 1800,
    "backup_success_percent": 100,
    "tls_days_left": 30,
    # pg_backup_restore's drill_max_age_seconds: twice a weekly schedule plus a day.
    "drill_max_age_seconds": 1296000,
}
# A drill report stamped this far ahead of the controller's clock is skew; further ahead, it is no evidence.
CLOCK_SKEW_SECONDS = 300
# pg_backup_restore's report file name: <database>-<mode>-<UTC start>.json.
REPORT_NAME = re.compile(r"^(.+)-(drill|recover|tables|pitr)-([0-9]{8}T[0-9]{6}Z)\.json$")


def _dict(where, value):
    """``value`` as a dict (None is empty); anything else names the measurement that has the wrong shape."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AnsibleFilterError(
            "posture_promises: %s must be a dict, got %s %r; pass the result the playbook registered"
            % (where, type(value).__name__, value)
        )
    return value


def _list(where, value):
    """``value`` as a list of dicts (None is empty)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise AnsibleFilterError(
            "posture_promises: %s must be a list of dicts, got %r; pass the result the playbook registered"
            % (where, value)
        )
    return value


def _summary(where, value, errors):
    """A Lynis summary as posture.yml reads it (JSON text, empty when the file is missing) or already parsed."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError as err:
            # A damaged file is a host that could not be measured, not a filter error that hides every other row.
            errors.append("%s is not JSON (%s)" % (where.rsplit(".", 1)[-1], err))
            return {}
    return _dict(where, value)


def _not_read(seen):
    """The reason posture.yml recorded for a host it could not read (unreachable, a module error), or ''."""
    error = seen.get("error")
    return "not read: %s" % " ".join(str(error).split()) if error else ""


def _lynis(lynis, targets):
    promises = []
    for host in sorted(lynis, key=str):
        seen = _dict("lynis[%r]" % host, lynis[host])
        errors = [seen["error"]] if seen.get("error") else []
        after = _summary("lynis[%r].after" % host, seen.get("after"), errors)
        baseline = _summary("lynis[%r].baseline" % host, seen.get("baseline"), errors)
        if errors:
            detail = _not_read({"error": "; ".join(str(e) for e in errors)})
        else:
            detail = "%s suggestions left" % after["suggestion_count"] if "suggestion_count" in after else ""
        promises.append(
            {
                "name": "lynis_%s" % host,
                "title": "Lynis hardening index of %s" % host,
                "value": after.get("hardening_index"),
                "baseline": baseline.get("hardening_index"),
                "target": targets["lynis_index"],
                "compare": "ge",
                "detail": detail,
                "evidence": "%s:%s" % (host, after.get("report_file", "/var/lib/locksmith/lynis/after")),
            }
        )
    return promises


def _backups(backups, targets):
    promises = []
    for host in sorted(backups, key=str):
        info = _dict("backups[%r]" % host, backups[host])
        complete = [b for b in _list("backups[%r].backups" % host, info.get("backups")) if b.get("complete")]
        valid = [b for b in complete if b.get("valid")]
        destinations = {str(b.get("destination")) for b in complete}
        rpo_seconds = _dict("backups[%r].rpo_seconds" % host, info.get("rpo_seconds"))
        newest_good = _dict("backups[%r].newest_good" % host, info.get("newest_good"))
        # The databases the host should back up (posture.yml adds them): one without any good backup still gets
        # its rows, unmeasured, instead of none.
        databases = info.get("databases") or []
        if not isinstance(databases, list):
            raise AnsibleFilterError(
                "posture_promises: backups[%r].databases must be a list of database names, got %r" % (host, databases)
            )
        databases = databases + sorted((d for d in rpo_seconds if d not in databases), key=str)
        wanted_copies = info.get("destination_count")
        if wanted_copies is not None and (isinstance(wanted_copies, bool) or not isinstance(wanted_copies, int)):
            raise AnsibleFilterError(
                "posture_promises: backups[%r].destination_count must be an integer, got %r" % (host, wanted_copies)
            )
        promises.append(
            {
                "name": "backup_success_%s" % host,
                "title": "Backups of %s that verify (manifest and checksums)" % host,
                "value": round(100.0 * len(valid) / len(complete), 1) if complete else None,
                "unit": "%",
                "target": targets["backup_success_percent"],
                "compare": "ge",
                "detail": _not_read(info)
                or "%d of %d, across %d destinations" % (len(valid), len(complete), len(destinations)),
                "evidence": "%s: locksmith.ops.pg_backup_info" % host,
            }
        )
        for database in databases:
            newest = _dict("backups[%r].newest_good[%r]" % (host, database), newest_good.get(database))
            promises.append(
                {
                    "name": "rpo_%s_%s" % (host, database),
                    "title": "Age of the newest good backup of %s on %s (RPO)" % (database, host),
                    "value": rpo_seconds.get(database),
                    "unit": "s",
                    "target": targets["rpo_seconds"],
                    "compare": "le",
                    "evidence": newest.get("location", ""),
                }
            )
            if wanted_copies is not None:
                promises.append(_copies(host, database, newest, valid, wanted_copies))
    return promises


def _copies(host, database, newest, valid, wanted):
    """How many destinations hold a verified copy of the newest good backup: each region must have one."""
    holding = sorted(
        {
            str(b.get("destination"))
            for b in valid
            if newest.get("id") and b.get("id") == newest.get("id") and b.get("label", database) == database
        }
    )
    return {
        "name": "backup_copies_%s_%s" % (host, database),
        "title": "Destinations holding a verified copy of the newest backup of %s on %s" % (database, host),
        "value": len(holding) if newest else None,
        "target": wanted,
        "compare": "ge",
        "detail": "%s: %s" % (newest.get("id", "no good backup"), ", ".join(holding) or "none"),
        "evidence": "%s: locksmith.ops.pg_backup_info" % host,
    }


def _drill_age(drill, now):
    """Seconds since the drill started, or None when the report cannot say (no stamp, or one in the future)."""
    started = drill.get("started_epoch")
    if isinstance(started, bool) or not isinstance(started, (int, float)) or started - now > CLOCK_SKEW_SECONDS:
        return None
    return max(0.0, now - started)


def _report_name(path):
    """(database, mode, started) from pg_backup_restore's file name <database>-<mode>-<UTC stamp>.json, as far as the
    name follows it: (file stem, None, None) for any other name."""
    base = posixpath.basename(path)
    match = REPORT_NAME.match(base)
    if not match:
        return (base[:-5] if base.endswith(".json") else base), None, None
    try:
        started = calendar.timegm(time.strptime(match.group(3), "%Y%m%dT%H%M%SZ"))
    except ValueError:
        started = None  # 20261399T...: not a time, so not the newest by its name
    return match.group(1), match.group(2), started


def _drill_reports(reports):
    """{(host, database): (path, report, error)}: the newest drill report of each restore host and database.

    The host is the directory a report is in (dr_drill.yml fetches each host's reports into <dir>/<host>/); the
    database and the time are the report's own, or its file name's when it cannot be read. Newest is the drill that
    started last. Reports of recover, tables or PITR restores are not drills and are left out.
    """
    newest = {}
    for path in sorted(reports, key=str):
        if not isinstance(path, str) or not path:
            raise AnsibleFilterError(
                "posture_promises: drill_reports must map report paths to their JSON text, got the key %r" % (path,)
            )
        content = reports[path]
        name_database, name_mode, name_started = _report_name(path)
        error = ""
        if isinstance(content, str):
            # A damaged report is a drill that cannot be judged, not a filter error that hides every other row.
            try:
                content = json.loads(content)
            except ValueError as err:
                error = "%s is %s" % (posixpath.basename(path), "not JSON (%s)" % err if content.strip() else "empty")
            if not isinstance(content, dict):
                error = error or "%s is not a JSON object" % posixpath.basename(path)
                content = {}
        report = _dict("drill_reports[%r]" % path, content)
        if (report.get("mode") or name_mode or "drill") != "drill":
            continue
        database = str(report.get("database") or name_database)
        started = report.get("started_epoch")
        if isinstance(started, bool) or not isinstance(started, (int, float)):
            started = name_started
        key = (posixpath.basename(posixpath.dirname(path)), database)
        order = (started if started is not None else -math.inf, path)
        if key not in newest or order > newest[key][0]:
            newest[key] = (order, path, report, error)
    return {key: found[1:] for key, found in newest.items()}


def _drill_databases(expected):
    """{host: [database, ...]} as posture.yml reads it from the restore hosts (what dr_drill.yml drills on each)."""
    expected = _dict("drill_databases", expected)
    for host, databases in expected.items():
        if databases is not None and (
            not isinstance(databases, list) or not all(isinstance(d, str) and d for d in databases)
        ):
            raise AnsibleFilterError(
                "posture_promises: drill_databases[%r] must be a list of database names, got %r; dr_drill.yml drills"
                " dr_drill_databases, else [dr_restore_database]" % (host, databases)
            )
    return {str(host): list(databases or []) for host, databases in expected.items()}


def _drill(report, error, targets, now):
    """(value, detail) of one drill report."""
    verified = bool(report.get("verified"))
    errors = report.get("errors") if isinstance(report.get("errors"), list) else []
    age = _drill_age(report, now)
    # When dr_drill.yml stopped running (or stopped before it wrote a report), an old verified drill would stand for
    # this period's. Past the schedule's max age it proves nothing.
    current = age is not None and age <= targets["drill_max_age_seconds"]
    if error:
        detail = "not read: %s" % " ".join(error.split())
    elif not verified and errors:
        # A drill that stopped before it restored (no backup found, storage unreachable) has no phases to show.
        first = " ".join(str(errors[0]).split())
        detail = "failed: %s" % (first if len(first) <= 160 else first[:157] + "...")
    elif not current:
        detail = (
            "stale: the newest drill started %.1f days ago, past drill_max_age_seconds %d; run dr_drill.yml"
            % (age / 86400.0, targets["drill_max_age_seconds"])
            if age is not None
            else "undated: the report has no started_epoch in the past; run dr_drill.yml"
        )
    else:
        detail = "phases %s" % json.dumps(report.get("phases", {}), sort_keys=True, default=str)
    # A restore that did not verify has no recovery time: it did not recover.
    return (report.get("rto_seconds") if verified and current and not error else None), detail


def _drills(measured, targets, now):
    """One row per restore host and database: its newest drill report, or none where dr_drill.yml should drill."""
    reports = _dict("drill_reports", measured.get("drill_reports"))
    expected = _drill_databases(measured.get("drill_databases"))
    where = measured.get("drill_report_dir") or ""
    if not isinstance(where, str):
        raise AnsibleFilterError("posture_promises: drill_report_dir must be a path, got %r" % (where,))
    newest = _drill_reports(reports)
    keys = set(newest) | {(host, database) for host, databases in expected.items() for database in databases}
    promises = []
    for host in sorted({host for host, _database in keys} | set(expected)):
        databases = sorted(database for key_host, database in keys if key_host == host)
        if not databases:
            # A restore host that dr_drill.yml has nothing to drill on would otherwise leave the report unseen.
            promises.append(
                {
                    "name": "drill_rto_%s" % host,
                    "title": "Drill on %s: time to a verified restore (RTO)" % host,
                    "value": None,
                    "unit": "s",
                    "target": targets["rto_seconds"],
                    "compare": "le",
                    "detail": "no database to drill: dr_drill.yml drills dr_drill_databases, else dr_restore_database,"
                    " and neither is set for %s" % host,
                    "evidence": "",
                }
            )
        for database in databases:
            if (host, database) in newest:
                path, report, error = newest[(host, database)]
                value, detail = _drill(report, error, targets, now)
            else:
                # Where its report should be: the database must not leave the report because it was never drilled.
                path, value = posixpath.join(where, host, "") if where else "", None
                detail = "no drill report: dr_drill.yml drills %s on %s, and none was found; run dr_drill.yml"
                detail %= (database, host)
            if host in expected and database not in expected[host]:
                detail += (
                    "; %s is not drilled on %s any more (not in dr_drill_databases or dr_restore_database): remove its"
                    " reports if that is meant" % (database, host)
                )
            promises.append(
                {
                    "name": "drill_rto_%s_%s" % (host, database),
                    "title": "Drill of %s on %s: time to a verified restore (RTO)" % (database, host),
                    "value": value,
                    "unit": "s",
                    "target": targets["rto_seconds"],
                    "compare": "le",
                    "detail": detail,
                    "evidence": path,
                }
            )
    if not promises:
        # No report and no restore host: nothing proves the backups restore, and the report must say so.
        promises.append(
            {
                "name": "drill_rto",
                "title": "Drill of the backups: time to a verified restore (RTO)",
                "value": None,
                "unit": "s",
                "target": targets["rto_seconds"],
                "compare": "le",
                "detail": "no drill report%s and no restore host (dr_drill_hosts, default the group dr_restore_hosts)"
                % (" in %s" % where if where else ""),
                "evidence": where,
            }
        )
    return promises


def _tls(endpoints, targets):
    promises = []
    for index, endpoint in enumerate(_list("tls", endpoints)):
        certificate = _dict("tls[%d].certificate" % index, endpoint.get("certificate"))
        promises.append(
            {
                "name": "tls_%s" % endpoint.get("name"),
                "title": "Days left on the certificate of %s (status %s)"
                % (endpoint.get("name"), endpoint.get("status")),
                # A certificate that does not verify or match is no promise kept, whatever its dates.
                "value": certificate.get("days_left") if endpoint.get("status") == "ok" else None,
                "unit": "days",
                "target": targets["tls_days_left"],
                "compare": "ge",
                "detail": ", ".join(
                    str(p.get("code", "")) for p in _list("tls[%d].problems" % index, endpoint.get("problems"))
                ),
                "evidence": "locksmith.ops.tls_check",
            }
        )
    return promises


def posture_promises(measured, targets=None, now=None):
    """Promises from ``measured`` = {lynis: {host: {baseline, after, error}}, backups: {host: pg_backup_info result
    or {error}}, drill_reports: {path: JSON text}, drill_databases: {host: [database]}, drill_report_dir: path,
    tls: [tls_check endpoints], watched: {prometheus, defaults, <area>: {host: settings}}}; each key optional. ``now``
    (Unix time, default the controller's clock) dates the drill reports."""
    if not isinstance(measured, dict):
        raise AnsibleFilterError("posture_promises: expected a dict of measurements, got %s" % type(measured).__name__)
    if targets is not None and not isinstance(targets, dict):
        raise AnsibleFilterError("posture_promises: targets %r must be a dict such as {rpo_seconds: 3600}" % (targets,))
    if "drill" in measured or "drill_evidence" in measured:
        # The one newest report of the whole directory let a failed drill of one database hide behind another's.
        raise AnsibleFilterError(
            "posture_promises: drill and drill_evidence are replaced by drill_reports ({path: JSON text}, the newest"
            " report of each restore host and database, the host being the report's directory) and drill_databases"
            " ({host: [database]}); see playbooks/posture.yml"
        )
    targets = targets or {}
    unknown = set(targets) - set(DEFAULT_TARGETS)
    if unknown:
        raise AnsibleFilterError(
            "posture_promises: unknown targets %s; known: %s" % (", ".join(sorted(unknown)), ", ".join(DEFAULT_TARGETS))
        )
    for key, value in targets.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AnsibleFilterError("posture_promises: targets %s %r must be a number" % (key, value))
    merged = dict(DEFAULT_TARGETS, **targets)
    promises = []
    promises += _lynis(_dict("lynis", measured.get("lynis")), merged)
    promises += _backups(_dict("backups", measured.get("backups")), merged)
    if "drill_reports" in measured or "drill_databases" in measured:
        promises += _drills(measured, merged, time.time() if now is None else now)
    promises += _tls(measured.get("tls"), merged)
    if "watched" in measured:
        promises += watched_promises(measured["watched"])
    return promises


class FilterModule:
    def filters(self):
        return {"posture_promises": posture_promises}
