# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Backup destinations: the shared option spec, the exception tree, retries, and backend selection.

A backup lives at ``<root>/<label>/<backup id>/`` (a directory for ``local``, a key prefix for
``s3``) and is complete only once ``manifest.json`` exists there; the manifest is always written last.
The options are documented once in plugins/doc_fragments/storage.py; a unit test fails on drift.
"""

from __future__ import annotations

import calendar
import random
import re
import time

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError

MANIFEST_NAME = "manifest.json"
# A backup id is its UTC start time plus a random tag, so ids sort by age and never collide.
BACKUP_ID = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{4}\Z")
# Labels are database names (validated identifiers) or this one, which no identifier can equal.
ALL_DATABASES_LABEL = "all-databases"
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*\Z|^all-databases\Z")
S3_STORAGE_CLASSES = [
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "REDUCED_REDUNDANCY",
]
S3_SSE = ["AES256", "aws:kms"]


class StorageError(LocksmithError):
    """A destination could not be read or written."""


class StorageDenied(StorageError):
    """The destination refused the credentials or the permission is missing."""


class StorageMissing(StorageError):
    """The destination (bucket, directory) or the object does not exist."""


class StorageFull(StorageError):
    """The destination ran out of space."""


class TransientError(StorageError):
    """A failure worth retrying (throttling, timeouts, 5xx); raised by backends to the retry loop."""


def retention_spec():
    """Suboptions of a destination's ``retention``."""
    return dict(
        keep_last=dict(type="int"),
        daily=dict(type="int"),
        weekly=dict(type="int"),
        monthly=dict(type="int"),
        max_age_days=dict(type="int"),
    )


def destination_spec():
    """Suboptions of one entry of ``destinations``."""
    return dict(
        type=dict(type="str", required=True, choices=["local", "s3"]),
        path=dict(type="path"),
        bucket=dict(type="str"),
        prefix=dict(type="str", default=""),
        region=dict(type="str"),
        endpoint_url=dict(type="str"),
        storage_class=dict(type="str", default="STANDARD", choices=S3_STORAGE_CLASSES),
        sse=dict(type="str", choices=S3_SSE),
        sse_kms_key_id=dict(type="str"),
        profile=dict(type="str"),
        access_key=dict(type="str", no_log=True),
        secret_key=dict(type="str", no_log=True),
        session_token=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        retention=dict(type="dict", options=retention_spec()),
    )


def storage_argument_spec():
    """Destination options shared by pg_backup and pg_backup_info (doc fragment: locksmith.ops.storage)."""
    return dict(
        destinations=dict(
            type="list",
            elements="dict",
            required=True,
            options=destination_spec(),
            required_if=[("type", "local", ["path"]), ("type", "s3", ["bucket"])],
        ),
    )


def validate_label(label):
    """A label is a path component at every destination, so only plain names pass."""
    if not isinstance(label, str) or not _LABEL.match(label):
        raise StorageError(
            "backup label %r is not a plain database name; use letters, digits, _ and $" % (label,), label=label
        )
    return label


def parse_backup_id(backup_id):
    """Start time (epoch seconds) encoded in a backup id, or None if it is not one of ours."""
    match = BACKUP_ID.match(backup_id or "")
    if not match:
        return None
    try:
        return calendar.timegm(time.strptime(match.group(1), "%Y%m%dT%H%M%SZ"))
    except ValueError:  # digits in the shape of a date that is none (month 13, hour 99): not one of ours
        return None


def is_backup_id(name):
    """True for a name pg_backup could have written: the id pattern holding a real UTC time."""
    return parse_backup_id(name) is not None


def new_backup_id(now):
    """A fresh id for a backup started at ``now`` (epoch seconds)."""
    return "%s-%04x" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)), random.getrandbits(16))  # nosec B311 - uniqueness, not secrecy


def with_retries(action, describe, warnings, attempts=4, base_delay=0.5, sleep=time.sleep):
    """Run ``action()``; retry TransientError with jittered exponential backoff, warning each time."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except TransientError as err:
            if attempt == attempts:
                raise StorageError(
                    "%s failed after %d attempts (%s); check the endpoint and retry later" % (describe, attempts, err),
                ) from err
            # Full jitter keeps several hosts that failed together from retrying together.
            delay = random.uniform(0, base_delay * 2 ** (attempt - 1))  # noqa: S311 # nosec B311
            warnings.append("%s: %s; retry %d of %d in %.1fs" % (describe, err, attempt, attempts - 1, delay))
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def build_destinations(options_list, warnings):
    """One backend per entry of ``destinations``, chosen by its ``type``; validate() runs here (no I/O)."""
    from ansible_collections.locksmith.ops.plugins.module_utils._storage.local import LocalDestination
    from ansible_collections.locksmith.ops.plugins.module_utils._storage.s3 import S3Destination

    backends = {"local": LocalDestination, "s3": S3Destination}
    destinations = []
    for index, options in enumerate(options_list or []):
        destination = backends[options["type"]](index, options, warnings)
        destination.validate()
        # A negative count would slice from the end (keep_last -2 prunes the two oldest) and a negative age
        # would prune every backup but the newest: refuse them before anything runs.
        negative = sorted(rule for rule, value in (options.get("retention") or {}).items() if (value or 0) < 0)
        if negative:
            raise StorageError(
                "%s: retention %s must be 0 or more (0 or unset turns a rule off)"
                % (destination.name, ", ".join(negative)),
                destination=index,
            )
        destinations.append(destination)
    if not destinations:
        raise StorageError("destinations is empty; give at least one local or s3 destination")
    return destinations
