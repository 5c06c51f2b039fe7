#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: secret_scan
short_description: Find secrets left in files and repositories, reporting file and line but never the value
version_added: 0.1.0
description:
  - Reads the files under O(paths) and reports each possible secret as its file, line and type. Changes nothing;
    the scan only reads.
  - Three detectors run. The plugins of L(detect-secrets,https://github.com/Yelp/detect-secrets) (AWS keys,
    Slack tokens and webhooks, private keys, JWTs, GitHub and other tokens, password-like keywords, high-entropy
    strings) with its default false-positive filters; rules of our own for what those plugins miss (encrypted and
    PGP private key blocks, fine-grained GitHub tokens C(github_pat_...), Google API keys), always on; and a rule
    for env files (O(env_file_patterns)) that reports every C(KEY=value) line whose value is not empty, because an
    env file in a repository or a shared directory is where a secret ends up when it is not in the secret store.
  - A value that is evidently a placeholder is not reported - a mask character repeated (V(xxxxxxxx), V(********)),
    words in markers (V(<password>), V(__DB_PASSWORD__), V(@@TOKEN@@)), V(your_..._here), V(REPLACE_ME), V(TODO),
    V(FIXME), and AWS's documented example keys (V(AKIAIOSFODNN7EXAMPLE)). A real value of that shape
    (V(<Zq8#kL2!pW>), V(00000000)) and a default password such as V(changeme) are reported; the env-file rule
    reports every value.
  - The value that matched is never returned, logged or put in a message, and neither is a hash of it (a hash of
    a short password is reversed by guessing). Use the file and line to find it.
  - C(.git) directories are never scanned (their objects hold every old version of every file). Symbolic links
    below a path are not followed.
options:
  paths:
    description:
      - Files or directories to scan, on the host that runs the module. Directories are scanned recursively.
    type: list
    elements: path
    required: true
    version_added: 0.1.0
  exclude:
    description:
      - Globs of files and directories not to scan, matched against the path relative to the scanned directory
        (V(tests/fixtures/*)) and against the file or directory name alone (V(*.lock), V(node_modules)).
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  env_file_patterns:
    description:
      - Globs of file names that the env-file rule reads. Every line C(KEY=value) (or C(export KEY=value)) with a
        non-empty value is a finding of type C(Env File Value). V([]) turns the rule off.
      - Add V(.env.*) to cover C(.env.production); a checked-in C(.env.example) then needs its values empty.
    type: list
    elements: str
    default: [.env, "*.env"]
    version_added: 0.1.0
  disable_plugins:
    description:
      - detect-secrets plugins not to run, by class name, e.g. V(HexHighEntropyString) or V(KeywordDetector).
        An unknown name fails with the list of valid ones.
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  max_file_size_bytes:
    description: Files larger than this are not read and are listed in RV(skipped).
    type: int
    default: 5242880
    version_added: 0.1.0
  fail_on_findings:
    description:
      - Fail when anything is found, with every file and line in the message. V(false) returns the findings
        and succeeds, for a report.
    type: bool
    default: true
    version_added: 0.1.0
extends_documentation_fragment:
  - locksmith.ops.attributes
  - locksmith.ops.attributes.INFO_MODULE
requirements:
  - detect-secrets >= 1.5 (PyPI C(detect-secrets)) on the host that runs the module.
notes:
  - 'To scan a repository checked out on the controller, run the module there (C(delegate_to: localhost) and
    C(run_once: true)); the role P(locksmith.ops.secrets#role) does so.'
seealso:
  - module: locksmith.ops.secret_rotate
author:
  - locksmith.ops contributors (@locksmith-ops)
"""

EXAMPLES = r"""
- name: Fail when a secret is left in the checkout of the ops repository
  locksmith.ops.secret_scan:
    paths:
      - "{{ playbook_dir }}/.."
    exclude: [".venv", "node_modules", "*.lock"]
  delegate_to: localhost
  run_once: true

- name: Report what is found under /srv/app without failing
  locksmith.ops.secret_scan:
    paths: [/srv/app]
    env_file_patterns: [.env, "*.env", ".env.*"]
    disable_plugins: [HexHighEntropyString, Base64HighEntropyString]
    fail_on_findings: false
  register: app_scan

- name: Show where to look
  ansible.builtin.debug:
    msg: "{{ app_scan.findings | map(attribute='file') | unique | list }}"
"""

RETURN = r"""
findings:
  description: One entry per file, line and type found, sorted by file and line. Never the value, never a hash of it.
  returned: always
  type: list
  elements: dict
  contains:
    file:
      description: Path of the file.
      type: str
      sample: /srv/app/.env
    line:
      description: Line number, from 1.
      type: int
      sample: 3
    type:
      description: What was found, as detect-secrets names it (our own rules use the same names, plus C(Google API
        Key)), or C(Env File Value) for the env-file rule.
      type: str
      sample: AWS Access Key
  sample:
    - {file: /srv/app/.env, line: 3, type: Env File Value}
    - {file: /srv/app/config/settings.py, line: 12, type: AWS Access Key}
files_scanned:
  description: Number of files read.
  returned: always
  type: int
  sample: 214
skipped:
  description:
    - Files found but not read, with the reason (a symbolic link to a file or a directory, larger than
      O(max_file_size_bytes), binary).
    - Text that is not UTF-8 (a Latin-1 comment) is read, its undecodable bytes replaced; a file that is not UTF-8
      and holds NUL bytes is binary.
  returned: always
  type: list
  elements: dict
  sample: [{file: /srv/app/data/dump.sql, reason: larger than max_file_size_bytes}]
detect_secrets_version:
  description: Version of detect-secrets that scanned.
  returned: always
  type: str
  sample: 1.5.0
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils import _secret_scan  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._paths import refuse_nul_in_paths  # noqa: E402


def main():
    module = AnsibleModule(argument_spec=_secret_scan.secret_scan_argument_spec(), supports_check_mode=True)
    refuse_nul_in_paths(module)
    if not _secret_scan.HAS_DETECT_SECRETS:
        module.fail_json(
            msg=missing_required_lib("detect-secrets", url="https://pypi.org/project/detect-secrets/"),
            exception=_secret_scan.DETECT_SECRETS_IMPORT_ERROR,
        )
    try:
        result = _secret_scan.scan(module.params)
    except LocksmithError as err:
        module.fail_json(msg=err.msg, **err.details)
    result["detect_secrets_version"] = _secret_scan.DETECT_SECRETS_VERSION
    if result["findings"] and module.params["fail_on_findings"]:
        module.fail_json(msg=_secret_scan.failure_message(result["findings"]), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
