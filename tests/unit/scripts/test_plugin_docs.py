"""scripts/plugin_docs.py: docs/reference/ has a current page for every plugin, the markup reads as Markdown, and
--check catches a stale page and a page left over from a removed plugin."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "plugin_docs.py"
PAGES = ROOT / "docs" / "reference"


def _load():
    spec = importlib.util.spec_from_file_location("plugin_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False, cwd=ROOT)


def test_every_plugin_has_a_current_page():
    assert _run("--check").returncode == 0
    expected = {"README.md"}
    for kind, folder, suffix in (
        ("module", "modules", ".py"),
        ("lookup", "lookup", ".py"),
        ("filter", "filter", ".yml"),
        ("test", "test", ".yml"),
    ):
        expected |= {f"{path.stem}_{kind}.md" for path in (ROOT / "plugins" / folder).glob("*" + suffix)}
    assert {path.name for path in PAGES.glob("*.md")} == expected
    page = (PAGES / "pg_backup_module.md").read_text()
    # Options from the storage doc fragment are merged in, with their suboptions.
    assert "| `destinations[].retention.keep_last` | int |" in page and "## Return values" in page
    index = (PAGES / "README.md").read_text()
    assert "[locksmith.ops.tls_check](tls_check_module.md)" in index and "(../../roles/backup/README.md)" in index


def test_markup_becomes_markdown():
    markup = _load().markup
    assert markup("C(x) V(y) I(z) B(w) E(V) RV(r)") == "`x` `y` *z* **w** `V` `r`"
    assert markup("see M(locksmith.ops.pg_backup) and M(community.crypto.acme_certificate)") == (
        "see [locksmith.ops.pg_backup](pg_backup_module.md) and `community.crypto.acme_certificate`"
    )
    assert markup("O(locksmith.ops.pg_backup#module:all_databases) or O(destinations[].sse=aws:kms)") == (
        "`all_databases` of [locksmith.ops.pg_backup](pg_backup_module.md) or `destinations[].sse=aws:kms`"
    )
    assert markup("P(locksmith.ops.secret#lookup) U(https://x.example) L(the docs, https://d.example)") == (
        "[locksmith.ops.secret](secret_lookup.md) <https://x.example> [the docs](https://d.example)"
    )
    assert markup(["two", "lines"]) == "two lines"


def test_check_fails_on_a_stale_or_left_over_page_and_the_writer_mends_it(tmp_path):
    out = tmp_path / "reference"
    shutil.copytree(PAGES, out)
    page = out / "tls_check_module.md"
    page.write_text(page.read_text().replace("Audit TLS endpoints", "Audit nothing"))
    (out / "gone_module.md").write_text("a plugin that no longer exists\n")
    stale = _run("--check", "--out", str(out))
    assert stale.returncode == 1
    assert "tls_check_module.md: out of date" in stale.stderr and "gone_module.md: out of date" in stale.stderr
    assert _run("--out", str(out)).returncode == 0
    assert not (out / "gone_module.md").exists()
    assert page.read_text() == (PAGES / "tls_check_module.md").read_text()
