# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""FOR INTERNAL COLLECTION USE ONLY: the posture report's "Watched" rows (locksmith.ops.posture_promises).

One row per watched area: the series the site's producers should publish, as the inventory configures them (the
role variables it sets, else the roles' defaults), against the series Prometheus has now. playbooks/posture.yml
reads the inventory without reaching the hosts and asks Prometheus once for every series of METRICS; the labels
are compared here, in Python, so no inventory value ever enters a PromQL expression.
"""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

# The series each area is proven watched by (docs/metrics.md). posture.yml's query names exactly these
# (tests/unit/plugins/filter/test_posture_watched.py holds the two together).
METRICS = {
    "backup": "locksmith_backup_rpo_target_seconds",
    "drill": "locksmith_drill_last_run_timestamp_seconds",
    "tls_run": "locksmith_tls_last_check_timestamp_seconds",
    "tls_expiry": "locksmith_tls_cert_not_after_timestamp_seconds",
    "secrets": "locksmith_secret_max_age_seconds",
    "audit": "locksmith_audit_retention_max_age_seconds",
    "intrusion": "locksmith_ids_last_run_timestamp_seconds",
    "hardening": "locksmith_hardening_last_run_timestamp_seconds",
}
# playbooks/tls_audit.yml's own defaults (a playbook has no defaults file to read them from).
TLS_AUDIT_DEFAULTS = {
    "tls_audit_metrics_dir": "/var/lib/prometheus/node-exporter",
    "tls_audit_metrics_subject": "audit",
}
# The roles harden.yml runs, each publishing its converge time with the label role=<role>.
HARDENING_ROLES = (
    "os_hardening",
    "ssh_hardening",
    "firewall",
    "postgresql_hardening",
    "web_hardening",
    "intrusion_detection",
)
# A long list of missing series would bury the row: the first ones name the problem.
MAX_NAMED = 10


def _fail(message):
    raise AnsibleFilterError("posture_promises: watched.%s" % message)


class _Host:
    """One host's settings for one area: the inventory's value, else the role's default, else ``fallback``."""

    def __init__(self, area, host, entry, defaults):
        if entry is not None and not isinstance(entry, dict):
            _fail("%s[%r] must be a dict of the role's variables, got %r" % (area, host, entry))
        self.area, self.host, self.entry, self.defaults = area, host, entry or {}, defaults

    def get(self, name, fallback=None):
        value = self.entry.get(name)
        return self.defaults.get(name, fallback) if value is None else value

    def off(self, *switches):
        """The first switch that is off, as the reason the row gives ('' when every one is on)."""
        for name in switches:
            value = self.get(name, True)
            try:
                on = boolean(value, strict=True)
            except TypeError:
                _fail("%s[%r].%s is %r, not a boolean" % (self.area, self.host, name, value))
            if not on:
                return "%s is false" % name
        return ""

    def names(self, name, empty=False):
        """A list of names (databases), each a non-empty string (or empty, for an entry that names none)."""
        value = self.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and (v or empty) for v in value):
            _fail("%s[%r].%s must be a list of names, got %r" % (self.area, self.host, name, value))
        return value

    def mapping(self, name):
        """A dict of names to a string (secret to its metrics_dir, database to its state); an entry without a name
        (which its role refuses) publishes nothing."""
        value = self.get(name, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            _fail("%s[%r].%s must be a dict keyed by names, got %r" % (self.area, self.host, name, value))
        for key, item in value.items():
            if item is not None and not isinstance(item, str):
                _fail("%s[%r].%s[%r] must be a string, got %r" % (self.area, self.host, name, key, item))
        return {key: item for key, item in value.items() if key}

    def text(self, name, fallback=""):
        value = self.get(name, fallback)
        if not isinstance(value, str):
            _fail("%s[%r].%s must be a string, got %r" % (self.area, self.host, name, value))
        return value


# The key posture.yml gives a host whose settings it could not note (the host failed earlier in the run).
UNREAD = "not_read"


class _Expected:
    """The series an area expects, the producers turned off (with why), and the hosts whose settings were not read."""

    def __init__(self):
        self.series = []
        self.off = []
        self.unread = []

    def add(self, metric, host, **labels):
        self.series.append((metric, host, tuple(sorted(labels.items()))))

    def skip(self, host, why):
        self.off.append("%s (%s)" % (host, why))

    def per_database(self, metric, host, databases, why):
        """One series per database of the host, or the host's producer noted as off (``why``)."""
        if databases and why:
            self.skip(host, why)
            return
        for database in databases:
            self.add(metric, host, database=database)


def _hosts(watched, area):
    hosts = watched.get(area)
    if hosts is None:
        return {}
    if not isinstance(hosts, dict):
        _fail("%s must be a dict of hosts, got %r" % (area, hosts))
    return hosts


def _backup(hosts, defaults):
    found = _Expected()
    for name in sorted(hosts, key=str):
        host = _Host("backup", name, hosts[name], defaults)
        databases = host.names("backup_databases")
        why = host.off("backup_enabled", "backup_jobs_enabled", "backup_metrics_enabled")
        found.per_database(METRICS["backup"], name, databases, why)
    return found


def _drill(hosts, defaults):
    found = _Expected()
    for name in sorted(hosts, key=str):
        host = _Host("drill", name, hosts[name], defaults)
        databases = host.names("databases")
        why = host.off("dr_restore_enabled", "dr_restore_metrics_enabled")
        found.per_database(METRICS["drill"], name, databases, why)
    return found


def _endpoint_name(host, index, endpoint):
    """tls_check's label of an endpoint: its name, else host:port."""
    if not isinstance(endpoint, dict) or not isinstance(endpoint.get("host"), str):
        _fail("tls[%r].tls_audit_endpoints[%d] must be a dict with a host, got %r" % (host, index, endpoint))
    if endpoint.get("name"):
        return str(endpoint["name"])
    port = endpoint.get("port")
    try:
        port = 443 if port is None else int(port)
    except (TypeError, ValueError):
        _fail("tls[%r].tls_audit_endpoints[%d].port is %r, not a port number" % (host, index, port))
    return "%s:%d" % (endpoint["host"], port)


def _tls(hosts, defaults):
    found = _Expected()
    defaults = dict(TLS_AUDIT_DEFAULTS, **defaults)
    for name in sorted(hosts, key=str):
        host = _Host("tls", name, hosts[name], defaults)
        endpoints = host.get("tls_audit_endpoints", [])
        if not isinstance(endpoints, list):
            _fail("tls[%r].tls_audit_endpoints must be a list, got %r" % (name, endpoints))
        if not endpoints:
            continue  # tls_audit.yml refuses to run without endpoints, and has nothing to publish
        if not host.text("tls_audit_metrics_dir"):
            found.skip(name, "tls_audit_metrics_dir is empty")
            continue
        subject = host.text("tls_audit_metrics_subject")
        scope = {"subject": subject} if subject else {}  # tls_check labels nothing without a subject
        found.add(METRICS["tls_run"], name, **scope)
        for index, endpoint in enumerate(endpoints):
            found.add(METRICS["tls_expiry"], name, endpoint=_endpoint_name(name, index, endpoint), **scope)
    return found


def _secrets(hosts, defaults):
    found = _Expected()
    for name in sorted(hosts, key=str):
        host = _Host("secrets", name, hosts[name], defaults)
        rotations = [secret for secret in host.names("secrets_rotations", empty=True) if secret]
        own_dirs = host.mapping("secrets_rotation_metrics_dirs")
        why = host.off("secrets_enabled", "secrets_rotate_enabled")
        if rotations and why:
            found.skip(name, why)
            continue
        overrides = host.get("secrets_rotation_overrides", {})
        if not isinstance(overrides, dict):
            _fail("secrets[%r].secrets_rotation_overrides must be a dict, got %r" % (name, overrides))
        # As roles/secrets merges them: the role's directory, then the entry's metrics_dir, then the overrides.
        role_dir = host.text("secrets_metrics_dir") if not host.off("secrets_metrics_enabled") else ""
        role_why = host.off("secrets_metrics_enabled") or "secrets_metrics_dir is empty"
        for secret in sorted(set(rotations)):
            if overrides.get("metrics_dir") is not None:
                directory, why = overrides["metrics_dir"], "secrets_rotation_overrides.metrics_dir is empty"
            elif own_dirs.get(secret) is not None:
                directory, why = own_dirs[secret], "its metrics_dir is empty"
            else:
                directory, why = role_dir, role_why
            if directory:
                found.add(METRICS["secrets"], name, secret=secret)
            else:
                found.skip("%s %s" % (name, secret), why)
    return found


def _audit(hosts, defaults):
    found = _Expected()
    for name in sorted(hosts, key=str):
        host = _Host("audit", name, hosts[name], defaults)
        # A database being removed (state absent) keeps no retention, nor its metrics.
        databases = [d for d, state in sorted(host.mapping("audit_databases").items()) if state in (None, "present")]
        why = host.off("audit_enabled", "audit_metrics_enabled")
        if not why and not host.text("audit_metrics_dir"):
            why = "audit_metrics_dir is empty"
        found.per_database(METRICS["audit"], name, databases, why)
    return found


def _hardening_roles(name, host):
    roles = host.get("roles", [])
    if not isinstance(roles, list) or not all(role in HARDENING_ROLES for role in roles):
        _fail("hardening[%r].roles must be a list of %s, got %r" % (name, ", ".join(HARDENING_ROLES), roles))
    return roles


def _intrusion(hosts, defaults):
    found = _Expected()
    for name in sorted(hosts, key=str):
        host = _Host("hardening", name, hosts[name], defaults)
        if "intrusion_detection" not in _hardening_roles(name, host):
            continue
        why = host.off("intrusion_detection_enabled", "intrusion_detection_metrics_enabled")
        if why:
            found.skip(name, why)
        else:
            found.add(METRICS["intrusion"], name)
    return found


def _hardening(hosts, defaults):
    found = _Expected()
    for name in sorted(hosts, key=str):
        host = _Host("hardening", name, hosts[name], defaults)
        for role in _hardening_roles(name, host):
            why = host.off("%s_enabled" % role, "%s_metrics_enabled" % role)
            if why:
                found.skip(name, why)
            else:
                found.add(METRICS["hardening"], name, role=role)
    return found


# Row name, title, how the area's producers are found, and what "nothing to watch" means there.
AREAS = (
    (
        "watched_backup",
        "Backup staleness watched: the RPO target of each database backed up, in Prometheus",
        _backup,
        "backup",
        "no backup host (backup_hosts, default the group databases) backs up a database (backup_databases)",
    ),
    (
        "watched_drill",
        "Drills watched: the run time of each database drilled, in Prometheus",
        _drill,
        "drill",
        "no restore host (dr_drill_hosts, default the group dr_restore_hosts) drills a database",
    ),
    (
        "watched_tls",
        "TLS expiry watched: the TLS audit's run time and each endpoint's certificate expiry, in Prometheus",
        _tls,
        "tls",
        "the TLS audit hosts have no tls_audit_endpoints",
    ),
    (
        "watched_secrets",
        "Secret rotation watched: the max age of each secret rotated, in Prometheus",
        _secrets,
        "secrets",
        "no secrets host (secrets_hosts, default the group secrets) rotates a secret (secrets_rotations)",
    ),
    (
        "watched_audit",
        "Audit retention watched: the retention target of each audited database, in Prometheus",
        _audit,
        "audit",
        "no audit host (audit_hosts, default the group databases) audits a database (audit_databases)",
    ),
    (
        "watched_intrusion",
        "Intrusion alerts watched: the ban metrics' run time of each host, in Prometheus",
        _intrusion,
        "hardening",
        "harden.yml runs intrusion_detection on no host (harden_hosts, default all)",
    ),
    (
        "watched_hardening",
        "Hardening watched: the converge time of each hardening role on each host, in Prometheus",
        _hardening,
        "hardening",
        "harden.yml hardens no host (harden_hosts, default all)",
    ),
)


def _series(prometheus):
    """({(metric, host): [labels, ...]}, {metric: count without a host label}, '') or (None, None, why not)."""
    url = prometheus.get("url") or ""
    if not isinstance(url, str):
        _fail("prometheus.url must be a string, got %r" % (url,))
    if not url:
        return None, None, "no Prometheus to ask: %s" % (prometheus.get("source") or "set posture_prometheus_url")
    answer = prometheus.get("answer")
    if not isinstance(answer, dict) or answer.get("skipped"):
        return None, None, "Prometheus at %s was not asked" % url
    body = answer.get("json")
    if answer.get("status") != 200 or not isinstance(body, dict) or body.get("status") != "success":
        status = answer.get("status")
        code = "HTTP %s" % status if isinstance(status, int) and status > 0 else ""
        if isinstance(body, dict) and body.get("error"):
            why = "%s: %s" % (code, body["error"]) if code else body["error"]
        elif answer.get("msg") and status != 200:
            why = answer["msg"]
        else:
            why = "%s, not the Prometheus API" % (code or "an answer")
        return None, None, "no answer from Prometheus at %s (%s)" % (url, " ".join(str(why).split()))
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        return None, None, "Prometheus at %s answered with no instant vector" % url
    series, hostless = {}, {}
    for item in data["result"]:
        labels = item.get("metric") if isinstance(item, dict) else None
        if not isinstance(labels, dict):
            continue
        metric = labels.get("__name__")
        if "host" in labels:
            series.setdefault((metric, labels["host"]), []).append(labels)
        else:
            hostless[metric] = hostless.get(metric, 0) + 1
    return series, hostless, ""


def _pair(host, labels):
    """A series as the row names it: the host, then its labels with their values quoted as JSON strings."""
    return " ".join([str(host)] + ["%s=%s" % (key, json.dumps(str(value))) for key, value in labels])


def _row(name, title, expected, nothing, url, found):
    series, hostless, why_not = found
    metrics = sorted({metric for metric, _host, _labels in expected.series})
    row = {
        "name": name,
        "title": title,
        "target": len(expected.series),
        "compare": "ge",
        "unit": "series",
        "evidence": "%s/api/v1/query" % url.rstrip("/") if url else "",
    }
    off = "; off, so not expected: %s" % ", ".join(expected.off) if expected.off else ""
    if expected.unread:
        # What a host not read should publish is unknown: never "nothing to watch", never all present.
        row.update(value=None, detail="not measured: settings not read on %s%s" % (", ".join(expected.unread), off))
        return row
    if not expected.series:
        # Nothing runs that should publish here: nothing to find missing, whether Prometheus answers or not.
        row.update(
            value=0, detail="nothing to watch: %s%s" % ("every producer is off" if expected.off else nothing, off)
        )
        return row
    if series is None:
        row.update(value=None, detail="not measured: %s%s" % (why_not, off))
        return row
    missing = [
        (host, labels)
        for metric, host, labels in expected.series
        if not any(all(s.get(k) == v for k, v in labels) for s in series.get((metric, host), []))
    ]
    row["value"] = len(expected.series) - len(missing)
    if missing:
        named = ", ".join(_pair(host, labels) for host, labels in missing[:MAX_NAMED])
        more = " and %d more" % (len(missing) - MAX_NAMED) if len(missing) > MAX_NAMED else ""
        detail = "missing in Prometheus (%s): %s%s" % (", ".join(metrics), named, more)
        unlabelled = sorted(m for m in metrics if hostless.get(m))
        if unlabelled:
            # Scrape jobs of locksmith.ops.monitoring_server add `host`; others leave these series unmatched.
            detail += "; Prometheus has %s without a host label" % ", ".join(unlabelled)
    else:
        detail = "all %d present (%s)" % (len(expected.series), ", ".join(metrics))
    row["detail"] = detail + off
    return row


def watched_promises(watched):
    """The Watched rows from posture.yml's ``watched`` measurement (see posture_promises.yml)."""
    if not isinstance(watched, dict):
        raise AnsibleFilterError("posture_promises: watched must be a dict, got %s" % type(watched).__name__)
    prometheus = watched.get("prometheus") or {}
    defaults = watched.get("defaults") or {}
    for key, value in (("prometheus", prometheus), ("defaults", defaults)):
        if not isinstance(value, dict):
            _fail("%s must be a dict, got %r" % (key, value))
    found = _series(prometheus)
    url = prometheus.get("url") or ""
    rows = []
    for name, title, expect, area, nothing in AREAS:
        hosts = _hosts(watched, area)
        unread = {host: entry for host, entry in hosts.items() if isinstance(entry, dict) and UNREAD in entry}
        expected = expect({host: entry for host, entry in hosts.items() if host not in unread}, defaults)
        expected.unread = ["%s (%s)" % (host, unread[host][UNREAD]) for host in sorted(unread, key=str)]
        rows.append(_row(name, title, expected, nothing, url, found))
    return rows
