#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: locksmith.ops.copy runs as an action plugin (plugins/action/copy.py) on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: copy
short_description: ansible.builtin.copy, with one module run fewer on a file that is already right
version_added: 0.1.0
description:
  - Copies a file, or a string given as O(content), to the managed host, exactly as M(ansible.builtin.copy)
    does, with the same options, results, check mode and diff.
  - One difference, in what it costs. When the destination already has the content, the builtin action
    runs two modules on the host, C(stat) and then C(file) to put the owner, group and mode right. This
    action answers the second from the first run's result when it can, so a converged host runs one
    module per file instead of two.
  - The C(file) module still runs when the stat cannot settle it. That is the case when the destination
    is not a regular file or is a link, or the owner, group or mode differs. It is also the case for a
    symbolic O(mode) such as V(u=rw,g=r), and when O(attributes) or an SELinux context option is given.
  - A second difference, in what a failure leaves. When O(owner) or O(group) names an account the host does
    not have, M(ansible.builtin.copy) has already moved the new file into place when C(chown) fails, and
    leaves it there with the default mode (often C(0644), for a file that may hold a secret). This action
    looks the names up first (C(getent), only when a file is about to be written) and fails without writing
    anything.
  - The roles of this collection use it for every file they write.
author: locksmith.ops contributors (@locksmith-ops)
options:
  src:
    description:
      - Path on the controller of the file, or the directory, to copy. Relative paths are searched as by
        M(ansible.builtin.copy), in the role's C(files/) first.
      - A directory is copied recursively; with a trailing C(/), only its contents.
    type: path
  content:
    description:
      - The text of the file, instead of O(src). O(dest) must then be a file.
    type: str
  dest:
    description:
      - Path on the managed host to copy to. When O(src) is a directory, a directory.
    type: path
    required: true
  force:
    description:
      - V(true) replaces a destination whose content differs; V(false) writes only a destination that
        does not exist yet.
    type: bool
    default: true
  directory_mode:
    description:
      - Mode of the directories a recursive copy creates; existing directories keep theirs.
    type: raw
  remote_src:
    description:
      - V(true) when O(src) is a path on the managed host rather than on the controller.
    type: bool
    default: false
  follow:
    description:
      - Follow links at the destination.
    type: bool
    default: false
  local_follow:
    description:
      - Follow links in the source tree on the controller.
    type: bool
  checksum:
    description:
      - SHA-1 of the file being transferred, checked after the transfer. Computed from O(src) when not given.
    type: str
extends_documentation_fragment:
  - ansible.builtin.backup
  - ansible.builtin.decrypt
  - ansible.builtin.files
  - ansible.builtin.validate
  - locksmith.ops.attributes
  - locksmith.ops.attributes.ALL
seealso:
  - module: ansible.builtin.copy
  - module: locksmith.ops.template
"""

EXAMPLES = r"""
- name: Create the drop-in directory, missing on a stock host
  ansible.builtin.file:
    path: /etc/systemd/coredump.conf.d
    state: directory
    owner: root
    group: root
    mode: "0755"

- name: Write a drop-in; a second run runs only the stat module on the host
  locksmith.ops.copy:
    content: |
      [Coredump]
      Storage=none
    dest: /etc/systemd/coredump.conf.d/50-locksmith.conf
    owner: root
    group: root
    mode: "0644"

- name: Copy a file from the role's files/ directory, checked before it replaces the old one
  locksmith.ops.copy:
    src: sudoers-ops
    dest: /etc/sudoers.d/ops
    owner: root
    group: root
    mode: "0440"
    validate: visudo -cf %s
"""

RETURN = r"""
dest:
  description: Path of the destination file, written or left in place.
  returned: success
  type: str
  sample: /etc/sudoers.d/ops
path:
  description: Path of the file left in place (when the content was already right).
  returned: when the content did not change
  type: str
  sample: /etc/sudoers.d/ops
checksum:
  description: SHA-1 of the file's content.
  returned: success
  type: str
  sample: 6e642bb8dd5c2e027bf21dd923337cbb4214f827
owner:
  description: Owner of the file.
  returned: success
  type: str
  sample: root
group:
  description: Group of the file.
  returned: success
  type: str
  sample: root
mode:
  description: Permissions of the file, in octal.
  returned: success
  type: str
  sample: "0440"
uid:
  description: Numeric owner of the file.
  returned: success
  type: int
  sample: 0
gid:
  description: Numeric group of the file.
  returned: success
  type: int
  sample: 0
state:
  description: V(file).
  returned: success
  type: str
  sample: file
size:
  description: Size of the file in bytes.
  returned: success
  type: int
  sample: 43
md5sum:
  description: MD5 of the file's content, where the host can compute one.
  returned: changed
  type: str
  sample: 2a5aeecc61dc98c4d780b14b330e3282
src:
  description: The temporary file on the host that was moved into place.
  returned: changed
  type: str
  sample: /root/.ansible/tmp/ansible-tmp-1795000000.0-1234-5678/.source
backup_file:
  description: Path of the copy of the previous file, with O(backup).
  returned: changed and O(backup) is set
  type: str
  sample: /etc/sudoers.d/ops.2345.2026-11-28@08:00:00~
"""
