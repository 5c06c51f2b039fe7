# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Secret stores with staged versions: pending, current and previous, one backend per file.

Every backend offers the same few actions over a secret's staged versions, modelled on AWS Secrets
Manager's AWSPENDING/AWSCURRENT/AWSPREVIOUS labels. Each action is a compare-and-set against the
state it was computed from, never a blind write, so two runs cannot silently clobber each other.
The options are documented once in plugins/doc_fragments/secrets_backend.py (a unit test compares
the two).
"""

from __future__ import annotations

import json
import re

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError

STAGES = ("pending", "current", "previous")
DOC_FORMAT = "locksmith.secret/1"
# Fields of a stored value that are not secret; masking them would garble every message that names a role.
PUBLIC_FIELDS = ("username",)
# A secret name is a path of plain segments. In Vault it becomes part of the request URL, so a '..' segment would
# leave the KV mount (a read of '../../sys/mounts' got the mount table); AWS allows exactly these characters.
_NAME_SEGMENT = re.compile(r"^[A-Za-z0-9_.@+=-]+\Z")
MAX_NAME_LENGTH = 512


class SecretsBackendError(LocksmithError):
    """The secret store failed or refused; the message names the store, the secret and the fix."""


class BackendUnavailable(SecretsBackendError):
    """The store could not be reached; nothing was changed by this call."""


class BackendDenied(SecretsBackendError):
    """The store refused the credentials or the policy forbids the action."""


class BackendConflict(SecretsBackendError):
    """The secret changed between read and write (another run?); re-run to continue from the new state."""


class Version:
    """One stored version: an opaque id, the value (a dict of strings) and its creation time."""

    __slots__ = ("created", "value", "version_id")

    def __init__(self, version_id, value, created):
        self.version_id = str(version_id)
        self.value = value
        self.created = float(created or 0)

    def marker(self):
        """How a diff or a result shows this version: never the value, never a hash of it."""
        return "<secret v%s>" % self.version_id

    def summary(self):
        return {"version": self.version_id, "created_timestamp": self.created}


class SecretState:
    """What a store holds for one secret: staged versions, when current was promoted, and a CAS token."""

    def __init__(self, exists=False, pending=None, current=None, previous=None, promoted_at=None, token=None):
        self.exists = exists
        self.pending = pending
        self.current = current
        self.previous = previous
        self.promoted_at = promoted_at
        self.token = token

    def stage(self, name):
        return getattr(self, name)

    def values(self):
        """Every secret string held, so callers can register them as no_log values."""
        found = []
        for name in STAGES:
            version = self.stage(name)
            if version is not None:
                found.extend(secret_strings(version.value))
        return found

    def markers(self):
        return {name: (self.stage(name).marker() if self.stage(name) else None) for name in STAGES}


def validate_secret_name(secret):
    """Raise SecretsBackendError unless ``secret`` is segments of [A-Za-z0-9_.@+=-] joined by single slashes."""
    segments = secret.split("/") if isinstance(secret, str) else [""]
    if len(secret or "") > MAX_NAME_LENGTH or not all(
        _NAME_SEGMENT.match(segment) and segment not in (".", "..") for segment in segments
    ):
        raise SecretsBackendError(
            "secret name %r is not a plain path: use segments of letters, digits and _ . @ + = -, joined by single "
            "slashes, with no '.' or '..' segment and at most %d characters; nothing was read or written"
            % (secret, MAX_NAME_LENGTH),
            secret=secret,
        )
    return secret


def secret_strings(value):
    """The secret strings of a stored value: every string field except the non-secret ones (username)."""
    return [v for k, v in value.items() if k not in PUBLIC_FIELDS and isinstance(v, str) and v]


def secrets_backend_argument_spec():
    """Options of every secret store (doc fragment: locksmith.ops.secrets_backend)."""
    return dict(
        backend=dict(type="str", required=True, choices=["aws", "file", "vault"]),
        backend_timeout=dict(type="int", default=10),
        vault_url=dict(type="str"),
        vault_mount=dict(type="str", default="secret"),
        vault_namespace=dict(type="str"),
        vault_auth_method=dict(type="str", default="token", choices=["approle", "token", "userpass"]),
        vault_auth_mount=dict(type="str"),
        vault_token=dict(type="str", no_log=True),
        vault_role_id=dict(type="str"),
        vault_secret_id=dict(type="str", no_log=True),
        vault_username=dict(type="str"),
        vault_password=dict(type="str", no_log=True),
        vault_ca_cert=dict(type="path"),
        vault_validate_certs=dict(type="bool", default=True),
        aws_region=dict(type="str"),
        aws_endpoint_url=dict(type="str"),
        aws_profile=dict(type="str"),
        aws_access_key=dict(type="str", no_log=True),
        aws_secret_key=dict(type="str", no_log=True),
        aws_session_token=dict(type="str", no_log=True),
        file_path=dict(type="path"),
    )


class SecretsBackend:
    """One secret store; subclasses talk to exactly one service."""

    name = ""
    required_options = ()

    def __init__(self, options):
        self.options = options
        self.timeout = options.get("backend_timeout") or 10

    def validate(self):
        """Check options only, no I/O: every option this store needs is set."""
        missing = [opt for opt in self.required_options if not self.options.get(opt)]
        if missing:
            raise SecretsBackendError(
                "backend '%s' needs %s; set %s" % (self.name, ", ".join(missing), " and ".join(missing)),
                missing=missing,
            )
        timeout = self.options.get("backend_timeout")
        if timeout is not None and not 1 <= timeout <= 3600:
            raise SecretsBackendError(
                "backend_timeout %s must be from 1 to 3600 seconds; it bounds each request to the store" % timeout
            )

    def describe(self, secret):
        """Where the secret lives, as shown in messages (no credentials)."""
        return "%s:%s" % (self.name, secret)

    def read(self, secret):
        """The secret's SecretState; a name that is not a plain path is refused before any I/O."""
        validate_secret_name(secret)
        return self._read(secret)

    def _read(self, secret):  # pragma: no cover - interface
        """-> SecretState for a checked name; a missing secret is an empty state, not an error."""
        raise NotImplementedError

    def stage(self, secret, state, value, now):  # pragma: no cover - interface
        """Write ``value`` as the pending version (write-ahead); -> the new SecretState."""
        raise NotImplementedError

    def promote(self, secret, state, now):  # pragma: no cover - interface
        """Pending becomes current, current becomes previous; -> the new SecretState."""
        raise NotImplementedError

    def discard_pending(self, secret, state):  # pragma: no cover - interface
        raise NotImplementedError

    def drop_previous(self, secret, state):  # pragma: no cover - interface
        raise NotImplementedError

    def next_version_hint(self, state):
        """The id the next staged version will get, when the store lets us know it in advance."""
        return "new"


class DocumentBackend(SecretsBackend):
    """A store holding each secret as one JSON document with its stages, replaced by compare-and-set.

    Subclasses provide _load(secret) -> (document or None, token) and _store(secret, document, token)
    -> new token, where the store refuses the write when ``token`` is no longer the latest.
    """

    def _load(self, secret):  # pragma: no cover - interface
        raise NotImplementedError

    def _store(self, secret, document, token):  # pragma: no cover - interface
        raise NotImplementedError

    def _version_for_token(self, token):
        """Version id a write made against ``token`` creates."""
        return int(token or 0) + 1

    def _read(self, secret):
        document, token = self._load(secret)
        if document is None:
            return SecretState(exists=False, token=token)
        if not isinstance(document, dict) or document.get("format") != DOC_FORMAT:
            raise SecretsBackendError(
                "%s does not hold a locksmith.ops secret document (no 'format: %s'); "
                "choose another path, or move the existing data away first" % (self.describe(secret), DOC_FORMAT)
            )
        state = SecretState(exists=True, token=token, promoted_at=document.get("promoted_at"))
        for name in STAGES:
            entry = document.get(name)
            if not entry:
                continue
            # Edited by hand or damaged: named here, never read half-way (the value is not shown).
            try:
                if not isinstance(entry["value"], dict):
                    raise TypeError("its value is not a mapping")
                setattr(state, name, Version(entry["version"], entry["value"], entry.get("created")))
            except (KeyError, TypeError, ValueError) as err:
                raise SecretsBackendError(
                    "%s holds a damaged %s version (%s: %s); put the document back from the store's history or "
                    "a backup, or delete the secret and rotate it again"
                    % (self.describe(secret), name, type(err).__name__, err)
                ) from err
        return state

    @staticmethod
    def _document(state):
        document = {"format": DOC_FORMAT, "promoted_at": state.promoted_at}
        for name in STAGES:
            version = state.stage(name)
            if version is not None:
                document[name] = {"version": version.version_id, "created": version.created, "value": version.value}
        return document

    def _replace(self, secret, state, **changes):
        new = SecretState(
            exists=True,
            pending=state.pending,
            current=state.current,
            previous=state.previous,
            promoted_at=state.promoted_at,
        )
        for key, value in changes.items():
            setattr(new, key, value)
        new.token = self._store(secret, self._document(new), state.token)
        return new

    def next_version_hint(self, state):
        return str(self._version_for_token(state.token))

    def stage(self, secret, state, value, now):
        if state.pending is not None:
            raise BackendConflict(
                "%s already holds pending version %s; resume or roll it back instead of staging another"
                % (self.describe(secret), state.pending.version_id)
            )
        return self._replace(secret, state, pending=Version(self._version_for_token(state.token), value, now))

    def promote(self, secret, state, now):
        return self._replace(
            secret, state, pending=None, current=state.pending, previous=state.current, promoted_at=now
        )

    def discard_pending(self, secret, state):
        return self._replace(secret, state, pending=None)

    def drop_previous(self, secret, state):
        return self._replace(secret, state, previous=None)


def dumps(value):
    """Canonical JSON for stored values (sorted keys, so equal values give equal bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# The backend files import the base classes above, so they are imported last (a circular import
# that is safe because every name they need is already defined).
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend.aws import AwsBackend  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend.file import FileBackend  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend.vault import VaultBackend  # noqa: E402

BACKENDS = {"aws": AwsBackend, "file": FileBackend, "vault": VaultBackend}


def make_backend(options):
    """The backend named by options['backend'], validated (no I/O yet)."""
    backend = BACKENDS[options["backend"]](options)
    backend.validate()
    return backend
