# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Backup destinations shared by pg_backup and pg_backup_info (spec: module_utils/_storage)."""

    DOCUMENTATION = r"""
options:
  destinations:
    description:
      - Where backups are stored. Each backup lives at C(<root>/<database>/<backup id>/), where the root is
        O(destinations[].path) or C(s3://<bucket>/<prefix>), the label is the database name or
        C(all-databases), and the id is the UTC start time plus a random tag (C(20261127T020000Z-1a2b)).
      - A backup is complete only once its C(manifest.json) exists; the manifest is written last, after the
        destination has confirmed every artefact's size and checksum. Anything without a manifest is
        reported as incomplete and never restored.
      - Give two S3 destinations in different regions for geo-redundancy.
    type: list
    elements: dict
    required: true
    version_added: 0.1.0
    suboptions:
      type:
        description: V(local) for a directory on the managed host, V(s3) for an S3 bucket (AWS or any S3 API).
        type: str
        required: true
        choices: [local, s3]
        version_added: 0.1.0
      path:
        description: Absolute directory for V(local); it must exist. Required for V(local).
        type: path
        version_added: 0.1.0
      bucket:
        description: Bucket name for V(s3); it must exist. Required for V(s3).
        type: str
        version_added: 0.1.0
      prefix:
        description: Key prefix inside O(destinations[].bucket), without a leading slash.
        type: str
        default: ''
        version_added: 0.1.0
      region:
        description: AWS region of the bucket; the AWS credential chain's default when omitted.
        type: str
        version_added: 0.1.0
      endpoint_url:
        description: S3 API endpoint, for S3-compatible stores (MinIO, Ceph, moto); AWS when omitted.
        type: str
        version_added: 0.1.0
      storage_class:
        description:
          - Storage class of new objects. Lifecycle rules that move old backups to Glacier belong on the bucket.
        type: str
        default: STANDARD
        choices: [STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR, REDUCED_REDUNDANCY]
        version_added: 0.1.0
      sse:
        description: Server-side encryption of new objects; V(aws:kms) uses O(destinations[].sse_kms_key_id) if set.
        type: str
        choices: [AES256, 'aws:kms']
        version_added: 0.1.0
      sse_kms_key_id:
        description: KMS key id or ARN for O(destinations[].sse=aws:kms).
        type: str
        version_added: 0.1.0
      profile:
        description: AWS profile name; omit to use the standard credential chain (environment, instance role).
        type: str
        version_added: 0.1.0
      access_key:
        description: AWS access key id; give it with O(destinations[].secret_key), or neither. Never logged.
        type: str
        version_added: 0.1.0
      secret_key:
        description: AWS secret access key. Never logged or returned.
        type: str
        version_added: 0.1.0
      session_token:
        description: AWS session token for temporary credentials. Never logged or returned.
        type: str
        version_added: 0.1.0
      validate_certs:
        description: Verify the TLS certificate of the S3 endpoint.
        type: bool
        default: true
        version_added: 0.1.0
      retention:
        description:
          - Which backups of the same database to keep at this destination; unset keeps everything.
            Used by M(locksmith.ops.pg_backup) after a new backup is verified here; M(locksmith.ops.pg_backup_info)
            ignores it.
          - Kept is the union of O(destinations[].retention.keep_last) and the daily/weekly/monthly rules
            (the newest backup of each of the N most recent days, ISO weeks or months that have one).
            Without any of these four, every backup is kept.
          - O(destinations[].retention.max_age_days) then removes anything older, whatever kept it.
          - The newest complete backup is never deleted. Incomplete leftovers (no manifest) are deleted once
            older than one day. A backup whose manifest is damaged is neither counted nor deleted; a warning names
            it and the damaged field.
        type: dict
        version_added: 0.1.0
        suboptions:
          keep_last:
            description: Keep the newest N backups.
            type: int
            version_added: 0.1.0
          daily:
            description: Keep the newest backup of each of the N most recent days that have one.
            type: int
            version_added: 0.1.0
          weekly:
            description: Keep the newest backup of each of the N most recent ISO weeks that have one.
            type: int
            version_added: 0.1.0
          monthly:
            description: Keep the newest backup of each of the N most recent months that have one.
            type: int
            version_added: 0.1.0
          max_age_days:
            description: Delete backups older than this many days (all but the newest).
            type: int
            version_added: 0.1.0
requirements:
  - boto3 and botocore, for V(s3) destinations
notes:
  - S3 copies are streamed with multipart uploads using C(ChecksumAlgorithm=SHA256), so S3 rejects a part
    damaged in transit and stores the object's checksum. A copy counts only after C(HeadObject) returns the
    expected size and stored checksum. No full local copy is needed for S3-only destinations.
  - Transient S3 errors (throttling, timeouts, 5xx) are retried up to 4 times with jittered backoff; each
    retry is reported as a warning.
"""
