# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""AWS Secrets Manager as a secret store, through boto3, with its own staging labels.

Stages map to AWSPENDING, AWSCURRENT and AWSPREVIOUS; the value of each version is the JSON object
itself, so any AWS consumer reading AWSCURRENT gets {"username": ..., "password": ...}. Reads always
pass VersionStage (and the version id), never rely on "the default version". When the pending version
is promoted, the label move names the version it is taken from, so a concurrent change is refused.
The time of the newest promotion is kept in a tag that names the version it belongs to.
"""

from __future__ import annotations

import json
import uuid

from ansible_collections.locksmith.ops.plugins.module_utils import _urls
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import (
    BackendConflict,
    BackendDenied,
    BackendUnavailable,
    SecretsBackend,
    SecretsBackendError,
    SecretState,
    Version,
    dumps,
)

try:
    import boto3
    import botocore.config
    import botocore.exceptions

    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError as import_error:  # pragma: no cover - exercised by the missing_required_lib path
    boto3 = None
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = import_error

LABELS = {"pending": "AWSPENDING", "current": "AWSCURRENT", "previous": "AWSPREVIOUS"}
PROMOTED_TAG = "locksmith:promoted"
DENIED_CODES = ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidSignatureException")


def _json_object(text):
    """The dict a SecretString holds, or None when it is absent, not JSON, or not a JSON object."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class AwsBackend(SecretsBackend):
    """One Secrets Manager secret per name; the version ids are Secrets Manager's VersionIds."""

    name = "aws"

    def __init__(self, options):
        super().__init__(options)
        self._client = None

    def validate(self):
        super().validate()
        endpoint = self.options.get("aws_endpoint_url")
        problem = _urls.http_url_problem(endpoint) if endpoint is not None else None
        if problem:
            raise SecretsBackendError(
                "aws_endpoint_url %r %s; give one like https://secretsmanager.eu-west-1.amazonaws.com or leave it "
                "unset for AWS" % (_urls.redact_url(endpoint), problem)
            )

    def describe(self, secret):
        region = self.options.get("aws_region") or "the default region"
        return "AWS Secrets Manager in %s, secret '%s'" % (region, secret)

    def client(self):
        if self._client is None:
            session = boto3.session.Session(
                profile_name=self.options.get("aws_profile"),
                aws_access_key_id=self.options.get("aws_access_key"),
                aws_secret_access_key=self.options.get("aws_secret_key"),
                aws_session_token=self.options.get("aws_session_token"),
                region_name=self.options.get("aws_region"),
            )
            config = botocore.config.Config(
                connect_timeout=self.timeout, read_timeout=self.timeout, retries={"max_attempts": 2, "mode": "standard"}
            )
            self._client = session.client(
                "secretsmanager", endpoint_url=self.options.get("aws_endpoint_url"), config=config
            )
        return self._client

    def _call(self, secret, action, method, **kwargs):
        try:
            return getattr(self.client(), method)(**kwargs)
        except botocore.exceptions.ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in DENIED_CODES:
                raise BackendDenied(
                    "%s: permission denied to %s (%s); allow secretsmanager:%s for these credentials"
                    % (self.describe(secret), action, code, err.operation_name)
                ) from err
            if code == "ResourceNotFoundException":
                if method == "describe_secret":
                    raise  # _read: a secret that does not exist yet
                # Deleted by someone else between two calls of this run; the next run starts from what is there.
                raise BackendConflict(
                    "%s: cannot %s (it was deleted while this run was using it); re-run to continue from the new state"
                    % (self.describe(secret), action)
                ) from err
            if code == "InvalidRequestException" and "deletion" in str(err):
                # Re-running never helps here: the secret waits out its recovery window unless restored.
                raise SecretsBackendError(
                    "%s is scheduled for deletion; restore it (aws secretsmanager restore-secret --secret-id ...) "
                    "or rotate under another name" % self.describe(secret)
                ) from err
            if code in ("InvalidParameterException", "InvalidRequestException", "ResourceExistsException"):
                raise BackendConflict(
                    "%s: cannot %s (%s); the secret changed while this run was using it, re-run to continue"
                    % (self.describe(secret), action, code)
                ) from err
            raise SecretsBackendError("%s: cannot %s (%s)" % (self.describe(secret), action, code)) from err
        except (botocore.exceptions.BotoCoreError, OSError) as err:
            raise BackendUnavailable(
                "%s: cannot %s (%s); check aws_region, aws_endpoint_url and network access to Secrets Manager"
                % (self.describe(secret), action, type(err).__name__)
            ) from err

    def _read(self, secret):
        try:
            meta = self._call(secret, "describe the secret", "describe_secret", SecretId=secret)
        except botocore.exceptions.ClientError:
            return SecretState(exists=False)
        # DescribeSecret still answers for a secret scheduled for deletion; every other call is refused.
        if meta.get("DeletedDate"):
            raise SecretsBackendError(
                "%s is scheduled for deletion; restore it (aws secretsmanager restore-secret --secret-id ...) "
                "or rotate under another name" % self.describe(secret)
            )
        by_label = {}
        for version_id, labels in (meta.get("VersionIdsToStages") or {}).items():
            for label in labels:
                by_label.setdefault(label, []).append(version_id)
        created = {}
        if by_label:
            listing = self._call(
                secret, "list versions", "list_secret_version_ids", SecretId=secret, IncludeDeprecated=False
            )
            created = {v["VersionId"]: v.get("CreatedDate") for v in listing.get("Versions", [])}
        state = SecretState(exists=True, token=meta.get("VersionIdsToStages") or {})
        for stage, label in LABELS.items():
            ids = by_label.get(label, [])
            if len(ids) > 1:
                raise BackendConflict(
                    "%s has %s on %d versions (%s); fix the labels with update-secret-version-stage first"
                    % (self.describe(secret), label, len(ids), ", ".join(ids))
                )
            if ids:
                response = self._call(
                    secret,
                    "read the %s version" % label,
                    "get_secret_value",
                    SecretId=secret,
                    VersionId=ids[0],
                    VersionStage=label,
                )
                stamp = created.get(ids[0])
                value = _json_object(response.get("SecretString"))
                if value is None:
                    # Never quote the value: it is the secret, maybe written by hand in another format.
                    raise SecretsBackendError(
                        "%s: version %s (%s) is not a JSON object as secret_rotate writes (a plain string, a "
                        "JSON list or SecretBinary); choose another secret name, or move %s off that version"
                        % (self.describe(secret), ids[0], label, label)
                    )
                setattr(state, stage, Version(ids[0], value, stamp.timestamp() if stamp else 0))
        # Secrets Manager labels the first version of a secret AWSCURRENT by itself: while it also
        # carries AWSPENDING it was never tested, so it is pending, not current.
        if state.pending is not None and state.current is not None:
            if state.pending.version_id == state.current.version_id:
                state.current = None
        tags = {t["Key"]: t["Value"] for t in meta.get("Tags") or []}
        promoted = tags.get(PROMOTED_TAG, "").split()
        if state.current is not None:
            if len(promoted) == 2 and promoted[0] == state.current.version_id:
                state.promoted_at = float(promoted[1])
            else:
                state.promoted_at = state.current.created
        return state

    def stage(self, secret, state, value, now):
        if state.pending is not None:
            raise BackendConflict(
                "%s already holds pending version %s; resume or roll it back instead of staging another"
                % (self.describe(secret), state.pending.version_id)
            )
        if not state.exists:
            self._call(
                secret,
                "create the secret",
                "create_secret",
                Name=secret,
                Description="managed by locksmith.ops.secret_rotate",
                ClientRequestToken=str(uuid.uuid4()),
            )
        version_id = str(uuid.uuid4())
        self._call(
            secret,
            "stage a pending version",
            "put_secret_value",
            SecretId=secret,
            ClientRequestToken=version_id,
            SecretString=dumps(value),
            VersionStages=[LABELS["pending"]],
        )
        return self.read(secret)

    def promote(self, secret, state, now):
        pending = state.pending
        fresh = self.read(secret)
        if fresh.pending is None or fresh.pending.version_id != pending.version_id:
            raise BackendConflict(
                "%s: pending version %s is gone; re-run to continue from the new state"
                % (self.describe(secret), pending.version_id)
            )
        labels = fresh.token
        holder = [vid for vid, names in labels.items() if LABELS["current"] in names]
        if pending.version_id not in holder:
            move = {"MoveToVersionId": pending.version_id}
            if holder:
                move["RemoveFromVersionId"] = holder[0]
            self._call(
                secret,
                "move AWSCURRENT",
                "update_secret_version_stage",
                SecretId=secret,
                VersionStage="AWSCURRENT",
                **move,
            )
        self._call(
            secret,
            "tag the promotion",
            "tag_resource",
            SecretId=secret,
            Tags=[{"Key": PROMOTED_TAG, "Value": "%s %s" % (pending.version_id, now)}],
        )
        self._remove_label(secret, "pending", pending.version_id)
        new = self.read(secret)
        old = state.current
        # Secrets Manager moves AWSPREVIOUS by itself; do it here only where a store did not.
        if old is not None and (new.previous is None or new.previous.version_id != old.version_id):
            move = {"MoveToVersionId": old.version_id}
            if new.previous is not None:
                move["RemoveFromVersionId"] = new.previous.version_id
            self._call(
                secret,
                "move AWSPREVIOUS",
                "update_secret_version_stage",
                SecretId=secret,
                VersionStage="AWSPREVIOUS",
                **move,
            )
            new = self.read(secret)
        return new

    def _remove_label(self, secret, stage, version_id):
        self._call(
            secret,
            "remove %s" % LABELS[stage],
            "update_secret_version_stage",
            SecretId=secret,
            VersionStage=LABELS[stage],
            RemoveFromVersionId=version_id,
        )

    def discard_pending(self, secret, state):
        labels = self.read(secret).token
        if LABELS["current"] in labels.get(state.pending.version_id, []):
            raise SecretsBackendError(
                "%s: pending version %s is the secret's first version, which Secrets Manager also labels "
                "AWSCURRENT and cannot un-label; it stays pending: fix the target and re-run to resume it, "
                "or delete the secret" % (self.describe(secret), state.pending.version_id)
            )
        self._remove_label(secret, "pending", state.pending.version_id)
        return self.read(secret)

    def drop_previous(self, secret, state):
        self._remove_label(secret, "previous", state.previous.version_id)
        return self.read(secret)
