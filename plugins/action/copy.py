# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""locksmith.ops.copy: ansible.builtin.copy with one module run on the host, not two, when nothing changes."""

from __future__ import annotations

from ansible.plugins.action.copy import ActionModule as BuiltinCopy

from ansible_collections.locksmith.ops.plugins.plugin_utils._file_attrs import attributes_in_place, unchanged_result


class ActionModule(BuiltinCopy):
    """The builtin action, answering its owner/group/mode check from the stat it already made when it can."""

    _last_stat = None

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
        return super()._execute_module(module_name, module_args, *args, **kwargs)
