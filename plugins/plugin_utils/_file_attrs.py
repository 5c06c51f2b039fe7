# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Decide, from a stat the action already made, whether a file-module run could change anything.

ansible.builtin.copy and ansible.builtin.template stat the destination, and when its content is already right
they run the file module to put owner, group and mode right. On a converged host that second run changes
nothing, yet it costs as much as the stat. These helpers let the locksmith.ops actions answer it from the stat.
"""

from __future__ import annotations

import re

# Arguments the copy action hands to the file module that a stat can settle, and the ones the file module needs
# to run for: SELinux context parts and chattr attributes are not in a stat's result.
_SETTLED_BY_STAT = frozenset(("owner", "group", "mode"))
_NEEDS_THE_MODULE = frozenset(("attributes", "seuser", "serole", "setype", "selevel"))
# Arguments that never change a regular file that exists (or name it).
_INERT = frozenset(("dest", "path", "_original_basename", "recurse", "state", "follow", "unsafe_writes", "_diff_peek"))

_OCTAL_MODE = re.compile(r"^(0o?)?[0-7]{1,4}\Z")


def _wanted_mode(mode):
    """The mode as a number, or None when only the module can interpret it (symbolic modes such as u=rw)."""
    if isinstance(mode, bool):
        return None
    if isinstance(mode, int):
        return mode
    text = str(mode)
    if _OCTAL_MODE.match(text):
        return int(text, 8)
    return None


def _same_principal(wanted, name, number):
    """Owner or group given by name or by number; like the file module, digits are read as a number first."""
    text = str(wanted)
    if text.isdigit():
        return number is not None and int(text) == number
    return name is not None and text == name


def attributes_in_place(stat, file_args):
    """True when the file module, given file_args, would find nothing to change on the file described by stat.

    stat is the result of the stat module run without following links; file_args the arguments the copy
    action would pass to the file module. Anything this cannot judge from the stat answers False, so the
    caller runs the module as before.
    """
    if not stat or not stat.get("exists") or not stat.get("isreg") or stat.get("islnk"):
        return False
    if file_args.get("state", "file") != "file" or file_args.get("recurse"):
        return False
    for key, value in file_args.items():
        if value is None or key in _INERT:
            continue
        if key in _NEEDS_THE_MODULE or key not in _SETTLED_BY_STAT:
            return False
    owner = file_args.get("owner")
    if owner is not None and not _same_principal(owner, stat.get("pw_name"), stat.get("uid")):
        return False
    group = file_args.get("group")
    if group is not None and not _same_principal(group, stat.get("gr_name"), stat.get("gid")):
        return False
    mode = file_args.get("mode")
    if mode is not None:
        wanted = _wanted_mode(mode)
        current = stat.get("mode")
        if wanted is None or current is None or wanted != int(current, 8):
            return False
    return True


def unchanged_result(path, stat):
    """What the file module returns for a regular file it left alone, built from the stat."""
    result = {
        "changed": False,
        "path": path,
        "state": "file",
        "uid": stat.get("uid"),
        "gid": stat.get("gid"),
        "owner": stat.get("pw_name"),
        "group": stat.get("gr_name"),
        "mode": stat.get("mode"),
    }
    if "size" in stat:
        result["size"] = stat["size"]
    return result
