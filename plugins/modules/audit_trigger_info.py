#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_trigger_info
short_description: Read the audit schema of a PostgreSQL database, its partitions and the audited tables
version_added: 0.1.0
description:
  - Reports the audit schema managed by M(locksmith.ops.audit_trigger) in one database, its version, the log's
    size and partitions with their ranges, and every table carrying audit triggers with the triggers' options.
  - Read-only; it never changes anything and never reports changed.
author: locksmith.ops contributors (@locksmith-ops)
options:
  database:
    description: Database holding the audit schema.
    type: str
    required: true
    version_added: 0.1.0
  audit_schema:
    description: Name of the audit schema.
    type: str
    default: audit
    version_added: 0.1.0
extends_documentation_fragment:
  - locksmith.ops.attributes
  - locksmith.ops.attributes.INFO_MODULE
  - locksmith.ops.postgres
seealso:
  - module: locksmith.ops.audit_trigger
"""

EXAMPLES = r"""
- name: Read the audit state of the shop database
  locksmith.ops.audit_trigger_info:
    database: shop
  register: shop_audit

- name: Fail when the users table is not audited
  ansible.builtin.assert:
    that: "'public.users' in shop_audit.tables"
    fail_msg: "public.users has no audit triggers; run locksmith.ops.audit_trigger for it"
"""

RETURN = r"""
exists:
  description: Whether the audit schema exists.
  returned: always
  type: bool
  sample: true
schema_version:
  description: Version of the audit schema; 0 when it does not exist.
  returned: always
  type: int
  sample: 1
log_size_bytes:
  description: On-disk size of the log, all partitions and their indexes.
  returned: always
  type: int
  sample: 1220608
partitions:
  description: Partitions of the log by name (the default partition first, without a range), with their ranges.
  returned: always
  type: list
  elements: dict
  sample:
    - name: log_p202611
      bound: "FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')"
      range_from: "2026-11-01T00:00:00+00:00"
      range_to: "2026-12-01T00:00:00+00:00"
      size_bytes: 81920
      rows_estimate: 1200
grants:
  description: Privileges on the schema, the log and C(schema_version) held by roles other than the owner.
  returned: always
  type: list
  elements: dict
  sample: [{object: log, grantee: auditor, privilege: SELECT}]
tables:
  description:
    - Each audited table and its audit triggers with their options.
    - C(enabled) is false when the trigger does not fire in ordinary sessions (disabled, or enabled for replica
      sessions only) or, for a row trigger of a partitioned table, when its clone is switched off on a partition.
    - A statement-level trigger has C(query_text), false when it logs no statement text (a C(TRUNCATE) of a table
      audited with excluded columns).
  returned: always
  type: dict
  sample:
    public.users:
      locksmith_audit_insert:
        operation: insert
        level: row
        function: audit.log_row
        diff_only: false
        app_user_setting: app.user_id
        primary_key: [id]
        exclude_columns: [password_hash]
        enabled: true
      locksmith_audit_truncate:
        operation: truncate
        level: statement
        function: audit.log_statement
        app_user_setting: app.user_id
        query_text: false
        enabled: true
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402 - documented first

from ansible_collections.locksmith.ops.plugins.module_utils import _audit_catalog, _postgres  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._paths import refuse_nul_in_paths  # noqa: E402


def argument_spec():
    spec = _postgres.postgres_argument_spec()
    spec.update(database=dict(type="str", required=True), audit_schema=dict(type="str", default="audit"))
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    refuse_nul_in_paths(module)
    params = module.params
    if not _postgres.HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=str(_postgres.PSYCOPG2_IMPORT_ERROR))
    conn = None
    try:
        _postgres.validate_identifier(params["audit_schema"], "audit_schema")
        conn = _postgres.connect(params, params["database"])
        conn.set_session(readonly=True)
        with _audit_catalog.server_errors(conn, params["database"], "reading the audit state"):
            schema = _audit_catalog.read_schema(conn, params["audit_schema"])
            tables = _audit_catalog.read_triggers(conn) if schema["exists"] else {}
        conn.rollback()
    except LocksmithError as err:
        module.fail_json(msg=str(err), **err.details)
    finally:
        if conn is not None:
            conn.close()
    module.exit_json(
        changed=False,
        exists=schema["exists"],
        schema_version=schema["version"],
        log_size_bytes=schema["log_size_bytes"],
        partitions=schema["partitions"],
        grants=[dict(object=o, grantee=g, privilege=p) for o, g, p in schema["grants"]],
        tables={
            name: {trig: _audit_catalog.describe_trigger(spec) for trig, spec in triggers.items()}
            for name, triggers in tables.items()
            if any(spec["function"].split(".")[0] == params["audit_schema"] for spec in triggers.values())
        },
    )


if __name__ == "__main__":
    main()
