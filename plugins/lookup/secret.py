# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: secret
short_description: Read a secret's current (or previous, or pending) value from Vault, AWS Secrets Manager or a file
version_added: 0.1.0
description:
  - Returns the value that M(locksmith.ops.secret_rotate) keeps for each secret named in the terms, read
    from the same store through the same code, so templates and tasks always see the version that passed
    its test and was promoted.
  - Values are cached in the process that renders the task, per store, secret and stage, so a template
    or a loop that uses one secret many times reads the store once per task and host. The cache does not
    span tasks, because Ansible renders each task in its own forked worker, and sharing values across workers would
    mean writing them to disk, which this plugin never does. So a task after a rotation always sees the
    new value; to read a value once for many tasks, keep it in a fact set with C(no_log).
  - Use C(no_log) on tasks that use the value.
options:
  _terms:
    description:
      - Names of the secrets in the store (see the module's O(locksmith.ops.secret_rotate#module:secret)), plain
        paths as that option describes; any other name fails before the store is contacted.
    type: list
    elements: str
    required: true
  stage:
    description:
      - Which version to read. V(previous) lets receivers accept the previous HMAC key during the grace
        period; V(pending) lets your own handler apply a staged value
        (O(locksmith.ops.secret_rotate#module:stop_after=stage)).
    type: str
    default: current
    choices: [current, pending, previous]
  field:
    description:
      - Return only this field of the value (V(password), V(username), V(key), V(value)).
      - The whole dict when omitted.
    type: str
  cache:
    description: Reuse a value already read while rendering this task; V(false) always asks the store.
    type: bool
    default: true
extends_documentation_fragment:
  - locksmith.ops.secrets_backend
  - locksmith.ops.secrets_backend.PLUGINS
notes:
  - An alternative for Vault only is C(community.hashi_vault.vault_kv2_get), whose result holds the whole
    staged document; the current value is under C(secret.current.value).
"""

EXAMPLES = r"""
- name: Render the app's env file with the current database password
  ansible.builtin.template:
    src: app.env.j2
    dest: /etc/app/app.env
    owner: app
    mode: "0600"
  vars:
    app_db_password: "{{ lookup('locksmith.ops.secret', 'prod/app-db', field='password',
                         backend='aws', aws_region='eu-west-1') }}"
    app_db_user: "{{ lookup('locksmith.ops.secret', 'prod/app-db', field='username',
                     backend='aws', aws_region='eu-west-1') }}"
  no_log: true

- name: Give the webhook receiver the current and previous signing keys
  ansible.builtin.copy:
    dest: /etc/receiver/keys.json
    mode: "0600"
    content: "{{ {'current': lookup('locksmith.ops.secret', 'webhooks/signing', field='key', backend='vault'),
                  'previous': lookup('locksmith.ops.secret', 'webhooks/signing', field='key', stage='previous',
                                     backend='vault', errors='ignore')} | to_json }}"
  no_log: true
"""

RETURN = r"""
_raw:
  description: One value per term, the whole dict or the O(field) asked for.
  type: list
  elements: raw
"""

from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.module_utils.common.text.converters import to_native  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import (  # noqa: E402
    make_backend,
    secrets_backend_argument_spec,
)

# Values read in this worker process, i.e. while rendering one task for one host: {(store, secret, stage): value}.
_CACHE = {}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        options = {name: self.get_option(name) for name in secrets_backend_argument_spec()}
        stage = self.get_option("stage")
        field = self.get_option("field")
        try:
            backend = make_backend(options)
        except LocksmithError as err:
            raise AnsibleLookupError(err.msg) from err
        # Every store option, credentials included: a namespace, profile or token of its own may see another value.
        store = tuple(sorted(options.items()))
        for index, term in enumerate(terms):
            if not isinstance(term, str):
                raise AnsibleLookupError(
                    "secret name %r (term %d) is not a string; name the secret as a plain path such as 'prod/app-db'"
                    % (term, index + 1)
                )
        values = []
        for term in terms:
            key = (store, term, stage)
            if not self.get_option("cache") or key not in _CACHE:
                _CACHE[key] = self._read(backend, term, stage)
            value = _CACHE[key]
            if field is not None:
                if field not in value:
                    raise AnsibleLookupError(
                        "%s holds no field '%s' (fields: %s); set field to one of them"
                        % (backend.describe(term), field, ", ".join(sorted(value)))
                    )
                value = value[field]
            values.append(value)
        return values

    @staticmethod
    def _read(backend, term, stage):
        try:
            version = backend.read(term).stage(stage)
        except LocksmithError as err:
            raise AnsibleLookupError(to_native(err.msg)) from err
        if version is None:
            raise AnsibleLookupError(
                "%s has no %s version; rotate it with locksmith.ops.secret_rotate first, or check the secret name"
                % (backend.describe(term), stage)
            )
        return dict(version.value)
