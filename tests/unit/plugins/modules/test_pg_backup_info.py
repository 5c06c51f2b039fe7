"""pg_backup_info's main() over hand-written local backups: no database needed."""

from __future__ import annotations

import re

import pytest

from tests.harness.ansible import run_module_inprocess
from tests.unit.plugins.module_utils import _manifests
from tests.unit.plugins.module_utils._manifests import DAMAGE


@pytest.mark.parametrize(("message", "damage"), DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_manifest_field_marks_only_that_backup_invalid_naming_it(tmp_path, message, damage):
    # It was listed as the newest good backup, which every restore of it then failed on with a traceback.
    _manifests.store(tmp_path, _manifests.OLDER)
    _manifests.store(tmp_path, _manifests.NEWER, damage)
    result = run_module_inprocess("pg_backup_info", {"destinations": [{"type": "local", "path": str(tmp_path)}]})
    assert not result.get("failed") and "exception" not in result, result
    by_id = {b["id"]: b for b in result["backups"]}
    assert by_id[_manifests.OLDER]["valid"] and not by_id[_manifests.NEWER]["valid"]
    [error] = by_id[_manifests.NEWER]["errors"]
    assert re.match("manifest.json is malformed: " + message, error), error
    assert result["newest_good"]["app"]["id"] == _manifests.OLDER
