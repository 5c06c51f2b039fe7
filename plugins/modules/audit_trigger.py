#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_trigger
short_description: Row- or statement-level audit logging of PostgreSQL tables into a partitioned, versioned log
version_added: 0.1.0
description:
  - Manages the audit triggers of a list of tables (O(tables)) or of every table of a schema (O(schema)), and the
    one audit schema they write to (O(audit_schema)). Tables not named are never touched, and the audited tables'
    data is never changed.
  - The audit schema is created once and versioned (C(<audit_schema>.schema_version)); a newer collection upgrades
    it with numbered migrations, each applied once. It holds the log table, partitioned by month on
    C(logged_at) with a default partition so an insert never fails, a BRIN index on C(logged_at) and a btree
    index on C(schema_name), C(table_name), C(record_key), the trigger functions, and the function
    C(maintain) which creates partitions ahead and drops partitions older than O(retention_days).
  - Each log entry holds the transaction id, the clock and statement timestamps, the operation, schema, table,
    primary key (C(record_key)), old and new row as JSONB, the database role, C(application_name), the client
    address and the application's user id read from the session setting O(app_user_setting).
  - The trigger functions are C(SECURITY DEFINER) with an empty C(search_path) and write the log on behalf of
    the application, which needs (and gets) no privilege on the audit schema. Only the owner of the audit
    schema and O(auditor_role) (read-only) have any privilege on it; every other grant, PUBLIC's included,
    is revoked.
  - Every change runs in one transaction, rolled back in check mode, so check mode and C(--diff) show exactly
    the triggers, partitions and grants a real run creates, replaces or drops.
author: locksmith.ops contributors (@locksmith-ops)
options:
  database:
    description: Database holding the tables to audit; the audit schema is created in it.
    type: str
    required: true
    version_added: 0.1.0
  tables:
    description:
      - Tables to audit, as C(table) (schema C(public)) or C(schema.table). A name is taken as written (case
        included); one with other characters than letters, digits, C(_) and C($) (a space, a hyphen, a dot) is
        written in double quotes as in SQL, C(shop."Order Items"), with C("") for a quote in it.
      - With O(state=present) every table must exist; with O(state=absent) missing tables are skipped.
      - A partition is refused; list its partitioned table, whose audit covers every partition. PostgreSQL clones
        the row triggers onto the partitions; the statement-level ones (C(TRUNCATE), O(capture=statement)) are
        created on each partition as C(locksmith_audit_partition_<operation>), so run again after adding
        partitions. A partition detached since loses them on the next run.
    type: list
    elements: str
    version_added: 0.1.0
  schema:
    description:
      - Audit every table (and partitioned table) of this schema instead of a list; run again after adding
        tables. Partitions are audited through their parent, as with O(tables). With O(state=present) the schema
        must exist.
      - A name that needs quoting is written in double quotes, as in O(tables).
    type: str
    version_added: 0.1.0
  state:
    description:
      - V(present) creates the audit schema when missing and the triggers; V(absent) drops the triggers and
        keeps the log unless O(drop_log=true).
    type: str
    default: present
    choices: [present, absent]
    version_added: 0.1.0
  capture:
    description:
      - V(row) logs one entry per row with its old and new data. V(statement) logs one entry per statement with
        the statement text and no row data (cheap for bulk jobs).
      - C(TRUNCATE) is always logged per statement.
    type: str
    default: row
    choices: [row, statement]
    version_added: 0.1.0
  operations:
    description: Operations to log.
    type: list
    elements: str
    default: [insert, update, delete, truncate]
    choices: [insert, update, delete, truncate]
    version_added: 0.1.0
  exclude_columns:
    description:
      - Columns never stored in the log (password hashes, tokens). An C(UPDATE) that changes only these columns
        is not logged at all; the trigger's C(WHEN) clause skips it before the function runs.
      - Each name must be a column of at least one audited table, so a typo cannot leak the data.
      - An excluded primary key column is left out of C(record_key) too (with a warning). A C(TRUNCATE) of a table
        audited with excluded columns is logged without its statement text, which is the client's whole query
        string and may hold the excluded values.
      - A name that needs quoting is written in double quotes, as in O(tables), for example C('"first name"').
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  diff_only:
    description:
      - For C(UPDATE), store only the changed fields in C(old_data) and C(new_data); C(record_key) always holds
        the primary key. Needs O(capture=row).
    type: bool
    default: false
    version_added: 0.1.0
  audit_schema:
    description: Schema holding the log and the functions. Lower-case letters, digits and C(_).
    type: str
    default: audit
    version_added: 0.1.0
  app_user_setting:
    description:
      - Session setting holding the application's user id, set by the application with
        C(SET app.user_id = '42') or the function C(set_config). It is read with C(current_setting) and
        C(missing_ok), so an unset setting gives a null C(app_user_id), never an error.
    type: str
    default: app.user_id
    version_added: 0.1.0
  retention_days:
    description:
      - Drop log partitions wholly older than this many days (a partition is dropped once its last possible
        entry is older). Each drop is itself logged, with operation C(RETENTION). V(0) keeps everything.
        At most V(36500).
      - Applied on every run. Between runs, schedule the SQL function C(audit.maintain) with the retention in
        days and the months ahead as arguments, from a systemd timer or pg_cron.
      - Each completed C(maintain) run, the module's own included, records its time in the audit schema
        (C(<audit_schema>.retention_run), read with C(<audit_schema>.retention_status())); a run that fails records
        nothing. A run of the module with nothing to create or drop records its run and reports no change.
    type: int
    default: 90
    version_added: 0.1.0
  partitions_ahead:
    description: Monthly partitions kept ready beyond the current month, at most V(60).
    type: int
    default: 2
    version_added: 0.1.0
  auditor_role:
    description:
      - Role granted read-only access (C(USAGE) on the schema, C(SELECT) on the log). It must exist. A name that
        needs quoting is written in double quotes, as in O(tables).
      - Any other grant on the schema, the log or C(schema_version) is revoked, so when unset only the owner
        can read the log.
    type: str
    version_added: 0.1.0
  drop_log:
    description:
      - With O(state=absent), also drop the audit schema with its log. Refused while tables not listed here are
        still audited.
    type: bool
    default: false
    version_added: 0.1.0
  metrics_dir:
    description:
      - node_exporter textfile collector directory. When set, a real run writes C(locksmith_audit_<database>.prom)
        with C(locksmith_audit_log_bytes) and C(locksmith_audit_retention_last_run_timestamp_seconds), the end of the
        newest completed C(maintain) run as the audit schema recorded it (whoever ran it, this module, a timer or
        pg_cron), and O(retention_max_age_seconds) when set.
      - The file is refreshed on every run and does not count as a change. Between runs it is only as fresh as the
        last one. The role M(locksmith.ops.audit) does not set this option; it writes the same file with its own
        writer, on every converge and after every completed run of its retention timer.
    type: path
    version_added: 0.1.0
  retention_max_age_seconds:
    description:
      - With O(metrics_dir), published as C(locksmith_audit_retention_max_age_seconds), the age past which the newest
        retention run is overdue (alert C(AuditRetentionOverdue)). Twice the interval of the schedule that runs
        C(maintain) plus some slack, for example V(176400) (two days and an hour) for a daily timer. Unset, no
        target is published and nothing can tell a retention that stopped.
    type: int
    version_added: 0.1.0
extends_documentation_fragment:
  - locksmith.ops.attributes
  - locksmith.ops.attributes.ALL
  - locksmith.ops.postgres
notes:
  - The owner of an audited table can still drop or disable its triggers; the next run reports that as a change
    and restores them. Keep application roles from owning the tables if that matters.
  - The trigger functions run as C(locksmith_audit_writer), a role this module creates (no login, no attributes) that
    may only insert into the log. Code a table owner smuggles into the trigger (a cast to json on a type they own,
    which C(to_jsonb) calls) therefore runs with that role's rights, not the module user's; an event trigger keeps
    it from dropping or changing the functions. The module's login needs to be a superuser for the event trigger
    (without one it is skipped) and CREATEROLE at least for the role.
  - Row triggers fire only for rows of the table they are on. The rows of an inheritance child (C(INHERITS), not a
    partition) are logged only when the child is audited too, even when written through the parent; the module
    warns about such children.
  - Trigger changes take a short C(SHARE ROW EXCLUSIVE) lock on each table; the module waits at most 30 seconds
    for it and then fails with nothing changed.
seealso:
  - module: locksmith.ops.audit_trigger_info
"""

EXAMPLES = r"""
- name: Audit the users and orders tables
  locksmith.ops.audit_trigger:
    database: shop
    tables: [users, sales.orders]
    exclude_columns: [password_hash]

- name: Audit every table of a schema, updates as diffs, read access for the auditor role
  locksmith.ops.audit_trigger:
    login_host: db1.example.com
    login_user: postgres
    login_password: "{{ lookup('community.hashi_vault.vault_kv2_get', 'pg/admin').secret.password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/db-ca.pem
    database: shop
    schema: public
    operations: [insert, update, delete, truncate]
    diff_only: true
    exclude_columns: [password_hash, api_token]
    app_user_setting: app.user_id
    retention_days: 365
    auditor_role: auditor
    metrics_dir: /var/lib/prometheus/node-exporter

- name: Show what would change, without changing it
  locksmith.ops.audit_trigger:
    database: shop
    tables: [users]
  check_mode: true
  diff: true
  register: audit_plan

- name: Stop auditing a table; its history stays in the log
  locksmith.ops.audit_trigger:
    database: shop
    tables: [sales.orders]
    state: absent
"""

RETURN = r"""
trigger:
  description: The audit state after the run (predicted in check mode).
  returned: always
  type: dict
  contains:
    audit_schema:
      description: Name of the audit schema.
      type: str
      sample: audit
    schema_version:
      description: Version of the audit schema; 0 when it does not exist.
      type: int
      sample: 1
    tables:
      description: Each audited table's triggers and their options.
      type: dict
      sample:
        public.users:
          locksmith_audit_update:
            operation: update
            level: row
            function: audit.log_row
            diff_only: true
            app_user_setting: app.user_id
            primary_key: [id]
            exclude_columns: [password_hash]
            enabled: true
actions:
  description: What was (or in check mode would be) done, one line per object.
  returned: always
  type: list
  elements: str
  sample:
    - create trigger locksmith_audit_insert on public.users
    - drop partition audit.log_p202601 (retention_days=90)
executed_queries:
  description: SQL statements executed (rolled back in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ['DROP TRIGGER "locksmith_audit_update" ON "public"."users"']
metrics_file:
  description: Path of the metrics file written.
  returned: when O(metrics_dir) is set and not in check mode
  type: str
  sample: /var/lib/prometheus/node-exporter/locksmith_audit_shop.prom
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils import _audit, _audit_catalog, _metrics, _postgres  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._paths import refuse_nul_in_paths  # noqa: E402


def argument_spec():
    spec = _postgres.postgres_argument_spec()
    spec.update(
        database=dict(type="str", required=True),
        tables=dict(type="list", elements="str"),
        schema=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        capture=dict(type="str", default="row", choices=["row", "statement"]),
        operations=dict(type="list", elements="str", default=list(_audit.OPERATIONS), choices=list(_audit.OPERATIONS)),
        exclude_columns=dict(type="list", elements="str", default=[]),
        diff_only=dict(type="bool", default=False),
        audit_schema=dict(type="str", default="audit"),
        app_user_setting=dict(type="str", default="app.user_id"),
        retention_days=dict(type="int", default=90),
        partitions_ahead=dict(type="int", default=2),
        auditor_role=dict(type="str"),
        drop_log=dict(type="bool", default=False),
        metrics_dir=dict(type="path"),
        retention_max_age_seconds=dict(type="int"),
    )
    return spec


def publish_metrics(conn, params, version):
    """Log size, the recorded retention run and its max age for node_exporter; returns the file path."""
    status = _audit_catalog.read_retention_status(conn, params["audit_schema"], version)
    families = _audit.retention_families(params["database"], status, params.get("retention_max_age_seconds"))
    return _metrics.write_textfile(params["metrics_dir"], "audit", params["database"], families)[1]


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("tables", "schema")],
        required_one_of=[("tables", "schema")],
    )
    refuse_nul_in_paths(module)
    params = module.params
    if not _postgres.HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=str(_postgres.PSYCOPG2_IMPORT_ERROR))
    executed = []
    result = {"changed": False, "actions": [], "executed_queries": executed}
    conn = None
    try:
        _audit.validate_options(params)
        _audit.parse_tables(params.get("tables"), params["audit_schema"])
        conn = _postgres.connect(params, params["database"])
        with _audit_catalog.server_errors(conn, params["database"], "reading the audit state"):
            plan = _audit.plan_audit(conn, params)
        for warning in plan["warnings"]:
            module.warn(warning)
        result["actions"] = _audit.step_actions(plan["steps"])
        result["changed"] = _audit.changed_steps(plan["steps"])
        if plan["steps"]:
            executed.extend(_audit.apply_plan(conn, plan["steps"], module.check_mode))
        else:
            conn.rollback()
        after = plan["after"]
        result["trigger"] = {
            "audit_schema": params["audit_schema"],
            "schema_version": after["audit_schema"]["version"],
            "tables": after["tables"],
        }
        if module._diff:
            result["diff"] = {"before": plan["before"], "after": after}
        if params.get("metrics_dir") and not module.check_mode and after["audit_schema"]["version"]:
            with _audit_catalog.server_errors(conn, params["database"], "measuring the audit log"):
                result["metrics_file"] = publish_metrics(conn, params, after["audit_schema"]["version"])
    except LocksmithError as err:
        details = dict(err.details)
        details.setdefault("executed_queries", executed)
        module.fail_json(msg=str(err), **details)
    finally:
        if conn is not None:
            conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
