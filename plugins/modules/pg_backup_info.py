#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup_info
short_description: List PostgreSQL backups at each destination, check them, and report the RPO
version_added: 0.1.0
description:
  - Reads the backups that M(locksmith.ops.pg_backup) wrote at each destination and, for each, says
    whether it is complete (its manifest exists) and checksum-valid.
  - Checks sizes and, for S3, the checksum S3 stored at upload against the manifest. With
    O(verify_checksums), it also re-reads every artefact and compares its SHA-256 with the manifest.
  - Reports the newest good backup of each database and its age, which is the current RPO. A backup that ended
    more than 300 seconds in the future (taken while a clock was ahead) is listed but never the newest good one,
    with a warning, as M(locksmith.ops.pg_backup) does not count it as recent; so an age is never negative.
  - Read-only. It never writes, prunes or decrypts anything; it needs no encryption key and no
    database connection.
options:
  database:
    description:
      - Only report backups of this database (use C(all-databases) for O(locksmith.ops.pg_backup#module:all_databases)
        backups). All labels found at each destination when omitted.
    type: str
    version_added: 0.1.0
  verify_checksums:
    description:
      - Re-read every artefact and compare its SHA-256 with the manifest.
      - When omitted, V(true) for V(local) destinations and V(false) for V(s3), where re-reading costs
        transfer; S3 copies are then checked against their stored size and checksum only.
    type: bool
    version_added: 0.1.0
extends_documentation_fragment:
  - locksmith.ops.attributes
  - locksmith.ops.attributes.INFO_MODULE
  - locksmith.ops.storage
author:
  - locksmith.ops contributors (@locksmith-ops)
"""

EXAMPLES = r"""
- name: List the backups of app and their state
  locksmith.ops.pg_backup_info:
    database: app
    destinations:
      - type: local
        path: /var/backups/postgresql
  register: backups

- name: Fail when the newest good backup is older than a day
  ansible.builtin.assert:
    that: backups.rpo_seconds.app is defined and backups.rpo_seconds.app < 86400
    fail_msg: "newest good backup of app is {{ backups.rpo_seconds.app | default('missing') }} s old"

- name: Re-read every S3 copy too (full checksum pass)
  locksmith.ops.pg_backup_info:
    verify_checksums: true
    destinations:
      - type: s3
        bucket: acme-backups-eu-west-1
        region: eu-west-1
        prefix: postgresql
"""

RETURN = r"""
backups:
  description: Every backup found, oldest first per destination and database, with its check.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 20261127T020000Z-1a2b
      label: app
      destination: destinations[0] local:/var/backups/postgresql
      location: /var/backups/postgresql/app/20261127T020000Z-1a2b
      complete: true
      valid: true
      checksums_verified: true
      restore_list_checked: false
      errors: []
      manifest: {id: 20261127T020000Z-1a2b, database: app, size_bytes: 259153220, format: custom}
newest_good:
  description:
    - Per database label, the newest valid backup of the whole database across all destinations.
    - A backup taken with schema or table filters (a one-table export) is listed in RV(backups) but is never the
      newest good one, so RV(rpo_seconds) is the age of a backup that can restore the database.
  returned: always
  type: dict
  sample:
    app:
      id: 20261127T020000Z-1a2b
      destination: destinations[0] local:/var/backups/postgresql
      location: /var/backups/postgresql/app/20261127T020000Z-1a2b
      ended_at: "2026-11-27T02:00:09Z"
      ended_epoch: 1795744809.0
      age_seconds: 3600
rpo_seconds:
  description: Per database label, the age in seconds of the newest good backup (the current RPO).
  returned: always
  type: dict
  sample: {app: 3600}
"""

import time  # noqa: E402 - ansible modules document before they import

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils import _backup_flows  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._paths import refuse_nul_in_paths  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._storage import (  # noqa: E402
    build_destinations,
    s3,
    storage_argument_spec,
    validate_label,
)


def argument_spec():
    spec = storage_argument_spec()
    spec.update(
        database=dict(type="str"),
        verify_checksums=dict(type="bool"),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    refuse_nul_in_paths(module)
    params = module.params
    if any(d.get("type") == "s3" for d in params["destinations"]) and not s3.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"))
    warnings = []
    try:
        labels = [validate_label(params["database"])] if params["database"] else None
        destinations = build_destinations(params["destinations"], warnings)
        result = _backup_flows.list_backups_info(
            destinations, labels, params["verify_checksums"], time.time(), warnings
        )
    except LocksmithError as err:
        for warning in warnings:
            module.warn(warning)
        module.fail_json(msg=str(err), **err.details)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
