from __future__ import annotations

import os

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _atomic
from ansible_collections.locksmith.ops.plugins.module_utils._errors import ArtefactError


def test_write_atomic_replaces_whole_file_and_reports_sha256(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    digest = _atomic.write_atomic(str(target), "new content")
    assert target.read_text() == "new content"
    assert digest == _atomic.file_sha256(str(target))
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_failure_mid_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with _atomic.AtomicWriter(str(target)) as out:
            out.write(b"partial")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_size_and_hash_are_computed_while_writing(tmp_path):
    target = tmp_path / "blob"
    with _atomic.AtomicWriter(str(target), mode=0o640) as out:
        for chunk in (b"abc", b"abc", b"abc"):
            out.write(chunk)
    assert out.size == 9
    assert out.hexdigest == _atomic.file_sha256(str(target))
    assert oct(target.stat().st_mode & 0o777) == "0o640"


def test_missing_directory_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(ArtefactError, match=r"directory '.*nope' .* does not exist; create it first"):
        _atomic.write_atomic(str(tmp_path / "nope" / "x"), "y")


def test_temporary_names_are_recognisable(tmp_path):
    prefix = _atomic.temp_name_prefix(str(tmp_path / "db.dump"))
    assert _atomic.is_temporary(prefix + "abc123")
    assert not _atomic.is_temporary("db.dump")


def test_file_sha256_of_missing_file_is_none(tmp_path):
    assert _atomic.file_sha256(str(tmp_path / "missing")) is None
