# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""locksmith.ops.template: ansible.builtin.template whose copy step is locksmith.ops.copy."""

from __future__ import annotations

from ansible.plugins.action.template import ActionModule as BuiltinTemplate


class _ActionLoader:
    """The action loader, except that the builtin template's copy step resolves to locksmith.ops.copy."""

    def __init__(self, loader):
        self._loader = loader

    def get(self, name, *args, **kwargs):
        if name == "ansible.legacy.copy":
            name = "locksmith.ops.copy"
        return self._loader.get(name, *args, **kwargs)

    def __getattr__(self, attr):
        return getattr(self._loader, attr)


class _SharedLoaders:
    """The shared plugin loaders with the action loader above; everything else passes through."""

    def __init__(self, shared):
        self._shared = shared
        self.action_loader = _ActionLoader(shared.action_loader)

    def __getattr__(self, attr):
        return getattr(self._shared, attr)


class ActionModule(BuiltinTemplate):
    """The builtin action: it renders on the controller and hands the result to the copy action it looks up."""

    def run(self, tmp=None, task_vars=None):
        if not isinstance(self._shared_loader_obj, _SharedLoaders):
            self._shared_loader_obj = _SharedLoaders(self._shared_loader_obj)
        return super().run(tmp=tmp, task_vars=task_vars)
