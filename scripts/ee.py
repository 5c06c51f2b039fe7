"""`make ee`: build this collection, run `ansible-builder create` for execution-environment.yml, check the result.

Steps: the tracked and untracked-but-not-ignored files (what git would commit, as `make sanity` uses) are
copied to a temporary collection tree, built with `ansible-galaxy collection build` into
.build/ee-src/locksmith-ops.tar.gz (the name execution-environment.yml copies in), then
`ansible-builder create` writes the build context to .build/ee. The checks then read the context and fail
loudly, naming what is missing, when the Containerfile would not install the collection, its Python
requirements or its system packages. No image is built (no registry is reachable here); see docs/awx.md.

Usage: python scripts/ee.py [--context DIR] [--check-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EE_FILE = REPO / "execution-environment.yml"
SRC_DIR = REPO / ".build" / "ee-src"
TARBALL = SRC_DIR / "locksmith-ops.tar.gz"
CONTEXT = REPO / ".build" / "ee"
# Files the collection must carry so that ansible-builder finds its dependencies when users install it.
COLLECTION_MEMBERS = ("MANIFEST.json", "meta/execution-environment.yml", "meta/ee-requirements.txt", "bindep.txt")
# System packages the merged bindep list must select per platform (assemble installs "epel" ones with EPEL on).
SYSTEM_PACKAGES = {
    ("platform:rpm", "platform:redhat", "platform:centos"): {"postgresql", "openssl", "openssh-clients"},
    ("epel", "platform:rpm", "platform:redhat", "platform:centos"): {"pgbackrest"},
    ("platform:dpkg", "platform:debian"): {"postgresql-client-15", "pgbackrest", "openssl", "openssh-client"},
}


class EECheckError(Exception):
    """The generated build context would not make the execution environment we declare."""


def _run(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode:
        raise EECheckError(f"{' '.join(argv[:3])} ... exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")


def build_collection(repo: Path = REPO, out: Path = TARBALL) -> Path:
    """Build the collection from the files git would commit; return the tarball path."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="locksmith-ee-") as tmp:
        root = Path(tmp) / "ansible_collections" / "locksmith" / "ops"
        for name in filter(None, listed.decode().split("\0")):
            src = repo / name
            if src.is_file():  # listed files deleted in the work tree are skipped
                dst = root / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        built = Path(tmp) / "dist"
        _run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(built), str(root)])
        (tarball,) = built.glob("locksmith-ops-*.tar.gz")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tarball, out)
    return out


def create_context(ee_file: Path = EE_FILE, context: Path = CONTEXT) -> Path:
    """`ansible-builder create` into a fresh context directory."""
    shutil.rmtree(context, ignore_errors=True)
    _run([str(BIN / "ansible-builder"), "create", "--file", str(ee_file), "--context", str(context)])
    return context


def _requirements(lines: list[str], where: str) -> list[Requirement]:
    """Parse pip requirement lines (comments and blanks skipped); name the line that does not parse."""
    reqs = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            reqs.append(Requirement(line))
        except InvalidRequirement as err:
            raise EECheckError(f"{where}: {line!r} is not a pip requirement ({err})") from err
    return reqs


def _pins(text: str, where: str) -> dict[str, str]:
    """Package name -> exact version from a pip requirements text; every line must be an exact pin."""
    pins = {}
    for req in _requirements(text.splitlines(), where):
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==":
            raise EECheckError(f"{where}: '{req}' must pin one exact version (name==X.Y.Z)")
        pins[req.name.lower()] = spec[0].version
    return pins


def _context_tarballs(context: Path) -> list[Path]:
    """The collection tarballs the context's galaxy requirements install (type: file), as context paths."""
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    wanted = [c["name"] for c in galaxy.get("collections", []) if c.get("type") == "file"]
    if not wanted:
        raise EECheckError(f"{context}/_build/requirements.yml installs no collection of type file: {galaxy}")
    return [context / "_build" / Path(name).relative_to("/build") for name in wanted]


def check_context(context: Path, ee_file: Path = EE_FILE) -> list[str]:
    """Check a build context against the EE definition; return what was verified, raise on the first gap."""
    definition = yaml.safe_load(ee_file.read_text())
    deps = definition["dependencies"]
    base = ee_file.parent
    containerfile = (context / "Containerfile").read_text() if (context / "Containerfile").is_file() else ""
    if not containerfile:
        raise EECheckError(f"{context}/Containerfile is missing: ansible-builder create did not run")
    seen = []

    def need(text: str, why: str) -> None:
        if text not in containerfile:
            raise EECheckError(f"{context}/Containerfile lacks {text!r}: {why}")
        seen.append(why)

    image = definition["images"]["base_image"]["name"]
    need(f'ARG EE_BASE_IMAGE="{image}"', "the base image is the build arg EE_BASE_IMAGE with our default")
    need("FROM $EE_BASE_IMAGE", "every stage builds on EE_BASE_IMAGE")
    refs = f"{deps['ansible_core']['package_pip']} {deps['ansible_runner']['package_pip']}"
    need(f'ARG ANSIBLE_INSTALL_REFS="{refs}"', "ansible-core and ansible-runner at the versions make test runs")
    need("ansible-galaxy collection install", "the galaxy stage installs collections")
    need("-r requirements.yml", "the collections come from our galaxy requirements")
    need("COPY _build /build", "the collection tarball reaches the galaxy stage")
    need("COPY _build/requirements.txt requirements.txt", "our Python requirements reach the builder stage")
    need("COPY _build/bindep.txt bindep.txt", "our system packages reach the builder stage")
    need("--user-pip=requirements.txt --user-bindep=bindep.txt", "introspection merges ours with the collections'")

    for tarball in _context_tarballs(context):
        if not tarball.is_file():
            raise EECheckError(f"{tarball} is not in the build context; run `make ee`")
        with tarfile.open(tarball) as tar:
            members = set(tar.getnames())
            missing = [m for m in COLLECTION_MEMBERS if m not in members]
            if missing:
                raise EECheckError(f"{tarball} lacks {missing}")
            manifest = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
        version = yaml.safe_load((base / "galaxy.yml").read_text())["version"]
        if (manifest["namespace"], manifest["name"], manifest["version"]) != ("locksmith", "ops", version):
            raise EECheckError(f"{tarball} holds {manifest['namespace']}.{manifest['name']} {manifest['version']}")
        seen.append(f"collection locksmith.ops {version} in the context")

    declared = _pins((base / deps["python"]).read_text(), deps["python"])
    copied = _pins((context / "_build" / "requirements.txt").read_text(), "_build/requirements.txt")
    if declared != copied:
        raise EECheckError(f"_build/requirements.txt {copied} differs from {deps['python']} {declared}")
    seen.append(f"{len(copied)} pinned Python requirements")

    bindep = (context / "_build" / "bindep.txt").read_text()
    if bindep != (base / deps["system"]).read_text():
        raise EECheckError(f"_build/bindep.txt differs from {deps['system']}")
    seen.append("bindep.txt system packages")
    return seen


def introspect(context: Path) -> tuple[list[str], str]:
    """Merge the requirements as the builder stage does: ansible-builder's own introspect.py on the collection
    installed from the context's tarball, plus our files. Returns (pip lines, bindep text)."""
    build = context / "_build"
    with tempfile.TemporaryDirectory(prefix="locksmith-ee-introspect-") as tmp:
        collections, pip_out, bindep_out = Path(tmp) / "collections", Path(tmp) / "pip.txt", Path(tmp) / "bindep.txt"
        galaxy = str(BIN / "ansible-galaxy")
        for tarball in _context_tarballs(context):
            # Only the fresh directory counts: with the in-place collection on ANSIBLE_COLLECTIONS_PATH (as
            # under make), ansible-galaxy would call it installed and copy nothing.
            _run(
                [galaxy, "collection", "install", "--no-deps", "--force", "-p", str(collections), str(tarball)],
                env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections)},
            )
        script = [sys.executable, str(build / "scripts" / "introspect.py"), "introspect", str(collections)]
        _run(
            [
                *script,
                *("--user-pip", str(build / "requirements.txt"), "--user-bindep", str(build / "bindep.txt")),
                *("--write-pip", str(pip_out), "--write-bindep", str(bindep_out)),
            ]
        )
        return pip_out.read_text().splitlines(), bindep_out.read_text()


def judge_introspection(pip_lines: list[str], bindep_text: str) -> list[str]:
    """The merged lists resolve: the collection's own requirements were found, every pin meets every range,
    and each platform gets the PostgreSQL client tools."""
    from bindep.depends import Depends

    ours = [line for line in pip_lines if line.endswith("# from collection locksmith.ops")]
    if not ours:
        raise EECheckError(
            "introspection found no Python requirements of locksmith.ops; check meta/execution-environment.yml"
        )
    reqs = _requirements(pip_lines, "merged Python requirements")
    pins = {r.name.lower(): next(iter(r.specifier)).version for r in reqs if str(r.specifier).startswith("==")}
    for req in reqs:
        pin = pins.get(req.name.lower())
        if pin is None:
            raise EECheckError(f"merged Python requirement '{req}' has no pin in requirements/ee.txt")
        if not req.specifier.contains(pin, prereleases=True):
            raise EECheckError(f"requirements/ee.txt pins {req.name}=={pin}, which the merged '{req}' refuses")
    depends = Depends(bindep_text)
    for profiles, wanted in SYSTEM_PACKAGES.items():
        selected = {rule[0] for rule in depends.active_rules(list(profiles))}
        if not wanted <= selected:
            raise EECheckError(f"merged bindep selects no {sorted(wanted - selected)} for {profiles}")
    return [
        f"introspection: {len(ours)} requirements of locksmith.ops merged with ours, every pin meets every range",
        "introspection: PostgreSQL client and pgbackrest selected for EL9 (+EPEL) and Debian",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context", type=Path, default=CONTEXT)
    parser.add_argument("--check-only", action="store_true", help="check an existing context, build nothing")
    args = parser.parse_args(argv)
    try:
        if not args.check_only:
            print(f"ee: building the collection into {build_collection().relative_to(REPO)}", flush=True)
            print(f"ee: ansible-builder create into {args.context}", flush=True)
            create_context(EE_FILE, args.context)
        for item in check_context(args.context) + judge_introspection(*introspect(args.context)):
            print(f"ee: ok  {item}")
    except EECheckError as err:
        print(f"ee: FAILED  {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
