"""secret_rotate's own pieces: its argument spec, the library check, and main() on a local file store."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from ansible_collections.locksmith.ops.plugins.modules import secret_rotate
from tests.harness.ansible import run_module_inprocess


def test_every_secret_looking_option_is_no_log_and_secret_is_not():
    spec = secret_rotate.argument_spec()
    for name in ("vault_token", "vault_secret_id", "vault_password", "aws_secret_key", "login_password"):
        assert spec[name]["no_log"] is True, name
    assert spec["secret"]["no_log"] is False  # a name, not a value


@pytest.mark.parametrize(
    ("flag", "params", "library"),
    [
        ("HAS_HVAC", dict(backend="vault", target="hmac"), "hvac"),
        ("HAS_BOTO3", dict(backend="aws", target="hmac"), "boto3"),
        ("HAS_PSYCOPG2", dict(backend="file", target="postgresql_password"), "psycopg2"),
    ],
)
def test_missing_library_names_the_library(monkeypatch, flag, params, library):
    owner = {"HAS_HVAC": secret_rotate._vault, "HAS_BOTO3": secret_rotate._aws, "HAS_PSYCOPG2": secret_rotate._postgres}
    monkeypatch.setattr(owner[flag], flag, False)
    assert secret_rotate.missing_library(params)[0] == library
    monkeypatch.undo()
    assert secret_rotate.missing_library(params) is None


def test_required_role_for_the_password_target(tmp_path):
    result = run_module_inprocess(
        "secret_rotate", dict(secret="s", target="postgresql_password", backend="file", file_path=str(tmp_path / "f"))
    )
    assert result["failed"] and "role" in result["msg"]


def test_policy_errors_fail_with_the_option_named(tmp_path):
    result = run_module_inprocess(
        "secret_rotate", dict(secret="s", target="hmac", length=8, backend="file", file_path=str(tmp_path / "f"))
    )
    assert result["failed"] and "length 8 is too short" in result["msg"]


def test_return_secret_returns_the_value_with_a_warning(tmp_path):
    args = dict(secret="s", target="generic", backend="file", file_path=str(tmp_path / "f"))
    quiet = run_module_inprocess("secret_rotate", args, diff=True)
    stored = json.loads((tmp_path / "f").read_text())["secrets"]["s"]["current"]["value"]["value"]
    assert "secret_value" not in quiet and stored not in json.dumps(quiet)
    assert quiet["diff"]["after"]["current"] == "<secret v1>"
    loud = run_module_inprocess("secret_rotate", dict(args, return_secret=True))
    assert loud["secret_value"] == {"value": stored}
    assert "return_secret is set" in json.dumps(loud["warnings"])
    assert "diff" not in loud  # only with --diff


def test_the_age_right_after_a_rotation_is_not_negative(tmp_path, monkeypatch):
    # A clock one second later at every reading: the promotion is stamped after the run started, and the
    # result's age must be measured from it at the end of the run, not at the start (which gave -1 s and more).
    ticks = itertools.count(1_800_000_000.0)
    monkeypatch.setattr(time, "time", lambda: next(ticks))
    result = run_module_inprocess(
        "secret_rotate", dict(secret="s", target="generic", backend="file", file_path=str(tmp_path / "f"))
    )
    secret = result["secret"]
    assert result["changed"] and secret["current_version"] == "1", result
    assert secret["age_seconds"] >= 0, secret
    assert secret["next_due_timestamp"] == secret["promoted_timestamp"] + 2419200
