# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja tests: can a path, or a dict of settings, be printed into a configuration file or a systemd unit as it is?

The roles print paths into files whose syntax a few characters change: a line break starts a new setting (in a
unit, an ExecStartPre=+ run as root), a blank splits a value in two, ';' and '#' end a directive or start a
comment, quotes and backslashes change quoting, '%' is a systemd specifier and fail2ban's interpolation, '$' a
shell or systemd variable, and `|&<>()*?[]{}! are the shell's (cron lines and archive_command run through sh). A
path without any of them means the same in every one of those files.
"""

from __future__ import annotations

import re

_PLAIN_PATH = re.compile(r"/[^\s;#\"'\\%$`|&<>()*?\[\]{}!\x00-\x1f\x7f]*\Z")
_SETTING_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def plain_path(value):
    """True when value is an absolute path without blanks, control characters, ; # quotes \\ % $ or shell syntax."""
    return isinstance(value, str) and _PLAIN_PATH.match(value) is not None


def plain_settings(value):
    """True when value is a dict of settings printed as 'name = value' lines: plain names, one-line values."""
    if not isinstance(value, dict):
        return False
    return all(
        isinstance(name, str) and _SETTING_NAME.match(name) and not _CONTROL.search(str(setting))
        for name, setting in value.items()
    )


class TestModule:
    def tests(self):
        return {"plain_path": plain_path, "plain_settings": plain_settings}
