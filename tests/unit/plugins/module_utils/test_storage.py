from __future__ import annotations

import errno
import re

import botocore.exceptions
import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _storage
from ansible_collections.locksmith.ops.plugins.module_utils._storage import local, s3
from tests.unit.plugins.module_utils import _manifests
from tests.unit.plugins.module_utils._manifests import DAMAGE


def dest(**options):
    base = {k: v.get("default") for k, v in _storage.destination_spec().items()}
    base.update(options)
    return base


def test_retries_transient_errors_with_warnings_then_gives_up():
    calls, warnings, sleeps = [], [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _storage.TransientError("SlowDown")
        return "ok"

    assert _storage.with_retries(flaky, "uploading", warnings, sleep=sleeps.append) == "ok"
    assert len(warnings) == 2 and "retry 1 of 3" in warnings[0] and all(0 <= s <= 1.0 for s in sleeps)

    def down():
        raise _storage.TransientError("503")

    with pytest.raises(_storage.StorageError, match="failed after 4 attempts"):
        _storage.with_retries(down, "uploading", [], sleep=lambda s: None)


def test_permanent_errors_are_not_retried():
    calls = []

    def denied():
        calls.append(1)
        raise _storage.StorageDenied("no")

    with pytest.raises(_storage.StorageDenied):
        _storage.with_retries(denied, "x", [], sleep=lambda s: None)
    assert calls == [1]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"type": "local", "path": "relative/dir"}, "path must be absolute"),
        ({"type": "local", "path": "/srv", "bucket": "b"}, "bucket do not apply to type local"),
        ({"type": "s3", "bucket": "b", "path": "/x"}, "path do not apply to type s3"),
        ({"type": "s3", "bucket": "b", "sse_kms_key_id": "k"}, "needs sse=aws:kms"),
        ({"type": "s3", "bucket": "b", "access_key": "a"}, "go together"),
        ({"type": "s3", "bucket": "b", "prefix": "a/../b"}, "may not contain"),
        ({"type": "s3", "bucket": "b", "endpoint_url": "s3.example.com"}, "is not an http:// or https:// URL"),
        ({"type": "s3", "bucket": "b", "endpoint_url": "http://s3:99999"}, "port that is not a number"),
        (
            {"type": "s3", "bucket": "b", "endpoint_url": "https://ak:Hunter2-url@s3.example.com"},
            r"endpoint_url 'https://\*\*\*@s3.example.com' holds a user name or password",
        ),
    ],
)
def test_validate_names_the_destination_and_the_fix(options, match):
    with pytest.raises(_storage.StorageError, match=match) as err:
        _storage.build_destinations([dest(**options)], [])
    assert str(err.value).startswith("destinations[0] ")


def test_empty_destinations_are_refused():
    with pytest.raises(_storage.StorageError, match="at least one"):
        _storage.build_destinations([], [])


@pytest.mark.parametrize(
    "label", ["public'; DROP TABLE users; --", "../../../etc/passwd", "", "a/b", None, "app\n", "all-databases\n"]
)
def test_labels_refuse_injection_and_paths(label):
    with pytest.raises(_storage.StorageError, match="not a plain database name"):
        _storage.validate_label(label)


def test_backup_ids_round_trip():
    backup_id = _storage.new_backup_id(1795750555.7)
    assert _storage.BACKUP_ID.match(backup_id) and _storage.parse_backup_id(backup_id) == 1795750555
    assert _storage.parse_backup_id("not-an-id") is None
    assert _storage.parse_backup_id(backup_id + "\n") is None


def _client_error(code, status=400):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("code", "status", "describe", "kind", "match"),
    [
        ("SlowDown", 503, "uploading", _storage.TransientError, "SlowDown"),
        ("InternalError", 500, "uploading", _storage.TransientError, "InternalError"),
        ("AccessDenied", 403, "uploading 'k'", _storage.StorageDenied, "allow s3:ListBucket"),
        ("InvalidAccessKeyId", 403, "listing", _storage.StorageDenied, "check the credentials"),
        ("NoSuchBucket", 404, "listing", _storage.StorageMissing, "bucket 'bkt' does not exist"),
        ("404", 404, "checking bucket 'bkt'", _storage.StorageMissing, "create it first"),
        ("NoSuchKey", 404, "reading 'k'", _storage.StorageMissing, "object not found"),
        ("Weird", 400, "reading 'k'", _storage.StorageError, "Weird"),
    ],
)
def test_s3_errors_map_to_actionable_classes(code, status, describe, kind, match):
    destination = s3.S3Destination(0, dest(type="s3", bucket="bkt"), [])
    err = destination._translate(describe, _client_error(code, status))
    assert err.__class__ is kind and (kind is _storage.TransientError or "destinations[0] s3://bkt/" in str(err))
    assert match in str(err)


class FakeClient:
    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def head_bucket(self, **kwargs):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {}


def test_s3_call_retries_connection_errors_and_reports_missing_credentials(monkeypatch):
    warnings = []
    destination = s3.S3Destination(0, dest(type="s3", bucket="bkt"), warnings)
    monkeypatch.setattr(_storage.time, "sleep", lambda s: None)
    destination._client = FakeClient([botocore.exceptions.EndpointConnectionError(endpoint_url="http://x")])
    destination.check_access(True)
    assert destination._client.calls == 2 and "retry 1 of 3" in warnings[0]
    destination._client = FakeClient([botocore.exceptions.NoCredentialsError()])
    with pytest.raises(_storage.StorageDenied, match="no AWS credentials found"):
        destination.check_access(True)


def test_s3_composite_checksum_and_part_policy():
    assert s3.part_size_for(1) == s3.PART_SIZE and s3.part_size_for(1001) == 2 * s3.PART_SIZE
    assert s3.strip_part_count("abc=-3") == "abc=" and s3.strip_part_count(None) is None
    assert s3.composite_checksum([b"\0" * 32]) != s3.composite_checksum([b"\1" * 32])


def test_s3_confirm_refuses_a_wrong_size_or_checksum():
    destination = s3.S3Destination(0, dest(type="s3", bucket="bkt"), [])
    destination.confirm("a", "k", {"size": 3, "checksum": "x"}, {"size": 3, "checksum": "x"})
    with pytest.raises(_storage.StorageError, match="not counted"):
        destination.confirm("a", "k", {"size": 3, "checksum": "x"}, {"size": 3, "checksum": "y"})
    with pytest.raises(_storage.StorageError, match="missing after upload"):
        destination.confirm("a", "k", {"size": 3}, None)


def test_local_full_disk_is_reported_as_such(tmp_path, monkeypatch):
    destination = local.LocalDestination(0, dest(type="local", path=str(tmp_path)), [])
    writer = destination.open_writer("app", _storage.new_backup_id(0))
    sink = writer.open_artefact("app.dump")

    class Full:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    sink._file = Full()
    with pytest.raises(_storage.StorageFull, match=r"no space left on device while writing .*free space there"):
        sink.write(b"x")
    sink.abort()
    writer.abort()
    assert destination.list_backups("app") == []


def test_local_permission_and_missing_errors(tmp_path):
    missing = local.LocalDestination(1, dest(type="local", path=str(tmp_path / "nope")), [])
    with pytest.raises(_storage.StorageMissing, match=r"destinations\[1\] .*does not exist; create it"):
        missing.check_access(True)
    assert isinstance(local._os_error(missing, "x", OSError(errno.EROFS, "Read-only")), _storage.StorageDenied)
    assert local._os_error(missing, "x", OSError(errno.EIO, "I/O")).__class__ is _storage.StorageError
    present = local.LocalDestination(0, dest(type="local", path=str(tmp_path)), [])
    assert present.labels() == [] and present.stat("app", "x", "y") is None
    with pytest.raises(_storage.StorageError, match="leaves the backup directory"):
        present.stat("app", "20261127T000000Z-0000", "../../../etc/passwd")
    with pytest.raises(_storage.StorageMissing, match="incomplete"):
        list(present.read_chunks("app", "20261127T000000Z-0000", "manifest.json"))


def test_the_base_class_leaves_every_action_to_backends():
    from ansible_collections.locksmith.ops.plugins.module_utils._storage.base import Destination

    base = Destination(0, {}, [])
    for call in (
        lambda: base.url,
        lambda: base.location("a", "b"),
        lambda: base.check_access(True),
        base.labels,
        lambda: base.list_backups("a"),
        lambda: base.open_writer("a", "b"),
        lambda: base.read_chunks("a", "b", "c"),
        lambda: base.stat("a", "b", "c"),
        lambda: base.delete("a", "b"),
    ):
        with pytest.raises(NotImplementedError):
            call()


def test_an_unreadable_manifest_makes_the_backup_incomplete(tmp_path):
    backup_id = _storage.new_backup_id(0)
    (tmp_path / "app" / backup_id).mkdir(parents=True)
    (tmp_path / "app" / backup_id / "manifest.json").write_bytes(b"{not json")
    (tmp_path / "app" / "unrelated").mkdir()
    destination = local.LocalDestination(0, dest(type="local", path=str(tmp_path)), [])
    [entry] = destination.list_backups("app")
    assert entry.complete is False and entry.summary()["complete"] is False
    assert destination.labels() == ["app"]


def test_a_name_shaped_like_a_backup_id_with_no_real_date_is_not_a_backup(tmp_path):
    # Month 13, hour 99: strptime raised out of every module listing the destination, so no backup could run.
    assert _storage.parse_backup_id("20261399T999999Z-0000") is None
    (tmp_path / "app" / "20261399T999999Z-0000").mkdir(parents=True)
    (tmp_path / "app" / "20261399T999999Z-0000" / "manifest.json").write_text("{}")
    destination = local.LocalDestination(0, dest(type="local", path=str(tmp_path)), [])
    assert destination.list_backups("app") == []


@pytest.mark.parametrize("rule", ["keep_last", "daily", "weekly", "monthly", "max_age_days"])
def test_negative_retention_is_refused_before_anything_runs(tmp_path, rule):
    # keep_last -2 pruned the two oldest backups (a slice from the end); max_age_days -1 pruned all but the newest.
    with pytest.raises(_storage.StorageError, match="retention %s must be 0 or more" % rule):
        _storage.build_destinations([dest(type="local", path=str(tmp_path), retention={rule: -1})], [])


@pytest.mark.parametrize(("message", "damage"), DAMAGE.values(), ids=DAMAGE.keys())
def test_a_manifest_field_of_the_wrong_type_makes_the_backup_incomplete_naming_it(tmp_path, message, damage):
    # Restores, verification and row-count checks call .get() on these, iterate or index them: the wrong type
    # was an AttributeError or TypeError there. The one shape check refuses it for every reader at once.
    _manifests.store(tmp_path, _manifests.NEWER, damage)
    [entry] = local.LocalDestination(0, dest(type="local", path=str(tmp_path)), []).list_backups("app")
    assert entry.complete is False
    assert re.match("manifest.json is malformed: " + message, entry.manifest_error), entry.manifest_error


def test_a_manifest_as_pg_backup_writes_it_passes_the_shape_check(tmp_path):
    # An encrypted backup, and a table never analyzed (its estimate is null): both are what pg_backup writes.
    encrypted = {"algorithm": "AES-256-GCM-STREAM", "key_id": "3f2a9c0d1e4b5a67", "chunk_bytes": 1048576}
    _manifests.store(tmp_path, _manifests.NEWER, lambda m: m.update(encryption=encrypted))
    _manifests.store(tmp_path, _manifests.OLDER, lambda m: m.pop("row_counts"))
    entries = local.LocalDestination(0, dest(type="local", path=str(tmp_path)), []).list_backups("app")
    assert [(e.complete, e.manifest_error) for e in entries] == [(True, None), (True, None)]
