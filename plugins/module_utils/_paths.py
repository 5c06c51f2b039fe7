# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Paths users give: refused with the option named before the OS raises, and files opened only when regular."""

from __future__ import annotations

import os
import stat

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError


class PathError(LocksmithError):
    """A path option names something that cannot be used as the file or directory it stands for; ``reason`` is
    the short cause, for callers that word their own message."""

    def __init__(self, msg, reason, **details):
        super().__init__(msg, **details)
        self.reason = reason


def _path_values(spec: dict, params: dict, prefix: str = ""):
    """(option as messages name it, value) of every path-typed value in params, suboptions included."""
    for name, option in spec.items():
        value = (params or {}).get(name)
        if value is None:
            continue
        kind, label = option.get("type", "str"), prefix + name
        if kind == "path":
            yield label, value
        elif kind == "list" and option.get("elements") == "path":
            for index, item in enumerate(value):
                yield "%s[%d]" % (label, index), item
        elif option.get("options") and kind == "dict" and isinstance(value, dict):
            yield from _path_values(option["options"], value, label + ".")
        elif option.get("options") and kind == "list":
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    yield from _path_values(option["options"], item, "%s[%d]." % (label, index))


def nul_in_paths(spec: dict, params: dict) -> str | None:
    """The failure message when a path option holds a NUL character (Python raises ValueError on it), else None."""
    bad = [label for label, value in _path_values(spec, params) if "\x00" in str(value)]
    if not bad:
        return None
    return "%s holds a NUL character, which no file name can; remove it (a template that rendered binary data?)" % (
        ", ".join(bad)
    )


def refuse_nul_in_paths(module) -> None:
    """fail_json when a path option holds a NUL: called first in main(), before anything opens a path, since
    Python raises ValueError on it and no helper expects that."""
    message = nul_in_paths(module.argument_spec, module.params)
    if message:
        module.fail_json(msg=message)


def open_regular(path: str, option: str, mode: str = "rb"):
    """``path`` opened for reading when it is a regular file; PathError naming ``option`` otherwise.

    O_NONBLOCK: opening a FIFO (or a device) for reading would wait forever for a writer; it is refused instead.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except ValueError as err:
        raise PathError("%s %r holds a NUL character; remove it" % (option, path), "a NUL character") from err
    except OSError as err:
        raise PathError(
            "%s '%s' cannot be read (%s); check the path and its permissions" % (option, path, err.strerror),
            err.strerror,
        ) from err
    kind = stat.S_IFMT(os.fstat(fd).st_mode)
    if kind != stat.S_IFREG:
        os.close(fd)
        what = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}.get(kind, "a device")
        raise PathError(
            "%s '%s' is %s, not a regular file; point %s at a file" % (option, path, what, option),
            "%s, not a regular file" % what,
        )
    return os.fdopen(fd, mode) if "b" in mode else os.fdopen(fd, mode, encoding="utf-8")
