from __future__ import annotations

import pytest
from ansible.errors import AnsibleLookupError
from ansible.plugins.loader import lookup_loader


@pytest.mark.parametrize("term", [5, None, ["prod/app-db"], {"name": "prod/app-db"}])
def test_a_secret_name_that_is_not_a_string_is_named_before_any_read(term, tmp_path):
    lookup = lookup_loader.get("locksmith.ops.secret")
    with pytest.raises(AnsibleLookupError, match=r"secret name .* \(term 1\) is not a string"):
        lookup.run([term], backend="file", file_path=str(tmp_path / "secrets.json"))
