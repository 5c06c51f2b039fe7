# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Secret store options of every locksmith.ops secret plugin (spec: module_utils/_secrets_backend)."""

    DOCUMENTATION = r"""
options:
  backend:
    description:
      - The secret store.
      - V(vault) is HashiCorp Vault or OpenBao, KV version 2 (through hvac). Each secret is one KV entry
        that holds its C(pending), C(current) and C(previous) versions; every write is check-and-set.
      - V(aws) is AWS Secrets Manager (through boto3), with its own staging labels C(AWSPENDING),
        C(AWSCURRENT) and C(AWSPREVIOUS); each version's value is the JSON object itself.
      - V(file) is one local JSON file of mode 0600 for labs and tests; never for production secrets.
    type: str
    required: true
    choices: [aws, file, vault]
    version_added: 0.1.0
  backend_timeout:
    description: Seconds to wait for the secret store before failing.
    type: int
    default: 10
    version_added: 0.1.0
  vault_url:
    description: URL of Vault or OpenBao, e.g. V(https://vault.example.com:8200). Required for O(backend=vault).
    type: str
    version_added: 0.1.0
  vault_mount:
    description: Mount point of the KV version 2 secrets engine.
    type: str
    default: secret
    version_added: 0.1.0
  vault_namespace:
    description: Vault Enterprise namespace, if any.
    type: str
    version_added: 0.1.0
  vault_auth_method:
    description:
      - How to log in to Vault. V(token) needs O(vault_token); V(approle) needs O(vault_role_id) and
        O(vault_secret_id); V(userpass) needs O(vault_username) and O(vault_password).
      - No token is ever taken from the environment implicitly.
    type: str
    default: token
    choices: [approle, token, userpass]
    version_added: 0.1.0
  vault_auth_mount:
    description: Mount point of the auth method; defaults to the method's name.
    type: str
    version_added: 0.1.0
  vault_token:
    description: Vault token for O(vault_auth_method=token). Never logged or returned.
    type: str
    version_added: 0.1.0
  vault_role_id:
    description: AppRole role ID for O(vault_auth_method=approle).
    type: str
    version_added: 0.1.0
  vault_secret_id:
    description: AppRole secret ID for O(vault_auth_method=approle). Never logged or returned.
    type: str
    version_added: 0.1.0
  vault_username:
    description: User name for O(vault_auth_method=userpass).
    type: str
    version_added: 0.1.0
  vault_password:
    description: Password for O(vault_auth_method=userpass). Never logged or returned.
    type: str
    version_added: 0.1.0
  vault_ca_cert:
    description: CA bundle that verifies Vault's TLS certificate.
    type: path
    version_added: 0.1.0
  vault_validate_certs:
    description: Verify Vault's TLS certificate. Switch off only for a lab on 127.0.0.1.
    type: bool
    default: true
    version_added: 0.1.0
  aws_region:
    description: AWS region of the secret, e.g. V(eu-west-1); boto3's default chain when omitted.
    type: str
    version_added: 0.1.0
  aws_endpoint_url:
    description: Secrets Manager endpoint URL, for a VPC endpoint or a test server.
    type: str
    version_added: 0.1.0
  aws_profile:
    description: Named profile from the AWS config files.
    type: str
    version_added: 0.1.0
  aws_access_key:
    description: AWS access key ID; boto3's default chain (environment, profile, instance role) when omitted.
    type: str
    version_added: 0.1.0
  aws_secret_key:
    description: AWS secret access key. Never logged or returned.
    type: str
    version_added: 0.1.0
  aws_session_token:
    description: AWS session token for temporary credentials. Never logged or returned.
    type: str
    version_added: 0.1.0
  file_path:
    description:
      - The JSON file of O(backend=file). It is created with mode 0600 and refused when group or others
        can read it. Writes are atomic and check-and-set under a lock file beside it.
    type: path
    version_added: 0.1.0
requirements:
  - hvac for O(backend=vault), boto3 for O(backend=aws), on the host that talks to the store
"""

    # Lookup plugins read the same options from these extra sources; descriptions stay above.
    PLUGINS = r"""
options:
  vault_url:
    env:
      - name: VAULT_ADDR
      - name: BAO_ADDR
  vault_token:
    env:
      - name: VAULT_TOKEN
      - name: BAO_TOKEN
  aws_region:
    env:
      - name: AWS_REGION
      - name: AWS_DEFAULT_REGION
  aws_endpoint_url:
    env:
      - name: AWS_ENDPOINT_URL
"""
