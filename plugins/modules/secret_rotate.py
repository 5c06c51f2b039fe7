#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: secret_rotate
short_description: Rotate a credential through stage, apply, test, promote and revoke, with no downtime
version_added: 0.1.0
description:
  - Manages the staged versions (pending, current, previous) of one secret in Vault/OpenBao KV v2, AWS
    Secrets Manager or a local file, and the credential they stand for on a target (a PostgreSQL role's
    password, a pair of alternating PostgreSQL roles, an HMAC signing key, or a value your own handler applies).
  - 'The protocol, each step idempotent and resumable: 1. B(stage) a new random value as the pending
    version in the store (write-ahead: the store holds it before any target sees it, so a crash never loses
    a password that was set); 2. B(apply) it to the target; 3. B(test) it with a real login or check;
    4. B(promote) it to current, keeping the old current as previous; 5. optionally B(revoke) previous after
    O(grace_seconds).'
  - Nothing untested becomes current. When a step fails, the module names it, puts the target back on the
    current credential where the step had moved it, and leaves the pending version in the store; the next run
    resumes it (never stages a second one) or, with O(on_pending=rollback), rolls it back. A credential the
    test refuses is rolled back at once.
  - Rotation happens only when the current version is older than O(min_age_seconds) (or O(force)), so a
    daily schedule rotates only when due and a second run changes nothing.
  - No secret value appears in results, diffs, warnings or logs, even at C(-vvv). Results carry version ids
    (C(<secret v7>)), timestamps and the step reached; values read from or written to the store are
    registered as no_log values. Read values with the P(locksmith.ops.secret#lookup) lookup.
  - Never touched are other secrets in the store, roles other than O(role) or O(roles), and grants (the
    alternating roles must already share them through a group role).
options:
  secret:
    description:
      - Name of the secret in the store; a KV path inside O(vault_mount), a Secrets Manager name, or a
        key inside O(file_path).
      - Segments of letters, digits and C(_ . @ + = -) joined by single slashes, with no C(.) or C(..) segment,
        at most 512 characters (what Secrets Manager allows, and a path that cannot leave the Vault mount).
        Anything else fails before the store is contacted.
    type: str
    required: true
    version_added: 0.1.0
  target:
    description:
      - V(postgresql_password) sets O(role)'s password with C(ALTER ROLE ... PASSWORD), sending only a
        SCRAM-SHA-256 verifier computed on the managed host, so the plaintext never reaches the server or its
        logs. Between apply and promote, clients that read the old value cannot log in; use
        V(postgresql_alternating) where that matters. The stored value is C({username, password}).
      - V(postgresql_alternating) rotates the inactive one of O(roles) and then makes it current, so
        clients that use the current credential never fail; revoking sets the previous role's password to NULL.
        The test also checks that both roles are members of the same roles. The stored value is
        C({username, password}).
      - V(hmac) keeps a generated signing key (C({key})) as current plus previous, so webhook senders and
        receivers overlap; receivers accept both until previous is revoked after O(grace_seconds).
      - V(generic) stores a generated value (C({value})) that your own handler applies, either through
        O(apply_command), or between two runs (O(stop_after=stage), then your tasks read the pending value
        with the lookup and apply it, then a second run tests and promotes it).
    type: str
    required: true
    choices: [generic, hmac, postgresql_alternating, postgresql_password]
    version_added: 0.1.0
  role:
    description: The login role of O(target=postgresql_password). It must exist.
    type: str
    version_added: 0.1.0
  roles:
    description: The two login roles of O(target=postgresql_alternating), e.g. V([app, app_clone]). Both must exist.
    type: list
    elements: str
    version_added: 0.1.0
  database:
    description: Database the admin connection and the test login of the PostgreSQL targets use.
    type: str
    default: postgres
    version_added: 0.1.0
  test_query:
    description:
      - Statement the PostgreSQL targets run as the new credential to test it; it is rolled back.
      - The test login goes to the same O(login_host) or O(login_unix_socket) as the admin connection and must be
        asked for the password. When C(pg_hba.conf) lets it in without one (a C(trust) or C(peer) line, common
        for local sockets), it would pass with any value, so the test step fails; set O(login_host) to an
        address where C(pg_hba.conf) asks for C(scram-sha-256).
    type: str
    default: SELECT 1
    version_added: 0.1.0
  apply_command:
    description:
      - Command (argv list, no shell) that applies the new value for O(target=generic) or O(target=hmac);
        the value is written to its standard input followed by a newline, never on the command line, and
        its version id is in E(LOCKSMITH_SECRET_VERSION). It is also run with the current value to restore
        the target after a failed step. Its output is never returned.
    type: list
    elements: str
    version_added: 0.1.0
  test_command:
    description: Command (argv list) that tests the new value read on standard input; exit 0 means it works.
    type: list
    elements: str
    version_added: 0.1.0
  test_url:
    description:
      - URL that tests the new value for O(target=generic) or O(target=hmac) with a GET that sends it as a
        bearer token in the C(Authorization) header; 2xx means it works, 401 or 403 that it was refused.
        Use HTTPS.
    type: str
    version_added: 0.1.0
  length:
    description: Length of a generated value, from 16 to 4096.
    type: int
    default: 32
    version_added: 0.1.0
  character_classes:
    description: Character classes of a generated value; it holds at least one character of each.
    type: list
    elements: str
    choices: [digits, lower, symbols, upper]
    default: [lower, upper, digits]
    version_added: 0.1.0
  symbols:
    description: The characters of the V(symbols) class, printable ASCII.
    type: str
    default: "-_.~+=^"
    version_added: 0.1.0
  min_age_seconds:
    description:
      - Do not rotate a current version younger than this, unless O(force). Set it a little below the
        schedule's interval, e.g. V(82800) for a daily job.
    type: int
    default: 2419200
    version_added: 0.1.0
  max_age_seconds:
    description:
      - Age past which the secret is reported C(overdue) and published as such in the metrics.
      - At least O(min_age_seconds); a smaller value is refused (overdue before any run may rotate it).
    type: int
    default: 2592000
    version_added: 0.1.0
  grace_seconds:
    description:
      - How long the previous version stays valid after a promotion. O(revoke_previous) waits for it, and
        for O(target=postgresql_alternating) and O(target=hmac), whose previous version stays in use, no new
        rotation starts within it, even with O(force). V(0) allows both at once, e.g. after a leak.
    type: int
    default: 3600
    version_added: 0.1.0
  force:
    description: Rotate even when the current version is younger than O(min_age_seconds).
    type: bool
    default: false
    version_added: 0.1.0
  revoke_previous:
    description: Revoke the previous version on the target and drop it from the store once O(grace_seconds) passed.
    type: bool
    default: false
    version_added: 0.1.0
  on_pending:
    description:
      - What to do with a pending version left by an earlier run that failed or crashed. V(resume) applies,
        tests and promotes it; V(rollback) puts the target back on the current version and drops it.
      - V(rollback) fails, changing nothing, where there is no usable current version to set back and the target
        may already hold the pending value (a PostgreSQL role, or O(apply_command)), as a refused first rotation
        leaves it; dropping the pending version would leave a credential no store holds. Fix what the test
        refused and resume it, or set the credential on the target by hand and remove the pending version.
    type: str
    default: resume
    choices: [resume, rollback]
    version_added: 0.1.0
  stop_after:
    description:
      - Stop after this step; the next run resumes from the store. V(stage) lets your own tasks apply the
        pending value between two runs.
    type: str
    choices: [stage, apply, test, promote]
    version_added: 0.1.0
  return_secret:
    description:
      - B(Unsafe.) Return the current value in RV(secret_value). It then shows in the output of every
        verbosity and in any callback or log that records results. Prefer the P(locksmith.ops.secret#lookup) lookup
        with C(no_log).
    type: bool
    default: false
    version_added: 0.1.0
  metrics_dir:
    description:
      - node_exporter textfile collector directory; when set, the module writes
        C(locksmith_secret_<secret>.prom) there with the C(locksmith_secret_*) metrics of docs/metrics.md,
        also when a step fails.
    type: path
    version_added: 0.1.0
extends_documentation_fragment:
  - locksmith.ops.attributes
  - locksmith.ops.attributes.ALL
  - locksmith.ops.secrets_backend
  - locksmith.ops.postgres
attributes:
  check_mode:
    details:
      - Reads the store and the target and reports whether rotation is due and which steps would run;
        the test step is not run.
notes:
  - The PostgreSQL options (C(login_*)) are the admin connection of the PostgreSQL targets; other targets
    ignore them.
  - Alternating roles must share their grants through a group role (C(GRANT app_rw TO app, app_clone)); the
    test step refuses a pair whose memberships differ.
seealso:
  - plugin: locksmith.ops.secret
    plugin_type: lookup
author:
  - locksmith.ops contributors (@locksmith-ops)
"""

EXAMPLES = r"""
- name: Rotate the app's PostgreSQL password when due, keeping it in Vault
  locksmith.ops.secret_rotate:
    secret: app/db
    target: postgresql_password
    role: app
    backend: vault
    vault_url: https://vault.example.com:8200
    vault_auth_method: approle
    vault_role_id: "{{ vault_role_id }}"
    vault_secret_id: "{{ vault_secret_id }}"
    login_host: db1.example.com
    login_password: "{{ lookup('ansible.builtin.env', 'PGADMIN_PASSWORD') }}"

- name: Rotate alternating roles daily with no downtime, revoke the old one after an hour
  locksmith.ops.secret_rotate:
    secret: prod/app-db
    target: postgresql_alternating
    roles: [app, app_clone]
    database: app
    test_query: SELECT 1 FROM app.accounts LIMIT 1
    min_age_seconds: 82800
    grace_seconds: 3600
    revoke_previous: true
    backend: aws
    aws_region: eu-west-1
    login_host: db1.example.com
    metrics_dir: /var/lib/prometheus/node-exporter

- name: Rotate the webhook signing key monthly; receivers accept previous for a day
  locksmith.ops.secret_rotate:
    secret: webhooks/signing
    target: hmac
    length: 64
    grace_seconds: 86400
    revoke_previous: true
    backend: vault
    vault_url: https://vault.example.com:8200
    vault_token: "{{ lookup('ansible.builtin.env', 'VAULT_TOKEN') }}"

# The api/token examples keep the value in the file store, a lab store; use vault or aws in production.
- name: Is the API token due? (run with --check; nothing changes)
  locksmith.ops.secret_rotate:
    secret: api/token
    target: generic
    backend: file
    file_path: /etc/locksmith/secrets.json
  check_mode: true
  register: token_plan

- name: Generic value, phase 1 - stage a pending value only
  locksmith.ops.secret_rotate:
    secret: api/token
    target: generic
    stop_after: stage
    backend: file
    file_path: /etc/locksmith/secrets.json
  register: token_stage

- name: Generic value - your handler applies the pending value, while one is staged
  ansible.builtin.copy:
    dest: /etc/api/token
    content: "{{ lookup('locksmith.ops.secret', 'api/token', stage='pending', field='value',
                 backend='file', file_path='/etc/locksmith/secrets.json', cache=false) }}"
    mode: "0600"
  when: token_stage.secret.pending_version is not none
  no_log: true

- name: Generic value, phase 2 - test through the service and promote
  locksmith.ops.secret_rotate:
    secret: api/token
    target: generic
    test_url: https://api.example.com/v1/whoami
    backend: file
    file_path: /etc/locksmith/secrets.json
"""

RETURN = r"""
secret:
  description: The secret's versions and times after the run (before it, in check mode). Never a value.
  returned: always
  type: dict
  sample:
    name: prod/app-db
    backend: vault
    target: postgresql_alternating
    current_version: "7"
    previous_version: "4"
    pending_version: null
    promoted_timestamp: 1795750000.0
    age_seconds: 0.4
    overdue: false
    next_due_timestamp: 1795832800.0
    username: app_clone
rotation_due:
  description: Whether a rotation (or the resumption of a pending version) was due.
  returned: always
  type: bool
  sample: true
reason:
  description: Why the rotation was or was not due.
  returned: always
  type: str
  sample: "current <secret v4> is 2592101s old, min_age_seconds is 2419200"
planned_steps:
  description: The steps this run takes (in check mode, would take), in order; C(rollback) for O(on_pending=rollback).
  returned: always
  type: list
  elements: str
  sample: [stage, apply, test, promote, revoke]
steps:
  description: The steps completed in this run.
  returned: always
  type: list
  elements: str
  sample: [stage, apply, test, promote]
step:
  description: The last step completed (V(none) when nothing ran).
  returned: always
  type: str
  sample: promote
failed_step:
  description: The step that failed (V(plan) when reading the store or the target failed first).
  returned: failed
  type: str
  sample: test
resumed:
  description: Whether a pending version left by an earlier run was resumed.
  returned: always
  type: bool
  sample: false
rolled_back:
  description: Whether a pending version was rolled back.
  returned: always
  type: bool
  sample: false
restored_target:
  description: After a failed step, whether the target was set back to the current credential.
  returned: failed
  type: bool
  sample: true
executed_queries:
  description: Statements sent to PostgreSQL; passwords show as version markers only.
  returned: always
  type: list
  elements: str
  sample: ["ALTER ROLE \"app_clone\" PASSWORD '<secret v7>'"]
diff:
  description: Version markers of the stages before and after.
  returned: when diff mode is on
  type: dict
  sample:
    before: {pending: null, current: "<secret v4>", previous: null}
    after: {pending: null, current: "<secret v7>", previous: "<secret v4>"}
metrics_file:
  description: The textfile written (or that would be written in check mode).
  returned: when O(metrics_dir) is set
  type: str
  sample: /var/lib/prometheus/node-exporter/locksmith_secret_prod_app-db_0c1d2e3f.prom
secret_value:
  description: B(Unsafe.) The current value. Only with O(return_secret=true).
  returned: when O(return_secret=true)
  type: dict
  sample: {username: app_clone, password: "(the password)"}
"""

import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible.module_utils.urls import fetch_url  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics, _postgres, _rotation  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._paths import refuse_nul_in_paths  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._rotation_targets import TARGETS  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import aws as _aws  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import (  # noqa: E402
    make_backend,
    secret_strings,
    secrets_backend_argument_spec,
)
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import vault as _vault  # noqa: E402


def argument_spec():
    spec = dict(
        secret=dict(type="str", required=True, no_log=False),
        target=dict(type="str", required=True, choices=sorted(TARGETS)),
        role=dict(type="str"),
        roles=dict(type="list", elements="str"),
        database=dict(type="str", default="postgres"),
        test_query=dict(type="str", default="SELECT 1"),
        apply_command=dict(type="list", elements="str"),
        test_command=dict(type="list", elements="str"),
        test_url=dict(type="str"),
        length=dict(type="int", default=32),
        character_classes=dict(
            type="list",
            elements="str",
            choices=["digits", "lower", "symbols", "upper"],
            default=["lower", "upper", "digits"],
        ),
        symbols=dict(type="str", default=_rotation.DEFAULT_SYMBOLS),
        min_age_seconds=dict(type="int", default=2419200),
        max_age_seconds=dict(type="int", default=2592000),
        grace_seconds=dict(type="int", default=3600),
        force=dict(type="bool", default=False),
        revoke_previous=dict(type="bool", default=False),
        on_pending=dict(type="str", default="resume", choices=["resume", "rollback"]),
        stop_after=dict(type="str", choices=["stage", "apply", "test", "promote"]),
        return_secret=dict(type="bool", default=False),
        metrics_dir=dict(type="path"),
    )
    spec.update(secrets_backend_argument_spec())
    spec.update(_postgres.postgres_argument_spec())
    return spec


def missing_library(params):
    """The Python library this combination of options needs and lacks, as (name, error), or None."""
    if params["backend"] == "vault" and not _vault.HAS_HVAC:
        return "hvac", _vault.HVAC_IMPORT_ERROR
    if params["backend"] == "aws" and not _aws.HAS_BOTO3:
        return "boto3", _aws.BOTO3_IMPORT_ERROR
    if params["target"].startswith("postgresql") and not _postgres.HAS_PSYCOPG2:
        return "psycopg2", _postgres.PSYCOPG2_IMPORT_ERROR
    return None


def publish(params, state, ok, check_mode):
    """Write the metrics file when metrics_dir is set; -> its path or None."""
    if not params["metrics_dir"] or state is None:
        return None
    families = _rotation.metric_families(params["secret"], state, ok, params["max_age_seconds"])
    return _metrics.write_textfile(params["metrics_dir"], "secret", params["secret"], families, check_mode)[1]


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[
            ("target", "postgresql_password", ["role"]),
            ("target", "postgresql_alternating", ["roles"]),
        ],
    )
    refuse_nul_in_paths(module)
    params = module.params
    missing = missing_library(params)
    if missing:
        module.fail_json(msg=missing_required_lib(missing[0]), exception=str(missing[1]))

    def register(values):
        module.no_log_values.update(values)

    def fetch(url, headers):
        # The Authorization header holds the new value: a redirect must not carry it to another server.
        return fetch_url(
            module, url, headers=headers, timeout=params["backend_timeout"], unredirected_headers=list(headers)
        )

    now = time.time()
    target = None
    try:
        policy = _rotation.Policy(params)
        policy.validate()
        backend = make_backend(params)
        target = TARGETS[params["target"]](params, fetch_url=fetch)
        target.validate()
        try:
            result, state = _rotation.rotate(
                backend, target, params["secret"], policy, now, module.check_mode, register
            )
        except _rotation.RotationError as err:
            state = getattr(err, "state", None)
            if state is not None:
                err.details["secret"] = _rotation.summary(
                    params["secret"], backend.name, target, state, policy, time.time()
                )
            err.details["executed_queries"] = target.executed_queries
            try:
                publish(params, state, False, module.check_mode)
            except LocksmithError as metrics_err:
                err.details["metrics_error"] = metrics_err.msg
            raise
        # Ages are measured at the end of the run: a promotion in this run is stamped after `now`.
        result["secret"] = _rotation.summary(params["secret"], backend.name, target, state, policy, time.time())
        result["executed_queries"] = target.executed_queries
        path = publish(params, state, state.pending is None, module.check_mode)
        if path:
            result["metrics_file"] = path
    except LocksmithError as err:
        module.fail_json(msg=err.msg, **err.details)
    finally:
        if target is not None:
            target.close()

    if not module._diff:
        result.pop("diff", None)
    if params["return_secret"] and state.current is not None:
        module.warn("return_secret is set: the current value of '%s' is in this task's result" % params["secret"])
        module.no_log_values.difference_update(secret_strings(state.current.value))
        result["secret_value"] = state.current.value
    module.exit_json(**result)


if __name__ == "__main__":
    main()
