"""Secret stores without a network: the file store's compare-and-set, option checks, and the AWS label rules."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import (
    BACKENDS,
    BackendConflict,
    BackendDenied,
    SecretsBackendError,
    SecretState,
    make_backend,
    secret_strings,
    secrets_backend_argument_spec,
    validate_secret_name,
)
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import aws as aws_backend

NOW = 1_800_000_000.0


def options(**over):
    opts = {name: spec.get("default") for name, spec in secrets_backend_argument_spec().items()}
    opts.update(over)
    return opts


@pytest.fixture
def store(tmp_path):
    return make_backend(options(backend="file", file_path=str(tmp_path / "s.json")))


def test_backends_dict_and_spec_agree():
    assert sorted(BACKENDS) == secrets_backend_argument_spec()["backend"]["choices"]


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (dict(backend="file"), "backend 'file' needs file_path"),
        (dict(backend="vault"), "backend 'vault' needs vault_url"),
        (dict(backend="vault", vault_url="http://v"), "vault_auth_method 'token' needs vault_token"),
        (
            dict(backend="vault", vault_url="http://v", vault_auth_method="approle", vault_role_id="r"),
            "vault_auth_method 'approle' needs vault_secret_id",
        ),
        (
            dict(backend="vault", vault_url="http://v", vault_auth_method="userpass"),
            "needs vault_username and vault_password",
        ),
    ],
)
def test_validate_names_the_missing_options(opts, message):
    with pytest.raises(SecretsBackendError, match=message):
        make_backend(options(**opts))


def test_file_store_stages_promotes_and_keeps_previous(store, tmp_path):
    empty = store.read("app/db")
    assert empty.exists is False and store.next_version_hint(empty) == "1"
    staged = store.stage("app/db", empty, {"password": "p1"}, NOW)
    assert staged.pending.version_id == "1" and staged.current is None
    promoted = store.promote("app/db", staged, NOW + 1)
    assert promoted.current.value == {"password": "p1"} and promoted.promoted_at == NOW + 1
    second = store.promote("app/db", store.stage("app/db", promoted, {"password": "p2"}, NOW + 2), NOW + 3)
    assert second.current.version_id == "3" and second.previous.version_id == "1"
    assert store.read("app/db").markers() == {"pending": None, "current": "<secret v3>", "previous": "<secret v1>"}
    dropped = store.drop_previous("app/db", second)
    assert dropped.previous is None
    assert oct(os.stat(tmp_path / "s.json").st_mode & 0o777) == "0o600"


def test_file_store_refuses_a_stale_write_and_a_second_pending(store):
    first = store.read("s")
    store.stage("s", first, {"value": "a"}, NOW)
    with pytest.raises(BackendConflict, match="changed since it was read"):
        store.stage("s", first, {"value": "b"}, NOW)  # computed from the old state: refused
    with pytest.raises(BackendConflict, match="already holds pending version 1"):
        store.stage("s", store.read("s"), {"value": "b"}, NOW)
    assert store.discard_pending("s", store.read("s")).pending is None


def test_file_store_refuses_a_readable_file_and_foreign_json(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"format": "locksmith.secrets-file/1", "secrets": {}}))
    path.chmod(0o644)
    store = make_backend(options(backend="file", file_path=str(path)))
    with pytest.raises(BackendDenied, match=r"readable by group or others \(mode 644\); run `chmod 600"):
        store.read("s")
    path.chmod(0o600)
    path.write_text("not json")
    with pytest.raises(SecretsBackendError, match="cannot be read as a locksmith secrets file"):
        store.read("s")
    path.write_text(json.dumps({"format": "locksmith.secrets-file/1", "secrets": {"s": {"current": 1}}}))
    with pytest.raises(SecretsBackendError, match=r"does not hold a locksmith\.ops secret document"):
        store.read("s")


def test_secret_strings_skip_usernames():
    assert secret_strings({"username": "app", "password": "pw", "n": 3}) == ["pw"]
    assert SecretState().values() == []


class FakeSecretsManager:
    """Only what AwsBackend.read uses, answering from a fixed label map."""

    def __init__(self, stages, tags=()):
        self.stages = stages
        self.tags = list(tags)

    def describe_secret(self, SecretId):
        return {"VersionIdsToStages": self.stages, "Tags": self.tags}

    def list_secret_version_ids(self, SecretId, IncludeDeprecated):
        return {"Versions": [{"VersionId": vid} for vid in self.stages]}

    def get_secret_value(self, SecretId, VersionId, VersionStage):
        assert VersionStage in self.stages[VersionId]  # always read by label
        return {"SecretString": json.dumps({"password": VersionId})}


def aws_with(fake):
    backend = aws_backend.AwsBackend(options(backend="aws", aws_region="eu-west-1"))
    backend._client = fake
    return backend


def test_aws_first_version_labelled_current_and_pending_is_still_pending():
    state = aws_with(FakeSecretsManager({"v1": ["AWSCURRENT", "AWSPENDING"]})).read("s")
    assert state.current is None and state.pending.version_id == "v1"


def test_aws_promotion_time_comes_from_the_tag_of_the_current_version():
    tags = [{"Key": "locksmith:promoted", "Value": "v2 1800000000.5"}]
    state = aws_with(FakeSecretsManager({"v1": ["AWSPREVIOUS"], "v2": ["AWSCURRENT"]}, tags)).read("s")
    assert state.promoted_at == 1800000000.5 and state.previous.version_id == "v1"
    stale = [{"Key": "locksmith:promoted", "Value": "v1 1700000000"}]
    assert aws_with(FakeSecretsManager({"v2": ["AWSCURRENT"]}, stale)).read("s").promoted_at == 0.0


def test_aws_refuses_a_label_on_two_versions():
    with pytest.raises(BackendConflict, match="has AWSCURRENT on 2 versions"):
        aws_with(FakeSecretsManager({"v1": ["AWSCURRENT"], "v2": ["AWSCURRENT"]})).read("s")


class HandMadeSecretsManager(FakeSecretsManager):
    """A secret made by hand in Secrets Manager: its value is not the JSON object secret_rotate writes."""

    def __init__(self, answer):
        super().__init__({"v1": ["AWSCURRENT"]})
        self.answer = answer

    def get_secret_value(self, SecretId, VersionId, VersionStage):
        return self.answer


@pytest.mark.parametrize(
    "answer",
    [{"SecretString": "hunter2-plain"}, {"SecretString": '["hunter2-list"]'}, {"SecretBinary": b"hunter2-bin"}],
)
def test_aws_a_hand_made_value_is_named_not_crashed_on_and_never_shown(answer):
    with pytest.raises(SecretsBackendError, match=r"version v1 \(AWSCURRENT\) is not a JSON object") as err:
        aws_with(HandMadeSecretsManager(answer)).read("s")
    assert "hunter2" not in str(err.value)


class RefusingSecretsManager:
    def __init__(self, code):
        self.code = code

    def describe_secret(self, SecretId):
        import botocore.exceptions

        raise botocore.exceptions.ClientError({"Error": {"Code": self.code, "Message": "no"}}, "DescribeSecret")


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        ("AccessDeniedException", BackendDenied, "permission denied to describe the secret .*allow secretsmanager:"),
        ("InvalidRequestException", BackendConflict, "re-run to continue"),
        ("InternalServiceError", SecretsBackendError, r"cannot describe the secret \(InternalServiceError\)"),
    ],
)
def test_aws_errors_become_messages_that_name_the_fix(code, error, message):
    with pytest.raises(error, match=message):
        aws_with(RefusingSecretsManager(code)).read("s")


def test_vault_read_works_with_old_and_new_hvac_signatures():
    """Debian 12's hvac 0.11 has no raise_on_deleted_version; hvac >= 1.1 wants it set."""
    from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import vault as vault_backend

    calls = []
    reply = {"data": {"data": {"value": "x"}, "metadata": {"version": 3}}}

    def old_read(path, version=None, mount_point="secret"):
        calls.append({"path": path, "mount_point": mount_point})
        return reply

    def new_read(path, version=None, mount_point="secret", raise_on_deleted_version=None):
        calls.append({"path": path, "raise_on_deleted_version": raise_on_deleted_version})
        return reply

    for read in (old_read, new_read):
        backend = vault_backend.VaultBackend.__new__(vault_backend.VaultBackend)
        backend.options = {"vault_mount": "secret"}
        kv = type("KV", (), {"read_secret_version": staticmethod(read)})
        client = type("Client", (), {"secrets": type("S", (), {"kv": type("K", (), {"v2": kv})})})
        backend.client = lambda client=client: client
        assert backend._load("app/key") == ({"value": "x"}, 3)
    assert calls == [
        {"path": "app/key", "mount_point": "secret"},
        {"path": "app/key", "raise_on_deleted_version": True},
    ]


@pytest.mark.parametrize("name", ["prod/app-db", "api/token", "webhooks/signing", "a.b@c+d=e_f-g/h1", "x" * 512])
def test_plain_secret_names_pass(name):
    assert validate_secret_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../../sys/mounts",
        "a/../../b",
        "./a",
        "/abs",
        "trailing/",
        "a//b",
        "",
        None,
        "x?list=true",
        "x#frag",
        "a%2F..%2Fb",
        "a b",
        "line\nbreak",
        "trailing/newline\n",
        "users'; DROP TABLE users; --",
        "x" * 513,
    ],
)
def test_names_that_are_not_plain_paths_are_refused_before_any_read(store, name):
    with pytest.raises(SecretsBackendError, match=r"is not a plain path.*nothing was read or written"):
        store.read(name)
    assert not os.path.exists(store.options["file_path"])


def test_file_store_lock_never_follows_a_planted_link(store, tmp_path):
    # Someone who can write the directory names <file_path>.lock after a file of the module's user: a symlink,
    # a dangling symlink (which open(..., "a") would create) or a hard link (which chmod would change).
    victim = tmp_path / "victim"
    victim.write_text("keep")
    victim.chmod(0o644)
    lock = tmp_path / "s.json.lock"
    for plant, message in (
        (lambda: lock.symlink_to(victim), "cannot be opened"),
        (lambda: lock.symlink_to(tmp_path / "created-by-the-link"), "cannot be opened"),
        (lambda: os.link(victim, lock), "not a regular file of this user with one link"),
        (lambda: os.mkfifo(lock), "cannot be opened"),  # O_NONBLOCK: ENXIO with no reader, never a hang
    ):
        plant()
        with pytest.raises(SecretsBackendError, match=message):
            store.stage("s", store.read("s"), {"value": "a"}, NOW)
        lock.unlink()
    assert oct(victim.stat().st_mode & 0o777) == "0o644" and victim.read_text() == "keep"
    assert not (tmp_path / "created-by-the-link").exists() and not (tmp_path / "s.json").exists()
    store.stage("s", store.read("s"), {"value": "a"}, NOW)  # a plain lock file of its own: fine
    assert oct(lock.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"secrets": []}, "'secrets' is not a mapping"),
        ({"secrets": {"s": "text"}}, "entry 's'"),
        ({"secrets": {"s": {"format": "locksmith.secret/1", "revision": "abc"}}}, "damaged at secret 's'"),
        ({"secrets": {"s": {"format": "locksmith.secret/1", "current": {"value": {}}}}}, "damaged current version"),
        (
            {"secrets": {"s": {"format": "locksmith.secret/1", "current": {"version": 1, "value": "pw"}}}},
            "damaged current version .*not a mapping",
        ),
        (
            {
                "secrets": {
                    "s": {"format": "locksmith.secret/1", "current": {"version": 1, "value": {}, "created": "x"}}
                }
            },
            "damaged current version",
        ),
    ],
)
def test_a_damaged_file_store_is_named_not_crashed_on(tmp_path, document, message):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"format": "locksmith.secrets-file/1", **document}))
    path.chmod(0o600)
    with pytest.raises(SecretsBackendError, match=message):
        make_backend(options(backend="file", file_path=str(path))).read("s")


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (dict(backend="file", file_path="/x", backend_timeout=0), "backend_timeout 0 must be from 1 to 3600"),
        (dict(backend="file", file_path="/x", backend_timeout=-1), "backend_timeout -1 must be from 1 to 3600"),
        (dict(backend="vault", vault_url="vault:8200", vault_token="t"), "is not an http:// or https:// URL"),
        (dict(backend="vault", vault_url="http://v", vault_token="s\u00e9cret"), "vault_token holds a character"),
        (
            dict(backend="vault", vault_url="http://v", vault_token="t", vault_ca_cert="/nonexistent/ca.pem"),
            "vault_ca_cert '/nonexistent/ca.pem' is not a file",
        ),
        (dict(backend="aws", aws_endpoint_url="not a url"), "aws_endpoint_url 'not a url' holds a space"),
    ],
)
def test_store_options_are_checked_before_any_request(opts, message):
    with pytest.raises(SecretsBackendError, match=message):
        make_backend(options(**opts))


def test_a_password_in_a_store_url_is_refused_and_never_shown():
    for opts in (
        dict(backend="vault", vault_url="https://ops:Hunter2-url@vault.example:8200", vault_token="t"),
        dict(backend="aws", aws_endpoint_url="https://ops:Hunter2-url@sm.example"),
    ):
        with pytest.raises(SecretsBackendError, match="user name or password before the host") as err:
            make_backend(options(**opts))
        assert "Hunter2-url" not in str(err.value) and "***@" in str(err.value)


def test_aws_a_secret_scheduled_for_deletion_says_so_instead_of_asking_for_a_re_run():
    import botocore.exceptions

    class Deleted(RefusingSecretsManager):
        def describe_secret(self, SecretId):
            message = "You can't perform this operation on the secret because it was marked for deletion."
            error = {"Error": {"Code": "InvalidRequestException", "Message": message}}
            raise botocore.exceptions.ClientError(error, "DescribeSecret")

    with pytest.raises(SecretsBackendError, match="is scheduled for deletion; restore it") as err:
        aws_with(Deleted("InvalidRequestException")).read("s")
    assert not isinstance(err.value, BackendConflict) and "re-run" not in str(err.value)
