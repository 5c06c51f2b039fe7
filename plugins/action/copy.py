# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""locksmith.ops.copy: ansible.builtin.copy with one module run on the host, not two, when nothing changes."""

from __future__ import annotations

from ansible.plugins.action.copy import ActionModule as BuiltinCopy

from ansible_collections.locksmith.ops.plugins.plugin_utils._file_attrs import attributes_in_place, unchanged_result


class ActionModule(BuiltinCopy):
    """The builtin action, answering its owner/group/mode check from the stat it already made when it can."""

    _last_stat = None
    _principals = None  # {(database, name): whether the host has it}, per task

    def _execute_remote_stat(self, path, all_vars, follow, tmp=None, checksum=True):
        status = super()._execute_remote_stat(path, all_vars, follow, tmp=tmp, checksum=checksum)
        # Only a stat that did not follow links describes the path the file module would be given.
        self._last_stat = (path, status) if not follow else None
        return status

    def _execute_module(self, module_name=None, module_args=None, *args, **kwargs):
        if module_name == "ansible.legacy.file" and module_args and self._last_stat is not None:
            path, status = self._last_stat
            if module_args.get("dest") == path and attributes_in_place(status, module_args):
                return unchanged_result(path, status)
        if module_name == "ansible.legacy.copy" and not self._task.check_mode:
            missing = self._missing_principal(module_args or self._task.args, kwargs.get("task_vars"))
            if missing:
                return missing
        return super()._execute_module(module_name, module_args, *args, **kwargs)

    def _missing_principal(self, module_args, task_vars):
        """A failed result when owner or group names no account on the host; None when both exist.

        The copy module moves the new file into place before it sets owner, group and mode, so an owner that does
        not exist left the new content (a secret, often) in place with the default mode, 0644. Checked only when
        a file is about to be written: one getent run per name and task.
        """
        if self._principals is None:
            self._principals = {}
        checked = self._principals
        for option, database in (("owner", "passwd"), ("group", "group")):
            name = module_args.get(option)
            # Unset; a number, used as it is whether or not an account has it; or root, which every host has (most
            # files of the roles are root's: no getent run for them).
            if not name or str(name).isdigit() or str(name) == "root":
                continue
            key = (database, str(name))
            if key not in checked:
                found = super()._execute_module(
                    module_name="ansible.legacy.getent",
                    module_args={"database": database, "key": str(name), "fail_key": False},
                    task_vars=task_vars,
                )
                # A getent that cannot run settles nothing: the copy goes ahead as before.
                entries = (found.get("ansible_facts") or {}).get("getent_" + database) or {}
                checked[key] = bool(found.get("failed")) or entries.get(str(name)) is not None
            if not checked[key]:
                dest = module_args.get("dest")
                return {
                    "failed": True,
                    "changed": False,
                    "dest": dest,
                    "msg": "%s '%s' does not exist on the host (getent %s); nothing was written to %s. Create it "
                    "before this task, or set %s to an existing account." % (option, name, database, dest, option),
                }
        return None
