"""pg_backup_restore's main() on the paths that stop before any connection."""

from __future__ import annotations

from tests.harness.ansible import run_module_inprocess
from tests.unit.plugins.module_utils import _manifests
from tests.unit.plugins.module_utils._manifests import DAMAGE


def test_a_restore_of_a_backup_with_a_damaged_manifest_fails_naming_the_backup_and_the_field(tmp_path):
    # The check runs before any connection: chosen, this backup failed the drill with an AttributeError.
    _manifests.store(tmp_path, _manifests.NEWER, DAMAGE["row_counts-list"][1])
    args = {
        "database": "app",
        "destinations": [{"type": "local", "path": str(tmp_path)}],
        "pg_bin_dir": "/usr/lib/postgresql/15/bin",
        "login_host": "127.0.0.1",
        "login_port": 1,
    }
    result = run_module_inprocess("pg_backup_restore", args)
    assert result["failed"] and "exception" not in result, result
    assert "%s: manifest.json is malformed: row_counts is not an object" % _manifests.NEWER in result["msg"]
    assert result["skipped"] == [
        {
            "id": _manifests.NEWER,
            "destination": "destinations[0] local:%s" % tmp_path,
            "reason": "manifest.json is malformed: row_counts is not an object",
        }
    ]
