"""Pure helpers of _secret_scan: the env-file rule, path walking and the failure message."""

from __future__ import annotations

import os
import threading

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _secret_scan


@pytest.mark.parametrize(
    ("raw", "is_set"),
    [
        ("secret", True),
        ("''", False),
        ('""', False),
        ("'x y'", True),
        ('"unterminated', True),
        ("", False),
        ("   # only a comment", False),
        ("value # comment", True),
        ("a#b", True),
    ],
)
def test_env_value_is_set(raw, is_set):
    assert _secret_scan.env_value_is_set(raw) is is_set


def test_env_file_lines_skips_comments_blanks_and_empty_values(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# KEY=commented\n\nA=\nexport B=1\n  C = 'two words'\nnot an assignment\nD=''\n", encoding="utf-8")
    assert _secret_scan.env_file_lines(str(path)) == [4, 5]


def test_iter_files_prunes_git_and_excluded_globs(tmp_path):
    for rel in (".git/HEAD", "a/.git/x", "a/b.txt", "a/skip.lock", "vendor/x.py", "c/vendor/y.py", "top.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x", encoding="utf-8")
    found = [p for p, _reason in _secret_scan.iter_files(str(tmp_path), ["*.lock", "vendor"])]
    assert [p[len(str(tmp_path)) + 1 :] for p in found] == ["top.txt", "a/b.txt"]
    by_relative = [p for p, _reason in _secret_scan.iter_files(str(tmp_path), ["a/*", "c/vendor"])]
    assert sorted(p[len(str(tmp_path)) + 1 :] for p in by_relative) == ["top.txt", "vendor/x.py"]


def test_failure_message_lists_files_and_caps_the_list():
    findings = [{"file": "/r/f%d" % i, "line": i, "type": "Secret Keyword"} for i in range(25)]
    msg = _secret_scan.failure_message(findings, limit=3)
    assert msg.startswith("found 25 possible secret(s): /r/f0:0 (Secret Keyword), /r/f1:1")
    assert "and 22 more" in msg and "/r/f3:" not in msg
    assert "exclude" in msg and "rotate" in msg


def test_fifos_and_links_are_skipped_not_opened(tmp_path):
    # Opening a FIFO blocks until something writes to it: a scan of a tree holding one never ended.
    os.mkfifo(tmp_path / "pipe.env")
    (tmp_path / "link.env").symlink_to("/etc/hostname")
    (tmp_path / "app.env").write_text("KEY=value\n")
    params = {name: spec.get("default") for name, spec in _secret_scan.secret_scan_argument_spec().items()}
    params["paths"] = [str(tmp_path)]
    result = {}
    worker = threading.Thread(target=lambda: result.update(_secret_scan.scan(params)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the scan blocked"
    assert result["files_scanned"] == 1
    assert result["findings"] == [{"file": str(tmp_path / "app.env"), "line": 1, "type": _secret_scan.ENV_FILE_TYPE}]
    assert {item["file"]: item["reason"] for item in result["skipped"]} == {
        str(tmp_path / "link.env"): "symlink, not followed",
        str(tmp_path / "pipe.env"): "not a regular file (a FIFO, socket or device)",
    }
