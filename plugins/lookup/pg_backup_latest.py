# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: pg_backup_latest
short_description: The newest good PostgreSQL backup of a database, its age (the RPO) and where its copies are
version_added: 0.1.0
description:
  - For each database named in the terms, returns the newest backup that M(locksmith.ops.pg_backup) completed at
    the given destinations and that passes the same checks M(locksmith.ops.pg_backup_info) runs (manifest present,
    sizes and stored checksums as the manifest says, and with O(verify_checksums) every artefact's SHA-256).
  - Runs on the controller (or the AWX execution node), so a play can gate on the backup state before it touches
    a host, for example refuse a schema migration when the newest backup is more than an hour old.
  - A database without any good backup at the destinations is an error, never an empty answer, so a gate fails
    closed. Use the lookup's C(errors=ignore) to get nothing instead.
  - Read-only; needs no encryption key and no database connection. Credentials in O(destinations) never appear in
    results or error messages.
options:
  _terms:
    description:
      - Database names (backup labels), or C(all-databases) for backups made with
        O(locksmith.ops.pg_backup#module:all_databases).
    type: list
    elements: str
    required: true
  verify_checksums:
    description:
      - Re-read every artefact of every backup found and compare its SHA-256 with the manifest.
      - When omitted, V(true) for V(local) destinations and V(false) for V(s3), whose copies are then checked
        against their stored size and the checksum S3 kept at upload.
    type: bool
extends_documentation_fragment:
  - locksmith.ops.storage
notes:
  - V(local) destinations are directories on the machine the lookup runs on (the controller), not on a managed
    host; for a directory on a database host run M(locksmith.ops.pg_backup_info) there.
  - O(destinations[].retention) is accepted and ignored, so one variable can feed both M(locksmith.ops.pg_backup)
    and this lookup.
seealso:
  - module: locksmith.ops.pg_backup_info
  - module: locksmith.ops.pg_backup
"""

EXAMPLES = r"""
- name: Refuse the migration unless app has a good backup in both regions younger than an hour
  ansible.builtin.assert:
    that:
      - latest.age_seconds < 3600
      - latest.copies | length == 2
    fail_msg: "newest good backup of app: {{ latest.id }}, {{ latest.age_seconds }} s old, copies {{ latest.copies }}"
  vars:
    latest: "{{ lookup('locksmith.ops.pg_backup_latest', 'app', destinations=backup_destinations) }}"

- name: Pin the backup a recovery will use, so that one finished during the window is not picked instead
  ansible.builtin.set_fact:
    crm_backup_id: "{{ lookup('locksmith.ops.pg_backup_latest', 'crm', destinations=[s3_eu]).id }}"
  run_once: true
  vars:
    s3_eu:
      type: s3
      bucket: acme-backups-eu-west-1
      region: eu-west-1
      prefix: postgresql

- name: Show the RPO of every database the site backs up
  ansible.builtin.debug:
    msg: "{{ item.database }}: {{ item.age_seconds }} s ({{ item.id }})"
  loop: "{{ query('locksmith.ops.pg_backup_latest', 'app', 'crm', destinations=backup_destinations) }}"
"""

RETURN = r"""
_raw:
  description: One dict per term, in the order of the terms.
  type: list
  elements: dict
  contains:
    database:
      description: The term (backup label).
      type: str
      sample: app
    id:
      description: Backup id (UTC start time plus a random tag).
      type: str
      sample: 20261127T020000Z-1a2b
    ended_at:
      description: When the backup ended, ISO 8601 UTC.
      type: str
      sample: "2026-11-27T02:00:41Z"
    ended_epoch:
      description: When the backup ended, Unix time.
      type: float
    age_seconds:
      description:
        - Seconds since the backup ended, which is the current RPO of the database; never negative.
        - A backup that ended more than 300 seconds in the future (taken while a clock was ahead) is not returned,
          with a warning, so it cannot pass a gate such as C(age_seconds < 3600).
      type: int
      sample: 1840
    destination:
      description: The destination the returned copy was read from (the first holding the newest backup).
      type: str
      sample: destinations[1] s3://acme-backups-eu-west-1/pg
    location:
      description: Where that copy's files are.
      type: str
      sample: s3://acme-backups-eu-west-1/pg/app/20261127T020000Z-1a2b/
    copies:
      description: Every destination that holds a good copy of this backup.
      type: list
      elements: str
    checksums_verified:
      description: Whether the returned copy's artefacts were re-read and their SHA-256 compared with the manifest.
      type: bool
"""

import time  # noqa: E402

from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: E402
from ansible.module_utils.common.parameters import remove_values  # noqa: E402
from ansible.module_utils.common.text.converters import to_native  # noqa: E402
from ansible.module_utils.parsing.convert_bool import boolean  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402
from ansible.utils.display import Display  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils import _backup_flows  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._storage import (  # noqa: E402
    build_destinations,
    s3,
    storage_argument_spec,
    validate_label,
)

display = Display()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        # Plugin options convert booleans loosely ('maybe' reads as false): a safety switch is read strictly.
        if "verify_checksums" in kwargs:
            try:
                boolean(kwargs["verify_checksums"], strict=True)
            except TypeError as err:
                raise AnsibleLookupError(
                    "verify_checksums %r is not a boolean; use true or false" % (kwargs["verify_checksums"],)
                ) from err
        self.set_options(var_options=variables, direct=kwargs)
        if not terms:
            raise AnsibleLookupError(
                "no database given; name at least one, e.g. lookup('locksmith.ops.pg_backup_latest', 'app', ...)"
            )
        # The module's own argument spec, so types, defaults and required options are checked exactly as there.
        spec = storage_argument_spec()
        checked = ArgumentSpecValidator(spec).validate({"destinations": self.get_option("destinations")})
        if checked.error_messages:
            raise AnsibleLookupError(remove_values(" ".join(checked.error_messages), checked._no_log_values))
        destinations_options = checked.validated_parameters["destinations"]
        if any(d["type"] == "s3" for d in destinations_options) and not s3.HAS_BOTO3:
            raise AnsibleLookupError("s3 destinations need boto3 and botocore on the controller: pip install boto3")
        warnings = []
        try:
            labels = [validate_label(term) for term in terms]
            destinations = build_destinations(destinations_options, warnings)
            verify = self.get_option("verify_checksums")
            found = _backup_flows.list_backups_info(destinations, labels, verify, time.time(), warnings)
        except LocksmithError as err:
            raise AnsibleLookupError(remove_values(to_native(err.msg), checked._no_log_values)) from err
        finally:
            for warning in warnings:
                display.warning(remove_values(warning, checked._no_log_values))
        return [self._latest(label, found, destinations) for label in labels]

    @staticmethod
    def _latest(label, found, destinations):
        newest = found["newest_good"].get(label)
        if newest is None:
            seen = [b for b in found["backups"] if b["label"] == label]
            raise AnsibleLookupError(
                "no good backup of '%s' at %s (%d found, none complete and valid); run locksmith.ops.pg_backup, "
                "or check the database name and the destinations"
                % (label, ", ".join(d.name for d in destinations), len(seen))
            )
        good = [b for b in found["backups"] if b["label"] == label and b["id"] == newest["id"] and b["valid"]]
        returned = next(b for b in good if b["destination"] == newest["destination"])
        return dict(
            database=label,
            copies=[b["destination"] for b in good],
            checksums_verified=returned["checksums_verified"],
            **newest,
        )
