# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""HashiCorp Vault / OpenBao KV version 2 as a secret store, through hvac.

Each secret is one KV v2 entry holding its staged document (pending, current, previous). Every write
passes ``cas`` = the KV version it was computed from, so Vault refuses a write if another run moved
the secret on; the KV version a stage write creates is the version id shown as ``<secret vN>``.
Auth: token, approle or userpass; hvac is never left to pick a token from the environment itself.
"""

from __future__ import annotations

import inspect
import os

from ansible_collections.locksmith.ops.plugins.module_utils import _urls
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import (
    BackendConflict,
    BackendDenied,
    BackendUnavailable,
    DocumentBackend,
    SecretsBackendError,
)

try:
    import hvac
    import hvac.exceptions
    import requests

    HAS_HVAC = True
    HVAC_IMPORT_ERROR = None
except ImportError as import_error:  # pragma: no cover - exercised by the missing_required_lib path
    hvac = None
    HAS_HVAC = False
    HVAC_IMPORT_ERROR = import_error

AUTH_OPTIONS = {
    "token": ("vault_token",),
    "approle": ("vault_role_id", "vault_secret_id"),
    "userpass": ("vault_username", "vault_password"),
}


def _accepts(function, name):
    """Whether `function` takes the keyword argument `name` (hvac's signatures change between versions)."""
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


class VaultBackend(DocumentBackend):
    """KV v2 at vault_mount; the secret name is the path inside the mount."""

    name = "vault"
    required_options = ("vault_url",)

    def __init__(self, options):
        super().__init__(options)
        self._client = None

    def validate(self):
        super().validate()
        method = self.options.get("vault_auth_method") or "token"
        missing = [opt for opt in AUTH_OPTIONS[method] if not self.options.get(opt)]
        if missing:
            raise SecretsBackendError(
                "vault_auth_method '%s' needs %s; set them (from a lookup or vault, never in plain text)"
                % (method, " and ".join(missing)),
                missing=missing,
            )
        problem = _urls.http_url_problem(self.options["vault_url"])
        if problem:
            raise SecretsBackendError(
                "vault_url %r %s; give the server's address, e.g. https://vault.example.com:8200"
                % (_urls.redact_url(self.options["vault_url"]), problem)
            )
        # Sent as HTTP headers, which carry ASCII only; a token holding anything else was pasted wrongly.
        for option in ("vault_token", "vault_namespace"):
            value = self.options.get(option)
            if value and not (value.isascii() and value.isprintable()):
                raise SecretsBackendError(
                    "%s holds a character that is not printable ASCII (a stray paste?); give it as issued" % option
                )
        ca_cert = self.options.get("vault_ca_cert")
        if ca_cert and not os.path.isfile(ca_cert):
            raise SecretsBackendError(
                "vault_ca_cert '%s' is not a file; give the PEM file of the CA that signed Vault's certificate"
                % ca_cert
            )

    def describe(self, secret):
        return "Vault %s, KV v2 mount '%s', path '%s'" % (
            _urls.redact_url(self.options["vault_url"]),
            self._mount,
            secret,
        )

    @property
    def _mount(self):
        return self.options.get("vault_mount") or "secret"

    def client(self):
        """An authenticated hvac client (built once)."""
        if self._client is not None:
            return self._client
        verify = self.options.get("vault_ca_cert") or bool(self.options.get("vault_validate_certs", True))
        client = hvac.Client(
            url=self.options["vault_url"],
            namespace=self.options.get("vault_namespace"),
            verify=verify,
            timeout=self.timeout,
        )
        method = self.options.get("vault_auth_method") or "token"
        mount = self.options.get("vault_auth_mount") or method
        try:
            if method == "token":
                client.token = self.options["vault_token"]
            elif method == "approle":
                client.auth.approle.login(
                    role_id=self.options["vault_role_id"], secret_id=self.options["vault_secret_id"], mount_point=mount
                )
            else:
                client.auth.userpass.login(
                    username=self.options["vault_username"], password=self.options["vault_password"], mount_point=mount
                )
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as err:
            raise self._convert(err, "log in with vault_auth_method '%s' at mount '%s'" % (method, mount)) from err
        self._client = client
        return client

    def _convert(self, err, action, secret=None):
        where = (
            self.describe(secret) if secret is not None else "Vault %s" % _urls.redact_url(self.options["vault_url"])
        )
        if isinstance(err, requests.exceptions.RequestException) or isinstance(
            err, (hvac.exceptions.VaultDown, hvac.exceptions.BadGateway, hvac.exceptions.InternalServerError)
        ):
            return BackendUnavailable(
                "%s: cannot %s (%s); check vault_url and that Vault is up and unsealed"
                % (where, action, type(err).__name__)
            )
        if isinstance(err, (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)):
            return BackendDenied(
                "%s: permission denied to %s; check the vault_auth_* credentials and that the policy allows "
                "read, create and update on %s/data/<path> and %s/metadata/<path>"
                % (where, action, self._mount, self._mount)
            )
        if isinstance(err, hvac.exceptions.InvalidRequest) and "check-and-set" in str(err):
            return BackendConflict("%s changed while this run was writing it; re-run to continue" % where)
        return SecretsBackendError("%s: cannot %s (%s); check the vault_* options" % (where, action, err))

    def _load(self, secret):
        kv = self.client().secrets.kv.v2
        # hvac >= 1.1 asks to be told that a deleted version is an error; older clients (Debian 12 ships 0.11)
        # have no such argument and always raise InvalidPath for it.
        options = (
            {"raise_on_deleted_version": True} if _accepts(kv.read_secret_version, "raise_on_deleted_version") else {}
        )
        try:
            response = kv.read_secret_version(path=secret, mount_point=self._mount, **options)
        except hvac.exceptions.InvalidPath:
            return None, self._missing_token(secret)
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as err:
            raise self._convert(err, "read the secret", secret) from err
        data = response.get("data") if isinstance(response, dict) else None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("data"), dict)
            or "version" not in (data.get("metadata") or {})
        ):
            raise SecretsBackendError(
                "%s: the answer is not a KV version 2 secret; check that vault_mount names a KV v2 mount"
                % self.describe(secret)
            )
        return data["data"], int(data["metadata"]["version"])

    def _missing_token(self, secret):
        """The CAS token for a secret with no readable version: 0 if it never existed, else its newest version.

        A newest version deleted or destroyed (`bao kv delete`) reads as missing, but a write with cas=0 would then be
        refused for ever. A KV version 1 mount also reads as missing, and a write there would land at
        '<mount>/data/<path>', so it is refused here, before anything is written.
        """
        kv = self.client().secrets.kv.v2
        try:
            # The endpoint `bao kv` itself asks for a mount's version; any policy on the path may read it.
            mount = self.client().adapter.get("/v1/sys/internal/ui/mounts/%s/%s" % (self._mount, secret))
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException):
            mount = None  # an older server or a stricter proxy: carry on, KV v2 is the documented setup
        info = mount.get("data") if isinstance(mount, dict) else None
        if isinstance(info, dict) and info.get("type") in ("kv", "generic"):
            version = str((info.get("options") or {}).get("version") or "1")  # a KV mount without options is v1
            if version != "2":
                raise SecretsBackendError(
                    "%s: vault_mount '%s' is a KV version %s mount, and secrets are kept only in KV version 2; "
                    "point vault_mount at a KV v2 mount (`bao secrets enable -version=2 kv`)"
                    % (self.describe(secret), self._mount, version)
                )
        try:
            response = kv.read_secret_metadata(path=secret, mount_point=self._mount)
        except hvac.exceptions.InvalidPath as err:
            # No mount there at all: said now, so check mode does not predict a rotation the write would refuse.
            if "no handler for route" in str(err):
                raise SecretsBackendError(
                    "%s: nothing is mounted at vault_mount '%s'; check vault_mount and vault_namespace, or enable a "
                    "KV version 2 mount there" % (self.describe(secret), self._mount)
                ) from err
            return 0
        except hvac.exceptions.Forbidden:  # a policy without metadata read: carry on as a new secret
            return 0
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as err:
            raise self._convert(err, "read the secret's metadata", secret) from err
        try:
            return int(response["data"]["current_version"])
        except (KeyError, TypeError, ValueError):
            return 0

    def _store(self, secret, document, token):
        try:
            response = self.client().secrets.kv.v2.create_or_update_secret(
                path=secret, secret=document, cas=int(token or 0), mount_point=self._mount
            )
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as err:
            raise self._convert(err, "write the secret", secret) from err
        return int(response["data"]["version"])
