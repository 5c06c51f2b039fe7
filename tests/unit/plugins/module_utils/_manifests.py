"""Backups written by hand at a local destination: as pg_backup writes them, or with one manifest field damaged."""

from __future__ import annotations

import hashlib
import json

from ansible_collections.locksmith.ops.plugins.module_utils._storage import parse_backup_id

OLDER, NEWER = "20261126T020000Z-aaaa", "20261127T020000Z-bbbb"
DATA = b"a stored custom-format dump"


def manifest(backup_id, label="app"):
    started = parse_backup_id(backup_id)
    return {
        "manifest_format": 1,
        "id": backup_id,
        "label": label,
        "database": label,
        "databases": [label],
        "started_at": backup_id[:16],
        "ended_at": backup_id[:16],
        "ended_epoch": started + 9.5,
        "encryption": None,
        "row_estimates": {label: {"public.t": 5, "public.never_analyzed": None}},
        "row_counts": {label: {"public.t": 5}},
        "artefacts": [
            {
                "kind": "dump",
                "format": "custom",
                "name": "%s.dump" % label,
                "plain_name": "%s.dump" % label,
                "size_bytes": len(DATA),
                "sha256": hashlib.sha256(DATA).hexdigest(),
            }
        ],
    }


def store(root, backup_id, damage=None, label="app"):
    """Write one backup under ``root`` (a local destination's path); ``damage`` changes its manifest first."""
    directory = root / label / backup_id
    directory.mkdir(parents=True)
    (directory / ("%s.dump" % label)).write_bytes(DATA)
    body = manifest(backup_id, label)
    if damage:
        damage(body)
    (directory / "manifest.json").write_text(json.dumps(body))
    return directory


def _artefact(**changes):
    return lambda m: m["artefacts"][0].update(changes)


# Fields readers call .get() on, iterate or index, given the wrong JSON type: (what the error says, the damage).
DAMAGE = {
    "row_counts-list": (r"row_counts is not an object", lambda m: m.update(row_counts=[5])),
    "row_counts-string": (r"row_counts is not an object", lambda m: m.update(row_counts="5")),
    "row_counts-database-list": (r"row_counts\['app'\] is not an object", lambda m: m.update(row_counts={"app": [5]})),
    "row_counts-count-string": (
        r"row_counts\['app'\]\['public.t'\] is not a whole number",
        lambda m: m.update(row_counts={"app": {"public.t": "5"}}),
    ),
    "row_counts-count-null": (
        r"row_counts\['app'\]\['public.t'\] is not a whole number",
        lambda m: m.update(row_counts={"app": {"public.t": None}}),
    ),
    "row_estimates-list": (r"row_estimates is not an object", lambda m: m.update(row_estimates=[5])),
    "row_estimates-count-string": (
        r"row_estimates\['app'\]\['public.t'\] is not a whole number",
        lambda m: m.update(row_estimates={"app": {"public.t": "5"}}),
    ),
    "encryption-list": (r"encryption is neither an object nor null", lambda m: m.update(encryption=["AES"])),
    "encryption-string": (r"encryption is neither an object nor null", lambda m: m.update(encryption="AES")),
    "databases-string": (r"databases is not a list of database names", lambda m: m.update(databases="app")),
    "databases-null-name": (r"databases is not a list of database names", lambda m: m.update(databases=[None])),
    "plain_name-number": (r"artefacts\[0\]\.plain_name is missing or not a string", _artefact(plain_name=5)),
    "plain_name-list": (r"artefacts\[0\]\.plain_name is missing or not a string", _artefact(plain_name=["app.dump"])),
    "plain_name-null": (r"artefacts\[0\]\.plain_name is missing or not a string", _artefact(plain_name=None)),
}
