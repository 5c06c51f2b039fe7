#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: locksmith.ops.template runs as an action plugin (plugins/action/template.py) on the
# controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: template
short_description: ansible.builtin.template, with one module run fewer on a file that is already right
version_added: 0.1.0
description:
  - Renders a Jinja2 template on the controller and writes the result to the managed host, exactly as
    M(ansible.builtin.template) does, with the same options, results, check mode and diff.
  - The builtin action hands the rendered file to the copy action. This one hands it to
    M(locksmith.ops.copy), which runs one module on the host instead of two when the file is already
    right (see there for when the second still runs), and which fails without writing anything when
    O(owner) or O(group) names an account the host does not have.
  - The roles of this collection use it for every file they render.
author: locksmith.ops contributors (@locksmith-ops)
options:
  follow:
    description:
      - Follow links at the destination.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.backup
  - ansible.builtin.files
  - ansible.builtin.template_common
  - ansible.builtin.validate
  - locksmith.ops.attributes
  - locksmith.ops.attributes.ALL
seealso:
  - module: ansible.builtin.template
  - module: locksmith.ops.copy
"""

EXAMPLES = r"""
- name: Render sshd's drop-in, checked by sshd before it replaces the old one
  locksmith.ops.template:
    src: sshd_config.j2
    dest: /etc/ssh/sshd_config.d/50-locksmith.conf
    owner: root
    group: root
    mode: "0600"
    validate: /usr/sbin/sshd -t -f %s
"""

RETURN = r"""
dest:
  description: Path of the destination file, written or left in place.
  returned: success
  type: str
  sample: /etc/ssh/sshd_config.d/50-locksmith.conf
path:
  description: Path of the file left in place (when the content was already right).
  returned: when the content did not change
  type: str
  sample: /etc/ssh/sshd_config.d/50-locksmith.conf
checksum:
  description: SHA-1 of the rendered content.
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
  sample: "0600"
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
  sample: 96
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
  sample: /etc/ssh/sshd_config.d/50-locksmith.conf.2345.2026-11-28@08:00:00~
"""
