# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Find secrets left in files: detect-secrets' plugins plus a rule for env files.

A finding is (file, line, type) and nothing else: the matched value is never copied out of the
scanner, and no hash of it either, because a hash of a short password can be reversed by guessing.
"""

from __future__ import annotations

import fnmatch
import io
import os
import re
import stat
import traceback

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError

try:
    from detect_secrets import __version__ as _ds_version
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    # scan_file's own steps (private names), run apart for text that is not UTF-8: see detect().
    from detect_secrets.core.scan import _is_filtered_out, _process_line_based_plugins, scan_file
    from detect_secrets.settings import default_settings
except ImportError:
    HAS_DETECT_SECRETS = False
    DETECT_SECRETS_IMPORT_ERROR = traceback.format_exc()
    DETECT_SECRETS_VERSION = None
else:
    HAS_DETECT_SECRETS = True
    DETECT_SECRETS_IMPORT_ERROR = None
    DETECT_SECRETS_VERSION = _ds_version.VERSION

ENV_FILE_TYPE = "Env File Value"
# Never scanned: git's object store holds every old version, and scanning it would report each secret again.
ALWAYS_EXCLUDED_DIRS = (".git",)
# KEY=value, optionally after `export`, as docker compose, systemd EnvironmentFile and dotenv read them.
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*$")

# Values that say what to put there instead of holding it: a mask, an instruction, a token-replacement marker, or
# AWS's documented example keys (AKIAIOSFODNN7EXAMPLE). detect-secrets filters templates ({{ x }}, ${X}) only.
# Not changeme or changeit: those are real default passwords (Java's keystore's), and one left in a config is a finding.
# Each form is narrow (words inside the markers, a mask character repeated, AWS's own example keys by name), so a
# real value that merely has the shape (<Zq8#kL2!pW>, 00000000, Kx9/aB+EXAMPLE) is still reported.
_PLACEHOLDER = re.compile(
    r"(?i:([x*#.])\1{2,}|<[a-z][a-z _.-]*>|__[a-z][a-z_]*__|@@[a-z][a-z_]*@@|your[_-][a-z_-]*[_-]here"
    r"|replace[_-]?me|todo|tbd|fixme|placeholder|redacted)\Z"
    r"|(?:AKIAIOSFODNN7|AKIAI44QH8DHB)EXAMPLE\Z|(?:wJalrXUtnFEMI/K7MDENG/bPxRfiCY|je7MtGbClwBF/2Zp9Utk/h3yCo8nvb)EXAMPLEKEY\Z"
)


# Formats detect-secrets' plugins miss (checked against its 1.5 release): an encrypted or PGP private key block
# (its detector knows the plain ones only), a fine-grained GitHub token (github_pat_, found only by the entropy
# plugins, which users often disable) and a Google API key (the same). Always on; their types are their own.
EXTRA_RULES = (
    ("Private Key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("GitHub Token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    ("Google API Key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
)


def extra_findings(path: str):
    """(line, type) of EXTRA_RULES' matches in a text file."""
    found = set()
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            found.update((number, kind) for kind, pattern in EXTRA_RULES if pattern.search(line))
    return found


class SecretScanError(LocksmithError):
    """A path or option of the scan is unusable; the message names it and the fix."""


def secret_scan_argument_spec():
    """Options of the secret_scan module."""
    return dict(
        paths=dict(type="list", elements="path", required=True),
        exclude=dict(type="list", elements="str", default=[]),
        env_file_patterns=dict(type="list", elements="str", default=[".env", "*.env"]),
        disable_plugins=dict(type="list", elements="str", default=[]),
        max_file_size_bytes=dict(type="int", default=5242880),
        fail_on_findings=dict(type="bool", default=True),
    )


def plugin_names():
    """Class names of every detect-secrets plugin, as disable_plugins takes them."""
    return sorted(cls.__name__ for cls in get_mapping_from_secret_type_to_class().values())


def is_placeholder(value) -> bool:
    """Whether a matched value is evidently a placeholder (xxxx, <password>, REPLACE_ME), not a secret."""
    return bool(value) and _PLACEHOLDER.match(value.strip("'\"")) is not None


def env_value_is_set(raw: str) -> bool:
    """Whether the right-hand side of an env assignment holds a value (quotes and trailing comment removed)."""
    value = raw
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        value = value[1:end] if end > 0 else value[1:]
    else:
        value = re.split(r"\s+#", value, maxsplit=1)[0]
    return value.strip() != ""


def env_file_lines(path: str) -> list[int]:
    """Line numbers (from 1) of the assignments with a non-empty value in an env file."""
    found = []
    # utf-8-sig: a byte order mark (Windows editors write one) is not part of the first key.
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.lstrip().startswith("#"):
                continue
            match = _ENV_LINE.match(line)
            if match and env_value_is_set(match.group(2)):
                found.append(number)
    return found


def _matches(relative: str, patterns) -> bool:
    """Whether a path relative to the scanned root, or its last component, matches one of the globs."""
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def iter_files(root: str, exclude):
    """Regular files under ``root`` (or ``root`` itself), as (path, skip_reason or None), sorted.

    ``root`` itself may be a symlink (the user named it); links below it are not followed, as they may point
    anywhere on the host.
    """
    if os.path.isfile(root):
        yield root, None
        return
    for current, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(current, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirs[:] = sorted(d for d in dirs if d not in ALWAYS_EXCLUDED_DIRS and not _matches(rel_dir + d, exclude))
        # os.walk lists a link to a directory among the directories and does not enter it: say so, like a file link.
        for name in [d for d in dirs if os.path.islink(os.path.join(current, d))]:
            dirs.remove(name)
            yield os.path.join(current, name), "symlink, not followed"
        for name in sorted(files):
            if _matches(rel_dir + name, exclude):
                continue
            path = os.path.join(current, name)
            yield path, _skip_reason(path)


def _skip_reason(path: str):
    """Why a directory entry is not read: a link may point anywhere on the host, and opening a FIFO blocks until
    something writes to it (a scan hung on one), a device may never end."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as err:
        return "cannot be read (%s)" % err.strerror
    if stat.S_ISLNK(mode):
        return "symlink, not followed"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device)"
    return None


def detect(path: str):
    """detect-secrets' findings in one file, or None for a binary one. scan_file drops a file whole at its first
    byte that is not UTF-8 (one Latin-1 comment hid every secret in it), so such a text file's lines are scanned
    with those bytes replaced; a binary is left to the caller to list (read line by line it is slow, and noise)."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        if _is_filtered_out(required_filter_parameters=["filename"], filename=path):
            return []  # what scan_file skips by name (images, archives, lock files) stays skipped
        if b"\0" in data:
            return None
        lines = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace").readlines()
        return list(_process_line_based_plugins(lines=list(enumerate(lines, start=1)), filename=path))
    return list(scan_file(path))


def validate(params) -> None:
    """Check the options without reading any file but the paths' existence."""
    for index, path in enumerate(params["paths"]):
        if not os.path.exists(path) and not os.path.islink(path):
            raise SecretScanError(
                "paths[%d] '%s' does not exist; give an existing file or directory, or remove it from paths"
                % (index, path),
                path=path,
            )
    unknown = sorted(set(params["disable_plugins"]) - set(plugin_names()))
    if unknown:
        raise SecretScanError(
            "disable_plugins names unknown detect-secrets plugins %s; use names from: %s"
            % (", ".join(unknown), ", ".join(plugin_names())),
            unknown_plugins=unknown,
        )
    if params["max_file_size_bytes"] <= 0:
        raise SecretScanError("max_file_size_bytes is %d; set a positive size in bytes" % params["max_file_size_bytes"])


def scan(params) -> dict:
    """Scan every path; -> {findings, files_scanned, skipped}. Findings carry no value and no hash."""
    validate(params)
    findings = set()
    skipped = []
    scanned = 0
    with default_settings() as settings:
        settings.disable_plugins(*params["disable_plugins"])
        for root in params["paths"]:
            for path, reason in iter_files(root, params["exclude"]):
                if reason is None and not os.access(path, os.R_OK):
                    reason = "not readable by this user"
                if reason is None and os.path.getsize(path) > params["max_file_size_bytes"]:
                    reason = "larger than max_file_size_bytes"
                if reason is not None:
                    skipped.append({"file": path, "reason": reason})
                    continue
                secrets = detect(path)
                if secrets is None:
                    skipped.append({"file": path, "reason": "binary (not UTF-8 text, holds NUL bytes)"})
                    continue
                scanned += 1
                for secret in secrets:
                    if not is_placeholder(secret.secret_value):
                        findings.add((path, secret.line_number, secret.type))
                findings.update((path, line, kind) for line, kind in extra_findings(path))
                if _matches(os.path.basename(path), params["env_file_patterns"]):
                    findings.update((path, line, ENV_FILE_TYPE) for line in env_file_lines(path))
    return {
        "findings": [{"file": display_path(f), "line": n, "type": t} for f, n, t in sorted(findings)],
        "files_scanned": scanned,
        "skipped": [dict(entry, file=display_path(entry["file"])) for entry in skipped],
    }


def display_path(path: str) -> str:
    """``path`` as valid UTF-8. os.walk keeps a name byte that is not UTF-8 as a surrogate, and Ansible refuses a
    result holding one (the whole result, findings and all), so such a byte is shown as \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def failure_message(findings, limit: int = 20) -> str:
    """The fail_json message: every file:line (up to ``limit``) with its type, then the fix."""
    shown = ", ".join("%s:%d (%s)" % (f["file"], f["line"], f["type"]) for f in findings[:limit])
    more = " and %d more" % (len(findings) - limit) if len(findings) > limit else ""
    return (
        "found %d possible secret(s): %s%s; move each value to the secret store and rotate it, or, for a "
        "false positive, add the path to exclude (a glob) or the plugin to disable_plugins"
        % (len(findings), shown, more)
    )
