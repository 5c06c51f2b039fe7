"""When locksmith.ops.copy may answer the file module's owner/group/mode run from the stat it already made."""

from __future__ import annotations

import pytest

from ansible_collections.locksmith.ops.plugins.plugin_utils._file_attrs import attributes_in_place, unchanged_result

# What the stat module returns for /etc/sudoers.d/ops, root:root 0440, not following links.
STAT = {
    "exists": True,
    "isreg": True,
    "islnk": False,
    "isdir": False,
    "path": "/etc/sudoers.d/ops",
    "mode": "0440",
    "uid": 0,
    "gid": 0,
    "pw_name": "root",
    "gr_name": "root",
    "size": 27,
}
# What the copy action passes to the file module after a matching checksum.
ARGS = {
    "dest": "/etc/sudoers.d/ops",
    "_original_basename": "tmpabc",
    "recurse": False,
    "state": "file",
    "owner": "root",
    "group": "root",
    "mode": "0440",
}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"mode": "440"},
        {"mode": "0o440"},
        {"mode": 0o440},
        {"owner": "0", "group": "0"},
        {"owner": None, "group": None, "mode": None},
        {"follow": True, "unsafe_writes": False},
        {"attributes": None, "seuser": None},
    ],
    ids=repr,
)
def test_a_file_already_as_asked_needs_no_module_run(change):
    assert attributes_in_place(STAT, {**ARGS, **change}) is True


@pytest.mark.parametrize(
    "change",
    [
        {"mode": "0640"},
        {"mode": 440},  # a decimal 440 is mode 0670 to the file module: different, so it must run
        {"mode": "u=r,g=r"},  # symbolic modes are the module's to interpret
        {"mode": "preserve"},
        {"mode": True},
        {"owner": "nobody"},
        {"owner": "65534"},
        {"group": "adm"},
        {"attributes": "+i"},
        {"seuser": "system_u"},
        {"setype": "etc_t"},
        {"state": "touch"},
        {"recurse": True},
        {"modification_time": "now"},  # an argument it does not know: run the module
    ],
    ids=repr,
)
def test_anything_that_differs_or_cannot_be_judged_runs_the_module(change):
    assert attributes_in_place(STAT, {**ARGS, **change}) is False


@pytest.mark.parametrize(
    "stat",
    [
        None,
        {},
        {**STAT, "exists": False},
        {**STAT, "islnk": True, "isreg": False},
        {**STAT, "isreg": False, "isdir": True},
        {key: value for key, value in STAT.items() if key != "pw_name"},
        {key: value for key, value in STAT.items() if key != "mode"},
    ],
    ids=["none", "empty", "absent", "link", "directory", "owner unknown", "no mode"],
)
def test_a_destination_that_is_not_a_plain_file_runs_the_module(stat):
    assert attributes_in_place(stat, ARGS) is False


def test_an_owner_given_in_digits_is_a_uid_even_where_a_user_has_that_name():
    owned_by_user_named_1000 = {**STAT, "pw_name": "1000", "uid": 1001}
    assert attributes_in_place(owned_by_user_named_1000, {**ARGS, "owner": "1000"}) is False
    assert attributes_in_place(owned_by_user_named_1000, {**ARGS, "owner": "1001"}) is True


def test_the_unchanged_result_has_the_file_modules_keys():
    assert unchanged_result("/etc/sudoers.d/ops", STAT) == {
        "changed": False,
        "path": "/etc/sudoers.d/ops",
        "state": "file",
        "uid": 0,
        "gid": 0,
        "owner": "root",
        "group": "root",
        "mode": "0440",
        "size": 27,
    }
