"""tls_check's main(): the paths that need no network."""

from __future__ import annotations

from ansible_collections.locksmith.ops.plugins.module_utils import _tls_cert
from tests.harness.ansible import run_module_inprocess


def test_missing_cryptography_names_the_library(monkeypatch):
    monkeypatch.setattr(_tls_cert, "HAS_CRYPTOGRAPHY", False)
    result = run_module_inprocess("tls_check", {"endpoints": [{"host": "127.0.0.1"}]})
    assert result["failed"] is True
    assert "cryptography" in result["msg"]


def test_option_errors_fail_before_any_probe():
    result = run_module_inprocess("tls_check", {"endpoints": [{"host": "127.0.0.1", "port": 70000}]})
    assert result["failed"] is True
    assert "endpoints[0] '127.0.0.1': port numbers must be 1-65535" in result["msg"]
