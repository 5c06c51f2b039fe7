from __future__ import annotations

import pytest
from ansible.errors import AnsibleLookupError
from ansible.plugins.loader import lookup_loader

from tests.unit.plugins.module_utils import _manifests
from tests.unit.plugins.module_utils._manifests import DAMAGE


@pytest.mark.parametrize("value", ["maybe", "2", [True], {"on": True}])
def test_verify_checksums_is_read_strictly(value, tmp_path):
    # ansible-core's loose conversion of plugin options would read these as false and skip the checksums.
    lookup = lookup_loader.get("locksmith.ops.pg_backup_latest")
    with pytest.raises(AnsibleLookupError, match=r"verify_checksums .* is not a boolean; use true or false"):
        lookup.run(["app"], destinations=[{"type": "local", "path": str(tmp_path)}], verify_checksums=value)


@pytest.mark.parametrize("value", [True, "yes", "false", 0])
def test_verify_checksums_accepts_booleans(value, tmp_path):
    lookup = lookup_loader.get("locksmith.ops.pg_backup_latest")
    # An empty destination: the lookup gets past its options and fails closed for want of a backup.
    with pytest.raises(AnsibleLookupError, match="no good backup of 'app'"):
        lookup.run(["app"], destinations=[{"type": "local", "path": str(tmp_path)}], verify_checksums=value)


@pytest.mark.parametrize("damage", ["row_counts-list", "encryption-string", "plain_name-number"])
def test_a_backup_with_a_damaged_manifest_field_is_not_the_latest(tmp_path, damage):
    # A restore of it failed with a traceback; the latest good one is the older, whole backup.
    _manifests.store(tmp_path, _manifests.OLDER)
    _manifests.store(tmp_path, _manifests.NEWER, DAMAGE[damage][1])
    lookup = lookup_loader.get("locksmith.ops.pg_backup_latest")
    [latest] = lookup.run(["app"], destinations=[{"type": "local", "path": str(tmp_path)}])
    assert latest["id"] == _manifests.OLDER and latest["copies"] == ["destinations[0] local:%s" % tmp_path]
