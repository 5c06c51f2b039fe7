# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""The exception tree every locksmith.ops helper raises; only main() turns it into fail_json."""

from __future__ import annotations


class LocksmithError(Exception):
    """A failure a user can act on: ``msg`` names the input and the fix, ``details`` are extra result keys."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def __str__(self):
        return self.msg


class ArtefactError(LocksmithError):
    """Writing a file or object failed; nothing that looks valid was left behind."""


class MetricsError(LocksmithError):
    """A metric name, label or value breaks the Prometheus exposition format."""
