"""Build the pg_backup runner: one zip application holding the module and the module_utils it imports.

Runs on the controller. The archive holds ansible-core's module_utils (from the Python running this
script, i.e. the controller's ansible-core), the collection's plugins/module_utils and
plugins/modules/pg_backup.py, plus a __main__.py that runs the module as ansible's AnsiballZ wrapper
does. Entries are sorted and carry a fixed timestamp, so the same sources give the same bytes and the
copy to the host stays idempotent. The output is rewritten only when its bytes differ.

usage: build_pg_backup_pyz.py COLLECTION_ROOT OUTPUT
"""

from __future__ import annotations

import ast
import io
import os
import sys
import zipfile

import ansible.module_utils

MAIN = b'''"""Run locksmith.ops.pg_backup: python3 pg_backup.pyz ARGS_JSON_FILE (see roles/backup/README.md)."""
import runpy

runpy.run_module("ansible_collections.locksmith.ops.plugins.modules.pg_backup", run_name="__main__", alter_sys=True)
'''
EPOCH = (1980, 1, 1, 0, 0, 0)


def tree(root: str, prefix: str) -> dict[str, str]:
    """Every .py file under root, keyed by its name in the archive."""
    found = {}
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                found[prefix + "/" + os.path.relpath(path, root).replace(os.sep, "/")] = path
    return found


PACKAGE = "ansible_collections.locksmith.ops.plugins.module_utils"


def collection_imports(path: str, module_utils: str, package: str) -> set[str]:
    """Paths of the collection module_utils that the file at path imports, with their packages' __init__.py."""
    found = set()
    for node in ast.walk(ast.parse(open(path, "rb").read())):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        if not base.startswith(PACKAGE):
            continue
        relative = base[len(PACKAGE) :].strip(".").split(".") if base != PACKAGE else []
        # "from package import name" may name a submodule or an attribute: take the submodule when it exists.
        for name in [alias.name for alias in node.names] + [""]:
            parts = [p for p in relative + ([name] if name else []) if p]
            candidate = os.path.join(module_utils, *parts)
            for option in (candidate + ".py", os.path.join(candidate, "__init__.py")):
                if os.path.isfile(option):
                    found.add(option)
    return found


def collection_tree(plugins: str) -> dict[str, str]:
    """pg_backup.py and the collection module_utils it imports, directly or not, keyed by archive name."""
    module_utils = os.path.join(plugins, "module_utils")
    module = os.path.join(plugins, "modules", "pg_backup.py")
    seen: set[str] = set()
    todo = [(module, "ansible_collections.locksmith.ops.plugins.modules")]
    while todo:
        path, package = todo.pop()
        for found in collection_imports(path, module_utils, package) - seen:
            seen.add(found)
            relative = os.path.relpath(os.path.dirname(found), module_utils).replace(os.sep, "/").strip(".")
            todo.append((found, PACKAGE + ("." + relative.replace("/", ".") if relative else "")))
    prefix = PACKAGE.replace(".", "/")
    names = {prefix + "/" + os.path.relpath(path, module_utils).replace(os.sep, "/"): path for path in seen}
    names["ansible_collections/locksmith/ops/plugins/modules/pg_backup.py"] = module
    return names


def build(collection_root: str) -> bytes:
    """The archive's bytes."""
    sources = tree(os.path.dirname(ansible.module_utils.__file__), "ansible/module_utils")
    sources.update(collection_tree(os.path.join(collection_root, "plugins")))
    contents = {name: open(path, "rb").read() for name, path in sources.items()}
    contents["__main__.py"] = MAIN
    # Every directory is a regular package (zipimport and Python 3.9 hosts need no namespace packages).
    for name in list(contents):
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            contents.setdefault("/".join(parts[:depth]) + "/__init__.py", b"")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(contents):
            info = zipfile.ZipInfo(name, EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, contents[name])
    return buffer.getvalue()


def main() -> int:
    collection_root, output = sys.argv[1:3]
    data = build(collection_root)
    try:
        with open(output, "rb") as current:
            if current.read() == data:
                print("unchanged")
                return 0
    except FileNotFoundError:
        pass
    tmp = output + ".tmp"
    with open(tmp, "wb") as out:
        out.write(data)
    os.replace(tmp, output)
    print("written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
