#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: posture_report
short_description: Judge measured figures against their targets and write the posture report (JSON, Markdown, HTML)
version_added: 0.1.0
description:
  - Takes the site's promises, each a measured figure with its target (the hardening index, the newest
    backup's age, the drill's RTO, the time an alert took to arrive...), decides for each whether the target
    is met, and writes the report in three forms into O(dest) - C(posture.json) for machines,
    C(posture.md) for tickets and READMEs, and C(posture.html), one self-contained page with a small chart
    per promise (no script, no external file).
  - A promise without a measured value counts as not met - an unmeasured promise is not a kept one.
  - The files are replaced atomically and only when a figure, a target or a result changed, or when one of them is
    missing or not what this run would write (cut short, edited), so a second run on the same figures reports
    no change. When one of them cannot be written, those of the last report not yet replaced are removed, so that
    the last run's verdict does not stand beside this run's figures.
  - Runs where the report should live, usually the controller (C(delegate_to=localhost)).
options:
  promises:
    description: The promises, in the order the report lists them. At least one; an empty list fails.
    type: list
    elements: dict
    required: true
    version_added: 0.1.0
    suboptions:
      name:
        description: A short machine name, unique in the report, e.g. V(rpo) or V(lynis_index).
        type: str
        required: true
        version_added: 0.1.0
      title:
        description: What is promised, in words, e.g. V(Newest good backup age (RPO)).
        type: str
        required: true
        version_added: 0.1.0
      value:
        description:
          - The measured figure, a number. Omit it (or give null) when it could not be measured; the
            promise then fails.
        type: raw
        version_added: 0.1.0
      target:
        description: The seed's target the figure is compared with.
        type: float
        required: true
        version_added: 0.1.0
      compare:
        description: How the figure must relate to the target - V(le) for "at most" (ages, times), V(ge) for "at least".
        type: str
        choices: [le, lt, ge, gt, eq]
        default: le
        version_added: 0.1.0
      unit:
        description: Unit shown after the figures, e.g. V(s) or V(%).
        type: str
        default: ""
        version_added: 0.1.0
      baseline:
        description: The figure before the change, shown beside the measured one (the Lynis index before hardening).
        type: float
        version_added: 0.1.0
      evidence:
        description: Where the figure can be checked, a path or a URL (a drill report, a log, a metrics file).
        type: str
        default: ""
        version_added: 0.1.0
      detail:
        description: One line of context shown under the title.
        type: str
        default: ""
        version_added: 0.1.0
  dest:
    description: Directory the three files are written to. It is created (mode 0755) when missing.
    type: path
    required: true
    version_added: 0.1.0
  title:
    description: Heading of the report.
    type: str
    default: locksmith.ops posture report
    version_added: 0.1.0
  fail_on_miss:
    description:
      - Fail, after writing the report, when a promise is missed or not measured, so a scheduled job turns red.
      - With V(false) the result's RV(passed) says it instead.
    type: bool
    default: true
    version_added: 0.1.0
extends_documentation_fragment:
  - locksmith.ops.attributes
  - locksmith.ops.attributes.ALL
notes:
  - The report holds figures and paths only. Never pass a secret in O(promises).
author:
  - locksmith.ops contributors (@locksmith-ops)
"""

EXAMPLES = r"""
- name: Write the posture report on the controller and fail when a target is missed
  locksmith.ops.posture_report:
    dest: "{{ playbook_dir }}/../posture"
    promises:
      - name: lynis_index
        title: Lynis hardening index of db1
        baseline: "{{ lynis_before.hardening_index }}"
        value: "{{ lynis_after.hardening_index }}"
        target: 70
        compare: ge
        evidence: /var/lib/locksmith/lynis/after/lynis-report.dat on db1
      - name: rpo
        title: Newest good backup age (RPO) of app
        value: "{{ backups.rpo_seconds.app | default(omit) }}"
        unit: s
        target: 86400
        evidence: s3://acme-backups-eu-west-1/db1/app
  delegate_to: localhost
  run_once: true

- name: Only say whether the site keeps its promises (no failure), for a dashboard job
  locksmith.ops.posture_report:
    dest: /srv/reports/posture
    fail_on_miss: false
    promises: "{{ site_promises }}"
  register: posture

- name: Show the result
  ansible.builtin.debug:
    msg: "{{ posture.summary.met }} of {{ posture.summary.total }} promises met"
"""

RETURN = r"""
passed:
  description: Whether every promise met its target.
  returned: always
  type: bool
  sample: false
summary:
  description: Counts of promises by result.
  returned: always
  type: dict
  sample: {total: 6, met: 5, missed: 1, unmeasured: 0}
promises:
  description: Each promise as judged, with C(status) V(met), V(missed) or V(unmeasured).
  returned: always
  type: list
  elements: dict
  sample:
    - name: rpo
      title: Newest good backup age (RPO) of app
      value: 3600.0
      unit: s
      target: 86400.0
      compare: le
      baseline: null
      status: met
      evidence: s3://acme-backups-eu-west-1/db1/app
      detail: ""
files:
  description: The report files written (or that would be written in check mode).
  returned: always
  type: dict
  sample: {json: /srv/reports/posture/posture.json, markdown: /srv/reports/posture/posture.md,
           html: /srv/reports/posture/posture.html}
"""

import json  # noqa: E402 - ansible modules document before they import
import os  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils import _posture  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._atomic import read_text, write_atomic  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._paths import refuse_nul_in_paths  # noqa: E402

FILES = {"json": "posture.json", "markdown": "posture.md", "html": "posture.html"}


def argument_spec():
    return dict(
        promises=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(
                name=dict(type="str", required=True),
                title=dict(type="str", required=True),
                value=dict(type="raw"),
                target=dict(type="float", required=True),
                compare=dict(type="str", choices=sorted(_posture.COMPARISONS), default="le"),
                unit=dict(type="str", default=""),
                baseline=dict(type="float"),
                evidence=dict(type="str", default=""),
                detail=dict(type="str", default=""),
            ),
        ),
        dest=dict(type="path", required=True),
        title=dict(type="str", default="locksmith.ops posture report"),
        fail_on_miss=dict(type="bool", default=True),
    )


def previous_report(path):
    """The report already at ``path``, or None when there is none or it cannot be read as ours."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def stamp(now):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def render(title, evaluated, generated_at):
    return {
        "json": _posture.render_json(title, evaluated, generated_at),
        "markdown": _posture.render_markdown(title, evaluated, generated_at),
        "html": _posture.render_html(title, evaluated, generated_at),
    }


def plan(params, now):
    """What to write: (changed, files, texts, evaluated, before_markdown)."""
    evaluated = _posture.evaluate(params["promises"])
    dest = params["dest"]
    files = dict((kind, os.path.join(dest, name)) for kind, name in FILES.items())
    before = previous_report(files["json"])
    same = (
        before is not None
        and before.get("title") == params["title"]
        and before.get("promises") == evaluated
        and isinstance(before.get("generated_at"), str)
    )
    texts = render(params["title"], evaluated, before["generated_at"] if same else stamp(now))
    # Same figures, but a file that is missing, cut short or edited (or rendered by an older release) is rewritten.
    unchanged = same and all(read_text(files[kind]) == texts[kind] for kind in files)
    if same and not unchanged:
        texts = render(params["title"], evaluated, stamp(now))
    return not unchanged, files, texts, evaluated, read_text(files["markdown"]) or ""


def write(dest, files, texts):
    if not os.path.isdir(dest):
        try:
            os.makedirs(dest, mode=0o755)
        except OSError as err:
            raise LocksmithError(
                "cannot create dest '%s' (%s); create it or choose a writable directory" % (dest, err.strerror)
            ) from err
    # JSON last: it is what the next run compares with, so a failed write is redone next time.
    order = ("markdown", "html", "json")
    for index, kind in enumerate(order):
        try:
            write_atomic(files[kind], texts[kind], mode=0o644)
        except LocksmithError:
            # The files not replaced hold the last run's verdict; beside this run's they would read as current.
            for stale in order[index:]:
                try:
                    os.unlink(files[stale])
                except OSError:
                    pass
            raise


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    refuse_nul_in_paths(module)
    params = module.params
    try:
        changed, files, texts, evaluated, before_markdown = plan(params, time.time())
        if changed and not module.check_mode:
            write(params["dest"], files, texts)
    except LocksmithError as err:
        module.fail_json(msg=str(err), **err.details)
    summary = _posture.summarize(evaluated)
    result = dict(
        changed=changed,
        passed=summary["met"] == summary["total"],
        summary=summary,
        promises=evaluated,
        files=files,
    )
    if module._diff and changed:
        result["diff"] = dict(before=before_markdown, after=texts["markdown"], after_header=files["markdown"])
    if params["fail_on_miss"] and not result["passed"]:
        failing = ["%s (%s)" % (p["name"], p["status"]) for p in evaluated if p["status"] != "met"]
        module.fail_json(
            msg="%d of %d promises not kept: %s; the report in %s says by how much"
            % (len(failing), summary["total"], ", ".join(failing), params["dest"]),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
