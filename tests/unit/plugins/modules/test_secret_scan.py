"""secret_scan with the real detect-secrets on planted files: found at the right line, never the value."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _secret_scan
from tests.harness.ansible import run_module_inprocess

AWS_KEY = "AKIAQYLPMN5HHHFPZAM2"
SLACK_WEBHOOK = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx"
PRIVATE_KEY_BODY = "MIIEowIBAAKCAQEA7xKpq3Lm"
ENV_PASSWORD = "S3cr3t-Passw0rd-for-db"
PLANTED = (AWS_KEY, SLACK_WEBHOOK, PRIVATE_KEY_BODY, ENV_PASSWORD)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def leaky_repo(tmp_path):
    """A repository with one planted secret of each kind, each at a known line."""
    root = tmp_path / "leaky"
    files = {
        "settings": write(
            root / "app" / "settings.py",
            f'import os\n\nDEBUG = False\n# deploy user\nAWS_ACCESS_KEY_ID = "{AWS_KEY}"\n',
        ),
        "notify": write(root / "deploy" / "notify.yml", f"notify:\n  channel: ops\n  url: {SLACK_WEBHOOK}\n"),
        "key": write(
            root / "keys" / "deploy_key",
            f"deploy key\n-----BEGIN RSA PRIVATE KEY-----\n{PRIVATE_KEY_BODY}\n-----END RSA PRIVATE KEY-----\n",
        ),
        "env": write(root / ".env", f"# database\nDB_HOST=\nDB_PASSWORD={ENV_PASSWORD}\nEMPTY=''\n"),
    }
    return root, files


@pytest.fixture
def benign_repo(tmp_path):
    """What a clean ops repository holds: code, templated secrets, empty env files, history under .git."""
    root = tmp_path / "benign"
    write(root / "README.md", "# app\n\nRun `make test`. Passwords come from the vault.\n")
    write(
        root / "app" / "main.py", "import os\n\nPASSWORD = os.environ['DB_PASSWORD']\n\n\ndef main():\n    return 0\n"
    )
    write(root / "group_vars" / "all.yml", 'db_password: "{{ vault_db_password }}"\napp_port: 8080\n')
    write(root / ".env", "# filled in by the secrets role\nDB_PASSWORD=\nexport API_TOKEN=\n\n")
    write(root / "prod.env", "# values are rendered on the host\n")
    write(root / ".git" / "config", f"[remote]\n  url = x\n# {AWS_KEY}\n")
    write(root / "node_modules" / "pkg" / "index.js", f"const key = '{AWS_KEY}';\n")
    return root


def scan(paths, **args):
    return run_module_inprocess("secret_scan", dict(paths=[str(p) for p in paths], **args))


def test_planted_secrets_are_found_at_their_lines_and_fail(leaky_repo):
    root, files = leaky_repo
    result = scan([root])
    assert result["failed"] is True
    found = {(f["file"], f["line"], f["type"]) for f in result["findings"]}
    assert (files["settings"], 5, "AWS Access Key") in found
    assert (files["notify"], 3, "Slack Token") in found
    assert (files["key"], 2, "Private Key") in found
    assert (files["env"], 3, _secret_scan.ENV_FILE_TYPE) in found
    # The env rule reports only the assignment with a value; empty ones (lines 2 and 4) are fine.
    assert [f["line"] for f in result["findings"] if f["type"] == _secret_scan.ENV_FILE_TYPE] == [3]
    for name in ("settings", "notify", "key", "env"):
        assert "%s:" % files[name] in result["msg"]
    assert "found %d possible secret(s)" % len(result["findings"]) in result["msg"]
    assert result["files_scanned"] == 4 and result["detect_secrets_version"]


def test_no_value_and_no_hash_in_the_serialized_result(leaky_repo):
    root, _files = leaky_repo
    for fail in (True, False):
        text = json.dumps(scan([root], fail_on_findings=fail))
        for value in PLANTED:
            assert value not in text
            assert hashlib.sha1(value.encode()).hexdigest() not in text  # noqa: S324 - what detect-secrets stores
        assert "RSA PRIVATE KEY" not in text


def test_report_only_succeeds_and_returns_findings(leaky_repo):
    root, files = leaky_repo
    result = scan([root], fail_on_findings=False)
    assert result.get("failed") is not True and result["changed"] is False
    assert {f["file"] for f in result["findings"]} == set(files.values())


def test_benign_repository_is_clean(benign_repo):
    result = scan([benign_repo], exclude=["node_modules"])
    assert result.get("failed") is not True, result
    assert result["findings"] == []
    assert result["files_scanned"] == 5  # .git and node_modules were not read


def test_exclude_and_git_pruning_are_what_keeps_the_benign_repo_clean(benign_repo):
    # Control for the test above: without the exclude the planted key in node_modules is found.
    result = scan([benign_repo], fail_on_findings=False)
    assert [(os.path.basename(f["file"]), f["type"]) for f in result["findings"]] == [("index.js", "AWS Access Key")]


def test_single_file_path_and_check_mode(leaky_repo):
    _root, files = leaky_repo
    result = run_module_inprocess("secret_scan", dict(paths=[files["env"]], fail_on_findings=False), check=True)
    # detect-secrets' keyword plugin and the env rule both report the password line, and nothing else.
    assert result["findings"] == [
        {"file": files["env"], "line": 3, "type": _secret_scan.ENV_FILE_TYPE},
        {"file": files["env"], "line": 3, "type": "Secret Keyword"},
    ]
    assert result["files_scanned"] == 1


def test_disable_plugins_and_env_rule_off(leaky_repo):
    root, _files = leaky_repo
    result = scan(
        [root], fail_on_findings=False, disable_plugins=["AWSKeyDetector", "KeywordDetector"], env_file_patterns=[]
    )
    kinds = {f["type"] for f in result["findings"]}
    assert "AWS Access Key" not in kinds and _secret_scan.ENV_FILE_TYPE not in kinds
    assert {"Slack Token", "Private Key"} <= kinds


def test_large_files_and_symlinks_are_skipped_and_listed(tmp_path):
    big = write(tmp_path / "repo" / "dump.sql", "x" * 2048 + f"\n{AWS_KEY}\n")
    link = tmp_path / "repo" / "link.env"
    link.symlink_to(tmp_path / "elsewhere.env")
    write(tmp_path / "elsewhere.env", f"TOKEN={ENV_PASSWORD}\n")
    result = scan([tmp_path / "repo"], max_file_size_bytes=1024)
    assert result.get("failed") is not True and result["findings"] == []
    assert sorted(result["skipped"], key=lambda s: s["file"]) == [
        {"file": big, "reason": "larger than max_file_size_bytes"},
        {"file": str(link), "reason": "symlink, not followed"},
    ]


def test_errors_name_the_input_and_the_fix(tmp_path):
    missing = scan([tmp_path, tmp_path / "nope"])
    assert missing["failed"] and "paths[1] '%s' does not exist" % (tmp_path / "nope") in missing["msg"]
    plugin = scan([tmp_path], disable_plugins=["NoSuchDetector"])
    assert plugin["failed"] and "unknown detect-secrets plugins NoSuchDetector" in plugin["msg"]
    assert "AWSKeyDetector" in plugin["msg"]
    size = scan([tmp_path], max_file_size_bytes=0)
    assert size["failed"] and "set a positive size" in size["msg"]


def test_missing_detect_secrets_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(_secret_scan, "HAS_DETECT_SECRETS", False)
    monkeypatch.setattr(_secret_scan, "DETECT_SECRETS_IMPORT_ERROR", "ImportError: No module named 'detect_secrets'")
    result = scan([tmp_path])
    assert result["failed"] and "detect-secrets" in result["msg"]
