"""Every module, fed hostile input option by option, fails cleanly or succeeds: never a traceback, never a secret.

The cases come from each module's real argument spec (the keyword arguments its main() gives AnsibleModule), not
from a list kept here: every option, and every suboption of a list of dicts or a dict, gets values of its type
that pass Ansible's own checks and are still wrong: empty, blank, a NUL byte, a line break, 100 kB, non-ASCII,
relative and missing paths, a directory where a file is wanted and the reverse, a FIFO, negative, zero and huge
numbers, empty lists and dicts. Options with choices and booleans are Ansible's to check and are left out.

Each case runs main() in this process (see run_module_inprocess) from a base that gets as far as it can with no
server: PostgreSQL and TLS peers are a refused port on 127.0.0.1, the secrets store and the backups are files in a
fresh directory. For each run: main() exits with JSON (an exception escaping main() is what Ansible shows as
MODULE FAILURE), nothing holds a traceback or calls itself a bug, a failure's msg names the option or the value
it was given (or is the base's own failure, which the value did not change), and no value given to a no_log
option shows anywhere in the result, in any form (every no_log option of the base holds a marker too).

Lookups, filters and tests are called the same way where they read user input: an error is an AnsibleError (or
AnsibleFilterError) that names the input, never a bare Python exception.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import signal
import socket
import uuid
from pathlib import Path

import pytest

from tests.harness.ansible import module_spec, run_module_inprocess

MODULES_DIR = Path(__file__).resolve().parents[2] / "plugins" / "modules"
MARKER = "S3cr3t-marker-"
# What no run may show: a Python traceback, Ansible's wrapper for one, or our own catch-all for a bug.
BROKEN = re.compile(r"Traceback \(most recent call last\)|MODULE FAILURE|this is a bug", re.I)
CASE_SECONDS = 15


class Hung(Exception):
    """A case ran longer than CASE_SECONDS (a FIFO opened for reading blocks forever, for one)."""


@contextlib.contextmanager
def time_limit(seconds):
    def expire(_signum, _frame):
        raise Hung("no answer after %d s" % seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---- the places hostile values point at -----------------------------------------------------------------------
@pytest.fixture
def arena(tmp_path, monkeypatch):
    """Files of each kind, a refused port, and the working directory (relative paths land here, not in the repo)."""
    root = tmp_path
    monkeypatch.chdir(root)
    places = {"root": root, "dir": root / "a-directory", "file": root / "a-file", "fifo": root / "a-fifo"}
    places["dir"].mkdir()
    places["file"].write_text("not what anyone wanted\n", encoding="utf-8")
    places["file"].chmod(0o600)
    # 0600, as a key or secrets file must be, so that no permission check stops the module before it reads.
    os.mkfifo(places["fifo"], 0o600)
    places["unreadable"] = root / "unreadable"
    places["unreadable"].write_text("x\n", encoding="utf-8")
    places["unreadable"].chmod(0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        places["port"] = sock.getsockname()[1]  # closed again: connecting is refused
    return places


def fresh(arena):
    path = arena["root"] / uuid.uuid4().hex[:10]
    path.mkdir()
    return path


def login(arena, secret):
    return {
        "login_host": "127.0.0.1",
        "login_port": arena["port"],
        "login_password": secret("login_password"),
        "connect_timeout": 2,
    }


def local_destination(arena):
    path = fresh(arena) / "backups"
    path.mkdir()
    return {"type": "local", "path": str(path)}


# Each base passes the argument spec and goes as far as it can with no server; secret(name) is a marker.
BASES = {
    "audit_trigger": lambda arena, secret: {**login(arena, secret), "database": "app", "tables": ["public.t"]},
    "audit_trigger_info": lambda arena, secret: {**login(arena, secret), "database": "app"},
    "pg_backup": lambda arena, secret: {
        **login(arena, secret),
        "database": "app",
        "destinations": [local_destination(arena)],
        "encryption_key": secret("encryption_key"),
    },
    "pg_backup_info": lambda arena, _secret: {"destinations": [local_destination(arena)], "database": "app"},
    "pg_backup_restore": lambda arena, secret: {
        **login(arena, secret),
        "database": "app",
        "destinations": [local_destination(arena)],
        "encryption_key": secret("encryption_key"),
        "assertions": [{"name": "rows", "sql": "SELECT 1", "expected": 1}],
    },
    "posture_report": lambda arena, _secret: {
        "dest": str(fresh(arena) / "posture"),
        "fail_on_miss": False,
        "promises": [{"name": "backups", "title": "Backups are fresh", "value": 1, "target": 2}],
    },
    "secret_rotate": lambda arena, secret: {
        "secret": "app/token",
        "target": "generic",
        "backend": "file",
        "file_path": str(fresh(arena) / "secrets.json"),
        "backend_timeout": 2,
        "vault_token": secret("vault_token"),
        "vault_secret_id": secret("vault_secret_id"),
        "vault_password": secret("vault_password"),
        "aws_access_key": secret("aws_access_key"),
        "aws_secret_key": secret("aws_secret_key"),
        "aws_session_token": secret("aws_session_token"),
        "login_password": secret("login_password"),
    },
    "secret_scan": lambda arena, _secret: {"paths": [str(fresh(arena))]},
    "textfile_timestamp": lambda arena, _secret: {
        "metrics_dir": str(fresh(arena) / "textfile"),
        "name": "locksmith_hardening_last_run_timestamp_seconds",
        "help": "Newest converge of a hardening role",
        "labels": {"role": "os_hardening"},
        "producer": "hardening",
        "subject": "os_hardening",
    },
    "tls_check": lambda arena, _secret: {
        "endpoints": [{"host": "127.0.0.1", "port": arena["port"]}],
        "timeout": 2,
        "fail_on": "never",
    },
}
# The action-backed modules (copy, template) have no main(); test_file_actions.py runs them through Ansible.
MODULES = sorted(p.stem for p in MODULES_DIR.glob("[a-z]*.py") if "def main(" in p.read_text(encoding="utf-8"))


def test_every_module_has_a_base():
    assert sorted(BASES) == MODULES


# ---- hostile values by type -------------------------------------------------------------------------------------
TEXT = {
    "empty": "",
    "blank": " \t ",
    "nul": "a\x00b",
    "newline": "a\nb",
    "long": "x" * 100_000,
    "non-ascii": "ünï-名前-✓",
}
NUMBERS = {"negative": -1, "zero": 0, "port 65536": 65536, "huge": 2**64}
FLOATS = {"negative": -1.0, "zero": 0.0, "inf": float("inf"), "nan": float("nan")}


def path_values(arena):
    return {
        "empty": "",
        "nul": str(arena["root"] / "a\x00b"),
        "newline": str(arena["root"] / "a\nb"),
        "long": "/" + "x" * 100_000,
        "non-ascii": str(arena["root"] / "ünï-名前"),
        "relative": "relative/dir",
        "missing": "/nonexistent-%s/x" % uuid.uuid4().hex[:8],
        "directory": str(arena["dir"]),
        "file": str(arena["file"]),
        "fifo": str(arena["fifo"]),
        "unreadable": str(arena["unreadable"]),
    }


def secret_values(n):
    """Values for a no_log option: each holds the marker, so any form of it that leaks is found."""
    marker = "%s%d" % (MARKER, n)
    return {
        "marker": marker,
        "marker+newline": marker + "\n",
        "marker, blank around": " %s " % marker,
        "marker+nul": marker + "\x00",
        "marker+quotes": "%s'\":@/%%\\ é" % marker,
        "marker, long": marker + "y" * 100_000,
    }


def hostile(option, arena, n):
    """(label, value) of the hostile values for one option of an argument spec."""
    kind = option.get("type", "str")
    if option.get("choices") or kind == "bool":
        return {}
    if option.get("no_log") and kind in ("str", "raw"):
        return secret_values(n)
    if kind == "str":
        return TEXT
    if kind == "path":
        return path_values(arena)
    if kind == "int":
        return NUMBERS
    if kind == "float":
        return FLOATS
    if kind == "raw":
        return {**TEXT, "empty list": [], "empty dict": {}, "negative": -1}
    if kind == "dict":
        return {"empty dict": {}}
    if kind == "list":
        elements = option.get("elements", "str")
        if elements == "dict":
            return {"empty list": []}
        inner = path_values(arena) if elements == "path" else TEXT if elements == "str" else {}
        values = {"empty list": []}
        values.update({"[%s]" % label: [value] for label, value in inner.items() if label != "long"})
        return values
    return {}


def option_paths(spec, base, prefix=()):
    """(path, option) of every option at any depth; a path is a tuple of names, 0 for a list's first item (the
    suboptions of a list are tried only when the base has an item to change)."""
    for name, option in spec.items():
        yield (*prefix, name), option
        sub = option.get("options")
        if sub and option.get("type") == "list":
            if get_path(base, (*prefix, name, 0)) is not None:
                yield from option_paths(sub, base, (*prefix, name, 0))
        elif sub:
            yield from option_paths(sub, base, (*prefix, name))


def set_path(args, path, value, spec):
    """args with the value at path; a dict on the way that is not there yet is created."""
    target = args
    for key in path[:-1]:
        if isinstance(key, int):
            target = target[key]
        else:
            target = target.setdefault(key, {})
    target[path[-1]] = value
    # An option the base sets that excludes the one under test is dropped, so the case reaches the option.
    if len(path) == 1:
        for group in spec.get("mutually_exclusive", ()):
            if path[0] in group:
                for other in group:
                    if other != path[0]:
                        args.pop(other, None)


def dotted(path):
    return "".join("[%d]" % key if isinstance(key, int) else ("." if i else "") + key for i, key in enumerate(path))


# ---- running a case and judging it ------------------------------------------------------------------------------
class Secrets:
    """Hands out markers for no_log values, and remembers them to search every output for."""

    def __init__(self):
        self.count = 0

    def __call__(self, _name):
        self.count += 1
        return "%s%d" % (MARKER, 1000 + self.count)


def run_case(name, args, check=False):
    with time_limit(CASE_SECONDS):
        return run_module_inprocess(name, args, check=check)


def get_path(args, path):
    for key in path:
        try:
            args = args[key]
        except (KeyError, IndexError, TypeError):
            return None
    return args


def shown(value, msg):
    """Whether msg shows the value (as given, or as repr() writes it), which names the thing that was wrong."""
    if isinstance(value, list):
        return any(shown(item, msg) for item in value)
    text = str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    return len(text.strip()) >= 2 and (text in msg or repr(text)[1:-1] in msg)


def problems(result, base, path, value):
    """What is wrong with one result, as a list of sentences (empty: clean). base is (msg, value) of the base run:
    a failure that is the base's own, with the value in its place, says nothing about this option."""
    found = []
    text = json.dumps(result, default=str)
    if MARKER in text:
        where = text.index(MARKER)
        found.append("a no_log value shows: ...%s..." % text[max(0, where - 80) : where + 40])
    if BROKEN.search(text):
        found.append("a traceback or bug report: %s" % BROKEN.search(text).group(0))
    if not result.get("failed"):
        return found
    msg = str(result.get("msg", ""))
    if not msg.strip():
        found.append("failed with no msg")
        return found
    base_msg, base_value = base
    same = base_msg is not None and (
        msg == base_msg or (base_value not in (None, "") and msg == base_msg.replace(str(base_value), str(value)))
    )
    names = {key for key in path if isinstance(key, str)}
    if not same and not shown(value, msg) and not any(n in msg for n in names):
        found.append("msg names neither %s nor its value: %s" % (dotted(path), msg[:300]))
    return found


def cases(name, arena, base):
    spec = module_spec(name)
    for n, (path, option) in enumerate(option_paths(spec["argument_spec"], base)):
        for label, value in hostile(option, arena, n).items():
            yield path, option, label, value, spec


@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
@pytest.mark.parametrize("name", MODULES)
def test_hostile_values_fail_cleanly(name, check, arena):
    secrets = Secrets()
    base = BASES[name](arena, secrets)
    base_result = run_case(name, base, check)
    assert problems(base_result, (base_result.get("msg"), None), (), None) == [], base_result
    base_msg = base_result.get("msg") if base_result.get("failed") else None
    report = []
    for path, option, label, value, spec in cases(name, arena, base):
        args = BASES[name](arena, secrets)
        set_path(args, path, value, spec)
        try:
            result = run_case(name, args, check)
        except Exception as err:  # noqa: BLE001 - what escapes main() is the finding
            report.append("%s=%s: %s escaped main(): %s" % (dotted(path), label, type(err).__name__, str(err)[:300]))
            continue
        base_value = get_path(base, path)
        found = problems(result, (base_msg, option.get("default") if base_value is None else base_value), path, value)
        report.extend("%s=%s: %s" % (dotted(path), label, p) for p in found)
    assert not report, "%s: %d problem(s)\n%s" % (name, len(report), "\n".join(report))


# ---- lookups, filters and tests -------------------------------------------------------------------------------
def lookup_spec(name):
    """The argument spec the lookup checks its options against: the one its module shares."""
    if name == "secret":
        from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import (
            secrets_backend_argument_spec,
        )

        return secrets_backend_argument_spec()
    from ansible_collections.locksmith.ops.plugins.module_utils._storage import storage_argument_spec

    return storage_argument_spec()


LOOKUP_BASES = {
    "secret": lambda arena: {"backend": "file", "file_path": str(fresh(arena) / "secrets.json"), "cache": False},
    "pg_backup_latest": lambda arena: {"destinations": [local_destination(arena)]},
}
LOOKUP_TERMS = {"secret": "app/token", "pg_backup_latest": "app"}


def run_lookup(name, kwargs):
    """(values, None) or (None, the exception) of one lookup run."""
    from ansible.plugins.loader import lookup_loader

    try:
        with time_limit(CASE_SECONDS):
            return lookup_loader.get("locksmith.ops.%s" % name).run([LOOKUP_TERMS[name]], variables={}, **kwargs), None
    except Exception as err:  # noqa: BLE001 - what is raised is judged by the caller
        return None, err


@pytest.mark.parametrize("name", sorted(LOOKUP_BASES))
def test_lookups_raise_ansible_errors_that_name_the_input(name, arena):
    from ansible.errors import AnsibleError

    report = []
    base = LOOKUP_BASES[name](arena)
    for n, (path, option) in enumerate(option_paths(lookup_spec(name), base)):
        for label, value in hostile(option, arena, n).items():
            kwargs = LOOKUP_BASES[name](arena)
            set_path(kwargs, path, value, {})
            _values, err = run_lookup(name, kwargs)
            if err is None:
                continue
            text = str(err)
            if not isinstance(err, AnsibleError):
                report.append("%s=%s: %s, not an AnsibleError: %s" % (dotted(path), label, type(err).__name__, text))
            elif MARKER in text or BROKEN.search(text):
                report.append("%s=%s: a secret or a traceback shows: %s" % (dotted(path), label, text[:300]))
    assert not report, "\n".join(report)


def jinja_plugins():
    """(kind, name, function) of every filter and test of the collection, from their own FilterModule/TestModule."""
    found = []
    for kind, cls in (("filter", "FilterModule"), ("test", "TestModule")):
        for path in sorted((MODULES_DIR.parent / kind).glob("[a-z]*.py")):
            plugin = importlib.import_module("ansible_collections.locksmith.ops.plugins.%s.%s" % (kind, path.stem))
            table = getattr(plugin, cls)()
            functions = table.filters() if kind == "filter" else table.tests()
            found.extend((kind, name, function) for name, function in sorted(functions.items()))
    return found


JINJA_INPUTS = {"none": None, "empty": "", "nul": "a\x00b", "long": "x" * 100_000, "empty list": [], "empty dict": {},
                "number": -1, "list of junk": [None, 1, "x", {}], "dict of junk": {"": None, "x": [1]}}  # fmt: skip


@pytest.mark.parametrize(("kind", "name", "function"), jinja_plugins(), ids=lambda v: getattr(v, "__name__", v))
def test_filters_and_tests_raise_ansible_errors(kind, name, function):
    import inspect

    from ansible.errors import AnsibleError

    required = [
        p
        for p in inspect.signature(function).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    report = []
    for label, value in JINJA_INPUTS.items():
        try:
            with time_limit(CASE_SECONDS):
                function(*[value] * max(1, len(required)))
        except AnsibleError as err:
            if not str(err).strip():
                report.append("%s: an AnsibleError with no message" % label)
        except Exception as err:  # noqa: BLE001 - a bare Python exception is the finding
            report.append("%s: %s, not an AnsibleError: %s" % (label, type(err).__name__, str(err)[:200]))
    assert not report, "%s %s:\n%s" % (kind, name, "\n".join(report))


# ---- the failures this file found, kept by name -----------------------------------------------------------------
REGRESSIONS = {
    # Each was a ValueError out of main() (MODULE FAILURE): Python refuses a NUL in a file name.
    "posture_report dest with a NUL": ("posture_report", ("dest",), "nul", r"dest holds a NUL character"),
    "tls_check ca_file with a NUL": ("tls_check", ("ca_file",), "nul", r"ca_file holds a NUL character"),
    "secret_rotate file_path with a NUL": ("secret_rotate", ("file_path",), "nul", r"file_path holds a NUL"),
    "pg_backup encryption_key_file with a NUL": (
        "pg_backup",
        ("encryption_key_file",),
        "nul",
        r"encryption_key_file holds a NUL character",
    ),
    # Was an OSError out of main(): ENAMETOOLONG from os.stat.
    "secret_rotate file_path too long": ("secret_rotate", ("file_path",), "long", r"file_path '/x+' cannot be used"),
    # Each blocked forever: open() of a FIFO waits for a writer.
    "tls_check ca_file a FIFO": ("tls_check", ("ca_file",), "fifo", r"ca_file '.*a-fifo' cannot be read \(a FIFO"),
    "secret_rotate file_path a FIFO": ("secret_rotate", ("file_path",), "fifo", r"file_path '.*' cannot be read.*FIFO"),
    "pg_backup encryption_key_file a FIFO": (
        "pg_backup",
        ("encryption_key_file",),
        "fifo",
        r"encryption_key_file '.*a-fifo' cannot be read \(a FIFO, not a regular file\)",
    ),
    "pg_backup_restore encryption_key_file a FIFO": (
        "pg_backup_restore",
        ("encryption_key_file",),
        "fifo",
        r"encryption_key_file '.*a-fifo' cannot be read \(a FIFO, not a regular file\)",
    ),
    # Was silently no encryption at all (and, for the restore, a search for unencrypted backups).
    "pg_backup encryption_key_file empty": (
        "pg_backup",
        ("encryption_key_file",),
        "empty",
        r"encryption_key_file '' cannot be read \(No such file or directory\)",
    ),
    "pg_backup_restore encryption_key_file empty": (
        "pg_backup_restore",
        ("encryption_key_file",),
        "empty",
        r"encryption_key_file '' cannot be read",
    ),
    # Each said only "check the login_* options".
    "audit_trigger login_port 0": ("audit_trigger", ("login_port",), "zero", r"login_port 0 is not a TCP port"),
    "audit_trigger_info login_host blank": (
        "audit_trigger_info",
        ("login_host",),
        "blank",
        r"check login_host: no such host name",
    ),
    "audit_trigger login_host empty (the local socket)": (
        "audit_trigger",
        ("login_host",),
        "empty",
        r"check login_unix_socket .* or set login_host",
    ),
    # Said "step 'apply' failed:  \t  could not run: FileNotFoundError", naming no option and no cause.
    "secret_rotate apply_command a blank program": (
        "secret_rotate",
        ("apply_command",),
        "[blank]",
        r"apply_command holds a NUL byte or an empty program",
    ),
    "secret_rotate test_command a missing program": (
        "secret_rotate",
        ("test_command",),
        "[non-ascii]",
        r"test_command 'ünï-名前-✓' could not run \(No such file or directory\); its first item must be a program",
    ),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_found_failures_stay_clean_and_named(case, arena):
    name, path, label, expected = REGRESSIONS[case]
    spec = module_spec(name)
    option = dict(option_paths(spec["argument_spec"], {}))[path]
    args = BASES[name](arena, Secrets())
    set_path(args, path, hostile(option, arena, 0)[label], spec)
    result = run_case(name, args)
    assert result["failed"] is True
    assert re.search(expected, result["msg"]), result["msg"]
    assert problems(result, (None, None), path, None) == []
