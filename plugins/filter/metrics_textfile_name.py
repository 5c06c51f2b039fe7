# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The textfile-collector file name of one producer and subject, as the collection's one writer names it.

Roles that remove the files of subjects they no longer publish name the files they keep with this, so the naming
rule (slug and hash of an unsafe subject, shortening of a long one) stays in plugins/module_utils/_metrics.py.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.locksmith.ops.plugins.module_utils._atomic import is_temporary
from ansible_collections.locksmith.ops.plugins.module_utils._errors import MetricsError
from ansible_collections.locksmith.ops.plugins.module_utils._metrics import textfile_name


def metrics_textfile_name(subject, producer):
    """``locksmith_<producer>_<subject>.prom`` (``locksmith_<producer>.prom`` for no subject), or an error."""
    # The subject is the input so that map() applies the filter to a list of subjects.
    if isinstance(subject, bool) or not (subject is None or isinstance(subject, (str, int))):
        raise AnsibleFilterError(
            "metrics_textfile_name: the subject must be a string (a database, a secret, a role name), got %s %r"
            % (type(subject).__name__, subject)
        )
    if producer is not None and not isinstance(producer, str):  # None: the writer's own message below
        raise AnsibleFilterError(
            "metrics_textfile_name: the producer must be a string such as 'backup', got %s %r"
            % (type(producer).__name__, producer)
        )
    try:
        name = textfile_name(producer, subject)
    except MetricsError as err:
        raise AnsibleFilterError("metrics_textfile_name: %s" % err) from err
    if is_temporary(name):
        # write_textfile refuses such a subject too: no file of that name is ever published.
        raise AnsibleFilterError("metrics_textfile_name: subject '%s' gives a reserved file name" % subject)
    return name


class FilterModule:
    def filters(self):
        return {"metrics_textfile_name": metrics_textfile_name}
