"""Every shared doc fragment documents exactly the argument spec its module_utils builds.

A fragment and its spec are kept in two places; this test fails on any drift in names, types,
defaults, choices or no_log, so `ansible-doc` never lies about an option.
"""

from __future__ import annotations

import importlib

import pytest
import yaml

# fragment module -> (module_utils module, spec function, fragment attribute)
PAIRS = {
    "postgres": ("_postgres", "postgres_argument_spec", "DOCUMENTATION"),
    "storage": ("_storage", "storage_argument_spec", "DOCUMENTATION"),
    "secrets_backend": ("_secrets_backend", "secrets_backend_argument_spec", "DOCUMENTATION"),
}


def _load(fragment):
    utils_name, spec_fn, attr = PAIRS[fragment]
    frag = importlib.import_module(f"ansible_collections.locksmith.ops.plugins.doc_fragments.{fragment}")
    utils = importlib.import_module(f"ansible_collections.locksmith.ops.plugins.module_utils.{utils_name}")
    return yaml.safe_load(getattr(frag.ModuleDocFragment, attr))["options"], getattr(utils, spec_fn)()


@pytest.mark.parametrize("fragment", sorted(PAIRS))
def test_fragment_documents_every_spec_option_and_nothing_else(fragment):
    documented, spec = _load(fragment)
    assert sorted(documented) == sorted(spec)


@pytest.mark.parametrize("fragment", sorted(PAIRS))
def test_types_defaults_and_choices_agree(fragment):
    documented, spec = _load(fragment)
    for name, option in spec.items():
        doc = documented[name]
        assert doc.get("type", "str") == option.get("type", "str"), name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert doc.get("elements") == option.get("elements"), name
        assert doc.get("version_added"), f"{name} has no version_added"


@pytest.mark.parametrize("fragment", sorted(PAIRS))
def test_secret_options_are_no_log(fragment):
    spec = _load(fragment)[1]
    for name, option in spec.items():
        looks_secret = any(word in name for word in ("password", "token", "secret", "key")) and option.get(
            "type"
        ) not in ("path",)
        if looks_secret and not name.endswith(("_file", "_path")):
            assert option.get("no_log") is True, f"{name} looks secret but is not no_log"
