# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Prometheus scrape config that sends URLs to the blackbox exporter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

_JOB = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*\Z")
_MODULE = re.compile(r"^[A-Za-z0-9_.-]+\Z")
_NO_BLANKS = re.compile(r"^[^\s\x00-\x1f\x7f]+\Z")


def _fail(message):
    raise AnsibleFilterError("blackbox_scrape_configs: %s" % message)


def _checked_url(index, url):
    """The URL itself, once it is an http(s) URL with a host, a valid port and no credentials."""
    if not isinstance(url, str) or not _NO_BLANKS.match(url):
        _fail("probes[%d] url %r must be a URL without blanks or line breaks" % (index, url))
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for a port out of range or not a number
    except ValueError as err:
        raise AnsibleFilterError(
            "blackbox_scrape_configs: probes[%d] url %r is not a URL (%s)" % (index, url, err)
        ) from err
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _fail(
            "probes[%d] url %r must be an http or https URL with a host, such as https://app.example.com/"
            % (index, url)
        )
    if "@" in parts.netloc:
        _fail(
            "probes[%d] url of %s carries credentials (not shown): they would be written to prometheus.yml and shown "
            "as the instance label; probe a URL that answers without them" % (index, parts.hostname)
        )
    if port == 0:
        _fail("probes[%d] url %r has port 0, where nothing answers" % (index, url))
    return url


def blackbox_scrape_configs(probes, exporter, module="https_2xx", job="blackbox_https", hosts=None):
    """One scrape config probing every URL of ``probes`` through the blackbox exporter at ``exporter``.

    A probe is a URL, or a dict with ``url`` and ``host``: the inventory host that serves the URL, set as the
    target's ``host`` label so that the probe's alerts group and inhibit with that host's other alerts. With
    ``hosts`` given, ``host`` must be one of them. No probes give an empty list.
    """
    if not isinstance(probes, list):
        kind = "a string" if isinstance(probes, str) else "a dict" if isinstance(probes, Mapping) else repr(probes)
        _fail("expected a list of probes (URLs, or dicts with url and host), got %s" % kind)
    for name, value, pattern in (("exporter", exporter, _NO_BLANKS), ("module", module, _MODULE), ("job", job, _JOB)):
        if not isinstance(value, str) or not pattern.match(value):
            _fail("%s %r is not valid" % (name, value))
    if hosts is not None and not isinstance(hosts, list):
        _fail("hosts must be a list of inventory host names, such as groups['all']")
    static_configs, by_host, seen = [], {}, set()
    for index, probe in enumerate(probes):
        if isinstance(probe, Mapping):
            unknown = sorted(str(key) for key in probe if key not in ("url", "host"))
            if unknown or "url" not in probe:
                _fail("probes[%d] %r must have url and may have host, nothing else" % (index, dict(probe)))
            url, host = probe["url"], probe.get("host")
        else:
            url, host = probe, None
        url = _checked_url(index, url)
        if host is not None:
            if not isinstance(host, str) or not _NO_BLANKS.match(host):
                _fail("probes[%d] host %r must be an inventory host name" % (index, host))
            if hosts is not None and host not in hosts:
                _fail(
                    "probes[%d] host %r is not in the inventory; name the inventory host that serves %s, or give "
                    "the URL alone" % (index, host, url)
                )
        if url in seen:
            _fail("probes[%d] url %r is listed twice" % (index, url))
        seen.add(url)
        if host not in by_host:
            entry = {"targets": []}
            if host is not None:
                entry["labels"] = {"host": host}
            by_host[host] = entry
            static_configs.append(entry)
        by_host[host]["targets"].append(url)
    if not static_configs:
        return []
    return [
        {
            "job_name": job,
            "metrics_path": "/probe",
            "params": {"module": [module]},
            "static_configs": static_configs,
            # The URL becomes the probe's target and the instance label; the scrape goes to the exporter.
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": exporter},
            ],
        }
    ]


class FilterModule:
    def filters(self):
        return {"blackbox_scrape_configs": blackbox_scrape_configs}
