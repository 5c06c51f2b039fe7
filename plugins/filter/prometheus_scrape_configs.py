# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus scrape_configs generated from inventory groups."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

_JOB = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")


def _target(address, port):
    address = str(address)
    host = "[%s]" % address if ":" in address and not address.startswith("[") else address
    return "%s:%s" % (host, port)


def prometheus_scrape_configs(jobs, groups, hostvars, address_var="monitoring_agents_listen_address"):
    """One scrape config per job whose inventory group has hosts; each target carries a `host` label.

    Each job: job (name), group (inventory group), port, and optional scheme and metrics_path. A host's
    address is its ``address_var`` host variable, else ``ansible_host``, else its inventory name.
    """
    if not isinstance(jobs, list):
        raise AnsibleFilterError("prometheus_scrape_configs: expected a list of jobs")
    configs = []
    for index, job in enumerate(jobs):
        for key in ("job", "group", "port"):
            if not isinstance(job, dict) or key not in job:
                raise AnsibleFilterError("prometheus_scrape_configs: jobs[%d] needs job, group and port" % index)
        if not _JOB.match(str(job["job"])):
            raise AnsibleFilterError(
                "prometheus_scrape_configs: jobs[%d] job name %r is not valid" % (index, job["job"])
            )
        members = sorted(groups.get(job["group"], []))
        if not members:
            continue
        static_configs = []
        for name in members:
            host = hostvars.get(name, {})
            address = host.get(address_var) or host.get("ansible_host") or name
            static_configs.append({"targets": [_target(address, job["port"])], "labels": {"host": name}})
        config = {"job_name": str(job["job"]), "static_configs": static_configs}
        if job.get("scheme"):
            config["scheme"] = job["scheme"]
        if job.get("metrics_path"):
            config["metrics_path"] = job["metrics_path"]
        configs.append(config)
    return configs


class FilterModule:
    def filters(self):
        return {"prometheus_scrape_configs": prometheus_scrape_configs}
