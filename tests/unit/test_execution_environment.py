"""execution-environment.yml and its inputs: pins in step with what `make test` runs, every third-party import
of plugins/ covered, bindep right per platform, and scripts/ee.py's checks failing on a broken context."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from bindep.depends import Depends
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import ee  # noqa: E402

EE = yaml.safe_load((REPO / "execution-environment.yml").read_text())
# Import name -> distribution, for the imports whose names differ.
DISTRIBUTIONS = {"psycopg2": "psycopg2-binary", "detect_secrets": "detect-secrets"}


def constraints() -> dict[str, str]:
    lines = (REPO / "requirements" / "constraints.txt").read_text().splitlines()
    return {r.name.lower(): str(next(iter(r.specifier)).version) for r in map(Requirement, filter(None, lines))}


def ee_pins() -> dict[str, str]:
    return ee._pins((REPO / EE["dependencies"]["python"]).read_text(), "requirements/ee.txt")


def test_python_pins_are_the_versions_make_test_runs():
    tested = constraints()
    for name, version in ee_pins().items():
        expected = tested.get(name) or importlib.metadata.version(name)
        assert version == expected, f"requirements/ee.txt pins {name}=={version}; make test runs {expected}"
    for key in ("ansible_core", "ansible_runner"):
        req = Requirement(EE["dependencies"][key]["package_pip"])
        assert str(next(iter(req.specifier)).version) == tested[req.name.lower()]


def test_collection_ranges_admit_the_pins():
    pins = ee_pins()
    ranges = ee._requirements((REPO / "meta" / "ee-requirements.txt").read_text().splitlines(), "meta")
    assert {r.name.lower() for r in ranges} == set(pins)
    for req in ranges:
        assert req.specifier.contains(pins[req.name.lower()]), f"{req} refuses the pinned {pins[req.name.lower()]}"
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "bindep.txt"}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party module names imported anywhere in plugins/, with the files that import them."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"ansible", "ansible_collections", "__future__"}:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_of_plugins_is_in_the_ee():
    imports = third_party_imports()
    assert {"psycopg2", "boto3", "hvac", "cryptography", "zstandard"} <= set(imports)
    pins = ee_pins()
    missing = {name: sorted(files) for name, files in imports.items() if DISTRIBUTIONS.get(name, name) not in pins}
    assert not missing, f"requirements/ee.txt lacks what plugins/ import: {missing}"


@pytest.mark.parametrize(
    ("profiles", "wanted"),
    [
        (["platform:rpm", "platform:redhat"], {"postgresql", "openssl", "openssh-clients"}),
        (["epel", "platform:rpm", "platform:redhat"], {"postgresql", "pgbackrest"}),
        (["platform:dpkg", "platform:debian"], {"postgresql-client-15", "pgbackrest", "openssl", "openssh-client"}),
    ],
)
def test_bindep_selects_the_tools_per_platform(profiles, wanted):
    selected = {rule[0] for rule in Depends((REPO / "bindep.txt").read_text()).active_rules(profiles)}
    assert wanted <= selected
    if "epel" not in profiles and "platform:rpm" in profiles:
        assert "pgbackrest" not in selected, "pgbackrest is in EPEL only: keep it under the epel profile"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A copy of the EE definition and its inputs with a freshly built collection, and its created context."""
    root = tmp_path_factory.mktemp("ee")
    for name in ("execution-environment.yml", "bindep.txt", "galaxy.yml", "meta/ee-collections.yml"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    (root / "requirements").mkdir()
    shutil.copy(REPO / "requirements" / "ee.txt", root / "requirements" / "ee.txt")
    ee.build_collection(REPO, root / ".build" / "ee-src" / "locksmith-ops.tar.gz")
    context = ee.create_context(root / "execution-environment.yml", root / "context")
    return root, context


@pytest.fixture(scope="module")
def merged(built):
    """What the builder stage's introspection makes of the good context: (pip lines, bindep text).
    Run as under make, with the in-place collection on ANSIBLE_COLLECTIONS_PATH."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections"))
        return ee.introspect(built[1])


def test_created_context_passes_every_check(built, merged):
    root, context = built
    seen = ee.check_context(context, root / "execution-environment.yml") + ee.judge_introspection(*merged)
    assert "collection locksmith.ops 0.1.0 in the context" in seen
    assert any(item.startswith("introspection:") for item in seen)


@pytest.fixture
def broken(built, tmp_path):
    """A writable copy of the good context, to break one thing at a time."""
    root, context = built
    copy = tmp_path / "context"
    shutil.copytree(context, copy)
    return root / "execution-environment.yml", copy


def test_check_fails_without_the_galaxy_install(broken):
    ee_file, context = broken
    containerfile = context / "Containerfile"
    containerfile.write_text(containerfile.read_text().replace("ansible-galaxy collection install", "true"))
    with pytest.raises(ee.EECheckError, match="lacks 'ansible-galaxy collection install'"):
        ee.check_context(context, ee_file)


def test_check_fails_when_the_base_image_is_not_a_build_arg(broken):
    ee_file, context = broken
    containerfile = context / "Containerfile"
    containerfile.write_text(containerfile.read_text().replace("FROM $EE_BASE_IMAGE", "FROM quay.io/x/y"))
    with pytest.raises(ee.EECheckError, match="EE_BASE_IMAGE"):
        ee.check_context(context, ee_file)


def test_check_fails_without_the_collection_tarball(broken):
    ee_file, context = broken
    (context / "_build" / "collections" / "locksmith-ops.tar.gz").unlink()
    with pytest.raises(ee.EECheckError, match="not in the build context; run `make ee`"):
        ee.check_context(context, ee_file)


def test_check_fails_when_requirements_drift(broken):
    ee_file, context = broken
    reqs = context / "_build" / "requirements.txt"
    reqs.write_text(reqs.read_text().replace("hvac==", "hvac>="))
    with pytest.raises(ee.EECheckError, match="must pin one exact version"):
        ee.check_context(context, ee_file)
    reqs.write_text("\n".join(line for line in reqs.read_text().splitlines() if not line.startswith("hvac")))
    with pytest.raises(ee.EECheckError, match=re.escape("differs from requirements/ee.txt")):
        ee.check_context(context, ee_file)


def test_introspection_fails_when_a_pin_breaks_a_range(merged):
    pip_lines, bindep_text = merged
    pip_lines = [line.replace("cryptography==50.0.2", "cryptography==40.0.0") for line in pip_lines]
    with pytest.raises(
        ee.EECheckError, match=re.escape("pins cryptography==40.0.0, which the merged 'cryptography>=41.0.0'")
    ):
        ee.judge_introspection(pip_lines, bindep_text)


def test_introspection_fails_when_a_requirement_has_no_pin(merged):
    pip_lines, bindep_text = merged
    with pytest.raises(ee.EECheckError, match=re.escape("'lz4>=4.0' has no pin")):
        ee.judge_introspection([*pip_lines, "lz4>=4.0  # from collection other.one"], bindep_text)


def test_introspection_fails_when_the_collection_declares_nothing(merged):
    pip_lines, bindep_text = merged
    user_only = [line for line in pip_lines if not line.endswith("locksmith.ops")]
    with pytest.raises(ee.EECheckError, match=re.escape("check meta/execution-environment.yml")):
        ee.judge_introspection(user_only, bindep_text)


def test_introspection_fails_when_a_platform_lacks_a_tool(merged, monkeypatch):
    monkeypatch.setitem(ee.SYSTEM_PACKAGES, ("platform:dpkg", "platform:debian"), {"postgresql-client-16"})
    with pytest.raises(ee.EECheckError, match=r"selects no \['postgresql-client-16'\] for \('platform:dpkg'"):
        ee.judge_introspection(*merged)


def test_main_reports_a_failure_and_exits_non_zero(broken, capsys):
    context = broken[1]
    (context / "Containerfile").write_text("FROM scratch\n")
    assert ee.main(["--check-only", "--context", str(context)]) == 1
    assert "ee: FAILED" in capsys.readouterr().err
