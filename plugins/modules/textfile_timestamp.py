#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: textfile_timestamp
short_description: Publish the time of this run for Prometheus through node_exporter's textfile collector
version_added: 0.1.0
description:
  - Writes one C(*_timestamp_seconds) gauge whose value is the time of this run, for example
    C(locksmith_hardening_last_run_timestamp_seconds{role="ssh_hardening"}) at the end of a role's converge, into
    C(locksmith_<producer>_<subject>.prom) in node_exporter's textfile directory (docs/metrics.md), so that an alert
    or a dashboard can tell when the job last ran.
  - The file is written whole under a temporary name that node_exporter does not read, then renamed, so a scrape
    never sees half of it.
  - The value moves on every run by design, so a run that only moves it reports no change; a new file, another
    metric name, other labels or help text do. A second run is therefore idempotent, as a converge's last task must be.
  - In check mode nothing is written, the directory is not created, and C(changed) says whether a real run would
    publish a new series. With C(--diff), a change shows the file before and after.
author: locksmith.ops contributors (@locksmith-ops)
options:
  metrics_dir:
    description:
      - node_exporter's textfile collector directory. Created (mode 0755, owner root, group left alone) when missing,
        so that a role that runs before the monitoring agents are installed still publishes.
    type: path
    default: /var/lib/prometheus/node-exporter
    version_added: 0.1.0
  name:
    description:
      - The metric name, as docs/metrics.md lists it; it must start with C(locksmith_) and end with
        C(_timestamp_seconds) (Prometheus names a Unix time so).
    type: str
    required: true
    version_added: 0.1.0
  help:
    description: The metric's HELP text.
    type: str
    required: true
    version_added: 0.1.0
  labels:
    description: The series' labels; names are lower-case letters, digits and C(_), values any text.
    type: dict
    default: {}
    version_added: 0.1.0
  producer:
    description: First part of the file name, C(locksmith_<producer>_<subject>.prom); lower-case letters, digits, C(_).
    type: str
    required: true
    version_added: 0.1.0
  subject:
    description:
      - Second part of the file name, so that two jobs of one producer never write the same file (for example the
        role name). Names with other characters are made safe and kept distinct with a short hash.
    type: str
    version_added: 0.1.0
extends_documentation_fragment:
  - locksmith.ops.attributes
  - locksmith.ops.attributes.ALL
notes:
  - A series that two files repeat with the same labels is served by node_exporter from one of them only, without a
    scrape error; give each job its own O(subject) or labels.
seealso:
  - name: Metrics contract
    description: docs/metrics.md in the collection, the names every producer and alert rule use.
    link: https://github.com/locksmith-ops/locksmith.ops/blob/main/docs/metrics.md
"""

EXAMPLES = r"""
- name: Publish the end of this converge of the role
  locksmith.ops.textfile_timestamp:
    metrics_dir: /var/lib/prometheus/node-exporter
    name: locksmith_hardening_last_run_timestamp_seconds
    help: Newest converge of a hardening role
    labels:
      role: ssh_hardening
    producer: hardening
    subject: ssh_hardening
  when: not ansible_check_mode
"""

RETURN = r"""
metrics_file:
  description: The metrics file written (or that would be written in check mode).
  returned: always
  type: str
  sample: /var/lib/prometheus/node-exporter/locksmith_hardening_ssh_hardening.prom
timestamp:
  description: The value published, a Unix time in whole seconds.
  returned: always
  type: int
  sample: 1796000000
"""

import os  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._atomic import read_text  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._paths import refuse_nul_in_paths  # noqa: E402

NAME = re.compile(r"^locksmith_[a-z0-9_]+_timestamp_seconds\Z")
LABEL = re.compile(r"^[a-z_][a-z0-9_]*\Z")


def argument_spec():
    return dict(
        metrics_dir=dict(type="path", default="/var/lib/prometheus/node-exporter"),
        name=dict(type="str", required=True),
        help=dict(type="str", required=True),
        labels=dict(type="dict", default={}),
        producer=dict(type="str", required=True),
        subject=dict(type="str"),
    )


def check_inputs(params):
    """What the spec cannot say; fail_json messages naming the option."""
    if not NAME.match(params["name"]):
        return (
            "name '%s' is not a locksmith timestamp metric; give a name from docs/metrics.md that starts with "
            "locksmith_ and ends with _timestamp_seconds" % params["name"]
        )
    if not params["help"].strip() or "\n" in params["help"]:
        return "help must be one line of text (the metric's HELP)"
    bad = [str(k) for k in params["labels"] if not LABEL.match(str(k)) or str(k).startswith("__")]
    if bad:
        return "labels %s: a label name is lower-case letters, digits and _, not starting with __" % ", ".join(bad)
    return None


def series(params):
    """Everything in the file but the value: what decides 'changed'."""
    labels = {str(k): str(v) for k, v in params["labels"].items()}
    return params["name"], tuple(sorted(labels.items())), params["help"].strip()


def would_change(text, name, labels, help_text):
    """Whether the file's ``text`` (None: missing) differs in anything but the value: another series, other help
    or format. Rendered again with the value it holds, an unchanged file gives the same bytes; the value itself
    moves on every run by design and is not a change.
    """
    if text is None:
        return True
    try:
        held = _metrics.parse(text)
    except _metrics.MetricsError:
        return True
    if set(held) != {(name, labels)}:
        return True
    same = _metrics.render([_metrics.Family(name, help_text).add(held[(name, labels)], **dict(labels))])
    return text != same


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    refuse_nul_in_paths(module)
    params = module.params
    problem = check_inputs(params)
    if problem:
        module.fail_json(msg=problem)
    name, labels, help_text = series(params)
    now = int(time.time())
    directory = params["metrics_dir"]
    try:
        path = os.path.join(directory, _metrics.textfile_name(params["producer"], params["subject"]))
        before = read_text(path)
        changed = would_change(before, name, labels, help_text)
        family = _metrics.Family(name, help_text).add(now, **dict(labels))
        diff = {"before": before or "", "after": _metrics.render([family])} if changed else None
        if not module.check_mode:
            if not os.path.isdir(directory):
                try:
                    os.makedirs(directory, mode=0o755)
                except OSError as err:
                    module.fail_json(
                        msg="metrics_dir '%s' cannot be created (%s); create it or give another metrics_dir"
                        % (directory, err.strerror)
                    )
            path = _metrics.write_textfile(directory, params["producer"], params["subject"], [family])[1]
    except LocksmithError as err:
        module.fail_json(msg=str(err), **err.details)
    # Not "path": exit_json would add the file's owner and mode to the result.
    result = {"changed": changed, "metrics_file": path, "timestamp": now}
    if diff and module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
