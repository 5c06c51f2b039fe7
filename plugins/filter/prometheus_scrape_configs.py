# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus scrape_configs generated from inventory groups."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

_JOB = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*\Z")
_PORT = re.compile(r"^[0-9]{1,5}\Z")
_ADDRESS = re.compile(r"^[^\s/@]+\Z")


def _fail(message):
    raise AnsibleFilterError("prometheus_scrape_configs: %s" % message)


def _ipv6(address):
    """True for an IPv6 address, bare or in brackets."""
    try:
        return (
            ipaddress.ip_address(
                address[1:-1] if address.startswith("[") and address.endswith("]") else address
            ).version
            == 6
        )
    except ValueError:
        return False


def _target(address, port):
    host = "[%s]" % address if ":" in address and not address.startswith("[") else address
    return "%s:%s" % (host, port)


def prometheus_scrape_configs(
    jobs, groups, hostvars, address_var="monitoring_agents_listen_address", tls_config=None, basic_auth=None
):
    """One scrape config per job whose inventory group has hosts; each target carries a `host` label.

    Each job: job (name), group (inventory group), port, and optional scheme, metrics_path, tls and
    basic_auth. A host's address is its ``address_var`` host variable, else ``ansible_host``, else its
    inventory name. A job with ``tls`` true gets scheme https and ``tls_config`` when that is non-empty; a
    job with ``basic_auth`` true gets ``basic_auth`` when that is non-empty.
    """
    if not isinstance(jobs, list):
        raise AnsibleFilterError("prometheus_scrape_configs: expected a list of jobs")
    for name, value in (("groups", groups), ("hostvars", hostvars)):
        if not isinstance(value, Mapping):
            _fail("%s must be a dict, such as the magic variable %s, got %s" % (name, name, type(value).__name__))
    for name, value in (("tls_config", tls_config), ("basic_auth", basic_auth)):
        if value is not None and not isinstance(value, dict):
            raise AnsibleFilterError("prometheus_scrape_configs: %s must be a dict" % name)
    if basic_auth and "password" in basic_auth:
        raise AnsibleFilterError("prometheus_scrape_configs: basic_auth takes password_file, never an inline password")
    configs, seen = [], set()
    for index, job in enumerate(jobs):
        for key in ("job", "group", "port"):
            if not isinstance(job, dict) or key not in job:
                raise AnsibleFilterError("prometheus_scrape_configs: jobs[%d] needs job, group and port" % index)
        if not isinstance(job["job"], str) or not _JOB.match(job["job"]):
            raise AnsibleFilterError(
                "prometheus_scrape_configs: jobs[%d] job name %r is not valid" % (index, job["job"])
            )
        if job["job"] in seen:
            _fail("jobs[%d] job name %r is used twice; Prometheus refuses a second scrape config" % (index, job["job"]))
        seen.add(job["job"])
        port = job["port"]
        if isinstance(port, bool) or not _PORT.match(str(port)) or not 0 < int(port) < 65536:
            _fail("jobs[%d] port %r must be a TCP port number from 1 to 65535" % (index, port))
        if job.get("scheme") not in (None, "", "http", "https"):
            _fail("jobs[%d] scheme %r must be http or https" % (index, job["scheme"]))
        if not isinstance(job["group"], str):
            _fail("jobs[%d] group %r must be an inventory group name" % (index, job["group"]))
        members = groups.get(job["group"]) or []
        if not isinstance(members, list):
            _fail("groups[%r] must be a list of host names, got %r" % (job["group"], members))
        if not members:
            continue
        static_configs = []
        for name in sorted(members):
            host = hostvars.get(name) or {}
            address = host.get(address_var) or host.get("ansible_host") or name
            if not isinstance(address, str) or not _ADDRESS.match(address):
                _fail(
                    "host %s address %r (from %s, ansible_host or its name) must be a host name or an IP address"
                    % (name, address, address_var)
                )
            if ":" in address and not _ipv6(address):
                # 10.0.0.5:22 would become the target [10.0.0.5:22]:9100, which nothing answers.
                _fail(
                    "host %s address %r (from %s, ansible_host or its name) carries a port or is not an IPv6 "
                    "address; give the host alone, the job's port is added" % (name, address, address_var)
                )
            static_configs.append({"targets": [_target(address, int(port))], "labels": {"host": name}})
        config = {"job_name": job["job"], "static_configs": static_configs}
        if job.get("scheme"):
            config["scheme"] = job["scheme"]
        if job.get("metrics_path"):
            config["metrics_path"] = job["metrics_path"]
        if job.get("tls") and tls_config:
            config["scheme"] = "https"
            config["tls_config"] = dict(tls_config)
        if job.get("basic_auth") and basic_auth:
            config["basic_auth"] = dict(basic_auth)
        configs.append(config)
    return configs


class FilterModule:
    def filters(self):
        return {"prometheus_scrape_configs": prometheus_scrape_configs}
