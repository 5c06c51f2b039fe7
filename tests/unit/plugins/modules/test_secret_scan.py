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


def test_files_that_are_not_utf8_are_still_scanned(tmp_path):
    # detect-secrets drops a file whole at its first byte that is not UTF-8, yet it was counted as scanned: one
    # Latin-1 'é' in a comment hid every secret in the file, and a binary was neither read nor listed as skipped.
    latin1 = tmp_path / "repo" / "settings.py"
    latin1.parent.mkdir()
    latin1.write_bytes(f'# production (r\xe9seau)\n\nAWS_ACCESS_KEY_ID = "{AWS_KEY}"\n'.encode("latin-1"))
    blob = tmp_path / "repo" / "cache.db"
    blob.write_bytes(b"\x89\xfe\x00\x01header\n" + f"-----BEGIN RSA PRIVATE KEY-----\n{PRIVATE_KEY_BODY}\n".encode())
    result = scan([tmp_path / "repo"], fail_on_findings=False)
    assert result["findings"] == [{"file": str(latin1), "line": 3, "type": "AWS Access Key"}]
    assert result["files_scanned"] == 1
    assert result["skipped"] == [{"file": str(blob), "reason": "binary (not UTF-8 text, holds NUL bytes)"}]
    assert AWS_KEY not in json.dumps(result)


def test_env_file_saved_with_a_byte_order_mark(tmp_path):
    # Windows editors start a UTF-8 file with a BOM; the env rule read it as part of the first key and missed the
    # assignment on line 1 (a key without 'password' or 'token' in its name is found by no other detector).
    env = tmp_path / ".env"
    env.write_bytes(f"SESSION_SIGNING={ENV_PASSWORD}\nDEBUG=0\n".encode("utf-8-sig"))
    result = scan([env], fail_on_findings=False, disable_plugins=["Base64HighEntropyString"])
    assert [(f["line"], f["type"]) for f in result["findings"]] == [
        (1, _secret_scan.ENV_FILE_TYPE),
        (2, _secret_scan.ENV_FILE_TYPE),
    ]


def test_linked_directories_are_listed_as_skipped(tmp_path):
    # A link to a directory was neither followed nor listed: RV(skipped) said nothing of a whole tree left unread.
    write(tmp_path / "outside" / ".env", f"TOKEN={ENV_PASSWORD}\n")
    write(tmp_path / "repo" / "README.md", "# app\n")
    (tmp_path / "repo" / "config").symlink_to(tmp_path / "outside")
    (tmp_path / "repo" / "loop").symlink_to(tmp_path / "repo")
    result = scan([tmp_path / "repo"])
    assert result.get("failed") is not True and result["findings"] == []
    assert result["skipped"] == [
        {"file": str(tmp_path / "repo" / "config"), "reason": "symlink, not followed"},
        {"file": str(tmp_path / "repo" / "loop"), "reason": "symlink, not followed"},
    ]


def test_obvious_placeholders_are_not_findings(tmp_path):
    # A sample config telling the reader what to put where failed the scan (fail_on_findings is the default):
    # masks, instructions and the example keys of AWS's own documentation are not secrets.
    placeholders = (
        "xxxxxxxxxxxx",
        "********",
        "your_password_here",
        "REPLACE_ME",
        "TODO",
        "__DB_PASSWORD__",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    )
    sample = write(
        tmp_path / "config.sample.yml",
        "".join('password_%d: "%s"\n' % (i, value) for i, value in enumerate(placeholders))
        + 'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n'
        + f'password_real: "{ENV_PASSWORD}"\naws_real: "{AWS_KEY}"\n'
        + 'keystore_password: "changeit"\n',  # a default password left in place is a finding, not a placeholder
    )
    result = scan([sample], fail_on_findings=False)
    assert {(f["line"], f["type"]) for f in result["findings"]} == {
        (len(placeholders) + 2, "Secret Keyword"),
        (len(placeholders) + 3, "AWS Access Key"),
        (len(placeholders) + 4, "Secret Keyword"),
    }, result["findings"]


def test_file_names_that_are_not_utf8_are_reported_readably(tmp_path, ansible):
    # os.walk keeps a name byte that is not UTF-8 (a Latin-1 name off an old share or archive) as a surrogate;
    # Ansible then refused the whole result ('Refusing to deserialize an invalid UTF8 string'), findings and all.
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_text("# app\n")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.env"), "w", encoding="utf-8") as handle:
        handle.write(f"TOKEN={ENV_PASSWORD}\n")
    result = ansible.run_task("locksmith.ops.secret_scan", {"paths": [str(root)], "fail_on_findings": False})
    assert result.get("failed") is not True, result
    assert result["findings"] == [{"file": "%s/caf\\xe9.env" % root, "line": 1, "type": _secret_scan.ENV_FILE_TYPE}]


@pytest.mark.parametrize(
    "value", ["<Zq8#kL2!pW>", "__Xk29fjsl2kfj__", "@@Zq8kL2pW@@", "Kx9/aB+EXAMPLE", "00000000", "changeit", "changeme"]
)
def test_a_real_value_shaped_like_a_placeholder_is_still_a_secret(value):
    # Only words inside the markers, a mask character repeated and AWS's own example keys are placeholders.
    assert not _secret_scan.is_placeholder(value)


def test_formats_detect_secrets_misses_are_found_even_with_the_entropy_plugins_off(tmp_path):
    # An encrypted key block, a fine-grained GitHub token and a Google API key: detect-secrets finds the last two only
    # by entropy, which users switch off for noise (the module's own example does), and the first not at all.
    token = "github_pat_11AB" + "C" * 18 + "_" + "d" * 59
    google = "AIza" + "SyA1234567890abcdefghijklmnopqrstuv"
    sample = write(
        tmp_path / "deploy.txt",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n"
        "-----END ENCRYPTED PRIVATE KEY-----\n"
        f"token: {token}\nmaps: {google}\n",
    )
    result = scan([sample], fail_on_findings=False, disable_plugins=["Base64HighEntropyString", "HexHighEntropyString"])
    assert {(f["line"], f["type"]) for f in result["findings"]} == {
        (1, "Private Key"),
        (4, "GitHub Token"),
        (5, "Google API Key"),
    }, result["findings"]
    assert token not in json.dumps(result) and google not in json.dumps(result)
