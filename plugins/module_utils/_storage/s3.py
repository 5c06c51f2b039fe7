# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""An S3 bucket (AWS or any S3 API) as a backup destination.

Artefacts are streamed with multipart uploads, never staged on local disk. Every part carries its
SHA-256 (``ChecksumAlgorithm=SHA256``), so S3 refuses a part damaged in transit, and S3 stores the
object's checksum (the SHA-256 of the part checksums for multipart objects, the plain SHA-256 for a
single put). A copy counts only once ``HeadObject`` reports the size and that stored checksum equal
to what was sent; the manifest is put last, under the same checks.
"""

from __future__ import annotations

import base64
import hashlib
import queue
import re
import threading

from ansible_collections.locksmith.ops.plugins.module_utils import _urls
from ansible_collections.locksmith.ops.plugins.module_utils._storage import (
    MANIFEST_NAME,
    StorageDenied,
    StorageError,
    StorageMissing,
    TransientError,
    is_backup_id,
    with_retries,
)
from ansible_collections.locksmith.ops.plugins.module_utils._storage.base import (
    BackupEntry,
    Destination,
    is_label,
    skipped_label_warning,
)

try:
    import boto3
    import botocore.config
    import botocore.exceptions

    HAS_BOTO3 = True
except ImportError:  # pragma: no cover - reported through missing_required_lib
    HAS_BOTO3 = False

PART_SIZE = 16 * 1024 * 1024
READ_CHUNK = 1024 * 1024
# Parts in flight per destination: the dump keeps streaming while earlier parts upload.
QUEUE_DEPTH = 2
_TRANSIENT_CODES = {
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "InternalError",
    "ServiceUnavailable",
    "500",
    "502",
    "503",
    "504",
}
_DENIED_CODES = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
}
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
# Only what no S3 API accepts: S3-compatible stores and legacy AWS buckets allow more than today's AWS rules.
_BAD_BUCKET_CHARS = re.compile(r"[/\s\x00-\x1f\x7f-\x9f]")
_REGION = re.compile(r"^[a-z0-9-]+\Z")


def part_size_for(part_number):
    """Part size policy: parts grow after every 1,000 so a stream of any size stays under 10,000 parts."""
    return PART_SIZE * (1 + (part_number - 1) // 1000)


def composite_checksum(part_digests):
    """The checksum S3 stores for a multipart upload with SHA256: sha256 over the part digests."""
    return base64.b64encode(hashlib.sha256(b"".join(part_digests)).digest()).decode("ascii")


def strip_part_count(checksum):
    """AWS appends '-<parts>' to a composite checksum; compare without it."""
    return checksum.split("-")[0] if checksum else checksum


class S3Sink:
    """One artefact streamed as a multipart upload (or a single put if it is small)."""

    def __init__(self, writer, name):
        self.writer = writer
        self.destination = writer.destination
        self.key = writer.key(name)
        self.name = name
        self.size = 0
        self._buffer = bytearray()
        self._part_number = 1
        self._parts = []
        self._digests = []
        self._upload_id = None
        self._queue = None
        self._thread = None
        self._error = None

    # The uploader thread: parts go out while the dump keeps producing.
    def _start_upload(self):
        extra = self.destination.put_args()
        response = self.destination.call(
            "starting the upload of '%s'" % self.key,
            "create_multipart_upload",
            Bucket=self.destination.bucket,
            Key=self.key,
            ChecksumAlgorithm="SHA256",
            **extra,
        )
        self._upload_id = response["UploadId"]
        self.writer.uploads.append((self.key, self._upload_id))
        self._queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._uploader, daemon=True)
        self._thread.start()

    def _uploader(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            number, body, digest = item
            try:
                response = self.destination.call(
                    "uploading part %d of '%s'" % (number, self.key),
                    "upload_part",
                    Bucket=self.destination.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    PartNumber=number,
                    Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
                )
                self._parts.append(
                    {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": response.get("ChecksumSHA256")}
                )
            except Exception as err:  # noqa: BLE001 - handed to the writing thread, which raises it
                self._error = err

    def _raise_if_failed(self):
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, StorageError):
                raise error
            raise StorageError("%s: upload of '%s' failed: %s" % (self.destination.name, self.key, error))

    def _send_part(self, body):
        if self._upload_id is None:
            self._start_upload()
        digest = hashlib.sha256(body).digest()
        self._digests.append(digest)
        self._queue.put((self._part_number, body, digest))
        self._part_number += 1

    def write(self, data):
        self._raise_if_failed()
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= part_size_for(self._part_number):
            cut = part_size_for(self._part_number)
            body = bytes(self._buffer[:cut])
            del self._buffer[:cut]
            self._send_part(body)

    def close(self):
        """Finish the upload and return the size and the checksum S3 must report for it."""
        if self._upload_id is None:
            body = bytes(self._buffer)
            checksum = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
            self.destination.call(
                "uploading '%s'" % self.key,
                "put_object",
                Bucket=self.destination.bucket,
                Key=self.key,
                Body=body,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
                **self.destination.put_args(),
            )
            self.writer.keys.append(self.key)
            return {"size": self.size, "s3_checksum_sha256": checksum}
        if self._buffer:
            self._send_part(bytes(self._buffer))
            self._buffer = bytearray()
        self._queue.put(None)
        self._thread.join()
        self._raise_if_failed()
        parts = sorted(self._parts, key=lambda p: p["PartNumber"])
        self.destination.call(
            "completing the upload of '%s'" % self.key,
            "complete_multipart_upload",
            Bucket=self.destination.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )
        self.writer.uploads.remove((self.key, self._upload_id))
        self.writer.keys.append(self.key)
        return {"size": self.size, "s3_checksum_sha256": composite_checksum(self._digests)}

    def abort(self):
        if self._queue is not None and self._thread.is_alive():
            self._error = self._error or StorageError("aborted")
            self._queue.put(None)
            self._thread.join(timeout=30)


class S3Writer:
    def __init__(self, destination, label, backup_id):
        self.destination = destination
        self.label = label
        self.backup_id = backup_id
        self.uploads = []
        self.keys = []
        self.checksums = {}

    def key(self, name):
        return self.destination.key(self.label, self.backup_id, name)

    def open_artefact(self, name):
        sink = S3Sink(self, name)
        original_close = sink.close

        def close():
            result = original_close()
            self.checksums[name] = result["s3_checksum_sha256"]
            return result

        sink.close = close
        return sink

    def commit(self, manifest_bytes, artefacts):
        """Read back each object's size and stored checksum, then put the manifest and check it too."""
        for artefact in artefacts:
            expected = {"size": artefact["size_bytes"], "checksum": self.checksums.get(artefact["name"])}
            found = self.destination.stat(self.label, self.backup_id, artefact["name"])
            self.destination.confirm(artefact["name"], self.key(artefact["name"]), expected, found)
        checksum = base64.b64encode(hashlib.sha256(manifest_bytes).digest()).decode("ascii")
        key = self.key(MANIFEST_NAME)
        # If the put or its read-back fails (the put may still have landed), abort() deletes the manifest first, so
        # the artefacts it then deletes never leave a backup that looks complete.
        self.keys.insert(0, key)
        self.destination.call(
            "uploading '%s'" % key,
            "put_object",
            Bucket=self.destination.bucket,
            Key=key,
            Body=manifest_bytes,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
            **self.destination.put_args(),
        )
        found = self.destination.stat(self.label, self.backup_id, MANIFEST_NAME)
        self.destination.confirm(MANIFEST_NAME, key, {"size": len(manifest_bytes), "checksum": checksum}, found)

    def abort(self):
        """Best effort: abort open multipart uploads and delete what this run put."""
        client = self.destination.client
        for key, upload_id in list(self.uploads):
            try:
                client.abort_multipart_upload(Bucket=self.destination.bucket, Key=key, UploadId=upload_id)
            except Exception:  # noqa: BLE001, S110 # nosec B110
                pass
        for key in self.keys:
            try:
                client.delete_object(Bucket=self.destination.bucket, Key=key)
            except Exception:  # noqa: BLE001, S110 # nosec B110
                pass


class S3Destination(Destination):
    kind = "s3"
    foreign_options = ("path",)

    def __init__(self, index, options, warnings):
        super().__init__(index, options, warnings)
        self._client = None

    @property
    def bucket(self):
        return self.options["bucket"]

    @property
    def prefix(self):
        return (self.options.get("prefix") or "").strip("/")

    @property
    def url(self):
        return "s3://%s/%s" % (self.bucket, self.prefix + "/" if self.prefix else "")

    def validate(self):
        super().validate()
        if self.options.get("sse_kms_key_id") and self.options.get("sse") != "aws:kms":
            raise StorageError(
                "%s: sse_kms_key_id needs sse=aws:kms; set sse or remove the key id" % self.name, destination=self.index
            )
        if bool(self.options.get("access_key")) != bool(self.options.get("secret_key")):
            raise StorageError(
                "%s: access_key and secret_key go together; give both or neither (then the AWS "
                "credential chain is used)" % self.name,
                destination=self.index,
            )
        if ".." in self.prefix.split("/"):
            raise StorageError("%s: prefix may not contain '..'" % self.name, destination=self.index)
        self._validate_bucket()
        self._validate_endpoint_url()
        region = self.options.get("region")
        if region is not None and not _REGION.match(region):
            raise StorageError(
                "%s: region %r is not a region name; give one like eu-west-1 (lower-case letters, digits and -)"
                % (self.name, region),
                destination=self.index,
                option="region",
            )

    def _validate_bucket(self):
        """Refuse bucket names no S3 API accepts; botocore and the store judge the rest."""
        bucket = self.options.get("bucket") or ""
        if not bucket:
            raise StorageError(
                "%s: bucket '' is empty; give the bucket name" % self.name, destination=self.index, option="bucket"
            )
        if _BAD_BUCKET_CHARS.search(bucket):
            raise StorageError(
                "%s: bucket %r holds '/', a space or a control character; give the bucket name alone "
                "and put any key path in prefix" % (self.name, bucket),
                destination=self.index,
                option="bucket",
            )

    def _validate_endpoint_url(self):
        """An endpoint_url, when given, is an http:// or https:// URL with a host (and no credentials)."""
        endpoint = self.options.get("endpoint_url")
        if endpoint is None:
            return
        problem = _urls.http_url_problem(endpoint)
        if problem:
            raise StorageError(
                "%s: endpoint_url %r %s; give one like https://s3.eu-west-1.amazonaws.com or leave endpoint_url "
                "unset for AWS" % (self.name, _urls.redact_url(endpoint), problem),
                destination=self.index,
                option="endpoint_url",
            )

    def _option_error(self, describe, err):
        """A StorageError naming the option behind a botocore validation error, raised before any request."""
        if isinstance(err, (botocore.exceptions.InvalidRegionError, botocore.exceptions.NoRegionError)):
            option, fix = "region", "give a region name such as eu-west-1"
        elif isinstance(err, botocore.exceptions.ProfileNotFound):
            option, fix = "profile", "give a profile from ~/.aws/config or leave profile unset"
        elif isinstance(err, botocore.exceptions.ParamValidationError):
            option = "bucket" if "bucket" in str(err).lower() else "prefix"
            fix = "give the name as the store shows it"
        elif isinstance(err, (ValueError, botocore.exceptions.EndpointProviderError)):
            option, fix = "endpoint_url", "give an http:// or https:// URL with a host, or leave it unset for AWS"
        else:
            return StorageError(
                "%s: %s failed (%s); check this destination's options" % (self.name, describe, err),
                destination=self.index,
            )
        return StorageError(
            "%s: %s stopped before any request was sent (%s); fix destinations[%d].%s: %s"
            % (self.name, describe, err, self.index, option, fix),
            destination=self.index,
            option=option,
        )

    @property
    def client(self):
        if self._client is None:
            try:
                session = boto3.session.Session(
                    profile_name=self.options.get("profile"),
                    aws_access_key_id=self.options.get("access_key"),
                    aws_secret_access_key=self.options.get("secret_key"),
                    aws_session_token=self.options.get("session_token"),
                )
                # Our own retry loop logs each retry as a warning, so botocore's stays off.
                config = botocore.config.Config(
                    retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=120
                )
                self._client = session.client(
                    "s3",
                    region_name=self.options.get("region"),
                    endpoint_url=self.options.get("endpoint_url"),
                    verify=self.options.get("validate_certs", True),
                    config=config,
                )
            except (botocore.exceptions.BotoCoreError, ValueError) as err:
                # ValueError is botocore's "Invalid endpoint"; the BotoCoreErrors here are bad region or profile.
                raise self._option_error("creating the S3 client", err) from err
        return self._client

    def put_args(self):
        args = {"StorageClass": self.options.get("storage_class") or "STANDARD"}
        if self.options.get("sse"):
            args["ServerSideEncryption"] = self.options["sse"]
        if self.options.get("sse_kms_key_id"):
            args["SSEKMSKeyId"] = self.options["sse_kms_key_id"]
        return args

    def call(self, describe, operation, **kwargs):
        """Run one S3 operation with retries; library errors become StorageError subclasses."""
        method = getattr(self.client, operation)

        def attempt():
            try:
                return method(**kwargs)
            except botocore.exceptions.ClientError as err:
                raise self._translate(describe, err) from err
            except (
                botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError,
                botocore.exceptions.ConnectionClosedError,
            ) as err:
                raise TransientError(str(err)) from err
            except botocore.exceptions.NoCredentialsError as err:
                raise StorageDenied(
                    "%s: no AWS credentials found while %s; set access_key/secret_key or profile, or the "
                    "AWS_* environment of the user running the module" % (self.name, describe),
                    destination=self.index,
                ) from err
            except (
                botocore.exceptions.ParamValidationError,
                botocore.exceptions.EndpointResolutionError,
                botocore.exceptions.NoRegionError,
                botocore.exceptions.InvalidRegionError,
            ) as err:
                raise self._option_error(describe, err) from err
            except botocore.exceptions.BotoCoreError as err:
                # Anything else botocore raises (TLS failures among them) is still this destination's failure.
                raise StorageError(
                    "%s: %s failed (%s); check this destination's options and the endpoint"
                    % (self.name, describe, err),
                    destination=self.index,
                ) from err

        return with_retries(attempt, "%s: %s" % (self.name, describe), self.warnings)

    def _translate(self, describe, err):
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _TRANSIENT_CODES or status in ("500", "502", "503", "504"):
            return TransientError("%s (%s)" % (code or status, err.response.get("Error", {}).get("Message", "")))
        if code in _DENIED_CODES or status == "403":
            return StorageDenied(
                "%s: %s refused (%s); check the credentials and allow s3:ListBucket, s3:GetObject, "
                "s3:PutObject and s3:DeleteObject on bucket '%s', or remove this destination"
                % (self.name, describe, code or status, self.bucket),
                destination=self.index,
            )
        if code == "NoSuchBucket" or (status == "404" and "bucket" in describe):
            return StorageMissing(
                "%s: bucket '%s' does not exist; create it first or fix destinations[%d].bucket"
                % (self.name, self.bucket, self.index),
                destination=self.index,
            )
        if code in _MISSING_CODES:
            return StorageMissing("%s: %s: object not found" % (self.name, describe), destination=self.index)
        return StorageError(
            "%s: %s failed (%s: %s)" % (self.name, describe, code or status, err), destination=self.index
        )

    def key(self, label, backup_id="", name=""):
        parts = [p for p in (self.prefix, label, backup_id, name) if p]
        return "/".join(parts)

    def location(self, label, backup_id):
        return "s3://%s/%s/" % (self.bucket, self.key(label, backup_id))

    def check_access(self, write):
        self.call("checking bucket '%s'" % self.bucket, "head_bucket", Bucket=self.bucket)

    def _list(self, prefix, delimiter=None):
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        keys, prefixes = [], []
        while True:
            response = self.call("listing '%s' in bucket '%s'" % (prefix, self.bucket), "list_objects_v2", **kwargs)
            keys.extend(obj["Key"] for obj in response.get("Contents", []))
            prefixes.extend(p["Prefix"] for p in response.get("CommonPrefixes", []))
            if not response.get("IsTruncated"):
                return keys, prefixes
            kwargs["ContinuationToken"] = response["NextContinuationToken"]

    def labels(self):
        root = self.prefix + "/" if self.prefix else ""
        prefixes = self._list(root, delimiter="/")[1]
        labels = []
        for name in sorted(p[len(root) :].rstrip("/") for p in prefixes):
            if not is_label(name):
                # Other tools may share the bucket or prefix; pg_backup never writes such a name.
                self.warnings.append(skipped_label_warning(self, name))
                continue
            labels.append(name)
        return labels

    def list_backups(self, label):
        self._check_label(label)
        root = self.key(label) + "/"
        keys = self._list(root)[0]
        ids = {}
        for key in keys:
            backup_id, sep, name = key[len(root) :].partition("/")
            # A backup is a prefix: an object named like an id, with nothing under it, is someone else's.
            if sep and is_backup_id(backup_id):
                ids.setdefault(backup_id, set()).add(name)
        entries = []
        for backup_id in sorted(ids):
            manifest, problem = None, None
            if MANIFEST_NAME in ids[backup_id]:
                manifest, problem = self.load_manifest(label, backup_id)
            entries.append(BackupEntry(self, label, backup_id, manifest, manifest_error=problem))
        return sorted(entries, key=lambda e: e.sort_key)

    def open_writer(self, label, backup_id):
        self._check_label(label)
        return S3Writer(self, label, backup_id)

    def read_chunks(self, label, backup_id, name):
        key = self.key(label, backup_id, name)
        response = self.call("reading '%s'" % key, "get_object", Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def stat(self, label, backup_id, name):
        key = self.key(label, backup_id, name)
        try:
            head = self.call(
                "reading the metadata of '%s'" % key, "head_object", Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"
            )
        except StorageMissing:
            return None
        return {"size": head["ContentLength"], "checksum": strip_part_count(head.get("ChecksumSHA256"))}

    def confirm(self, name, key, expected, found):
        """Raise unless the stored object has the expected size and checksum."""
        if found is None:
            raise StorageError("%s: '%s' is missing after upload" % (self.name, key), destination=self.index)
        if found["size"] != expected["size"] or (
            expected.get("checksum") and found.get("checksum") != expected["checksum"]
        ):
            raise StorageError(
                "%s: '%s' reads back as %s bytes / checksum %s, expected %s bytes / %s; the copy is not counted"
                % (self.name, key, found["size"], found.get("checksum"), expected["size"], expected.get("checksum")),
                destination=self.index,
            )

    def delete(self, label, backup_id, temporary_name=None):
        root = self.key(label, backup_id) + "/"
        keys = self._list(root)[0]
        # The manifest goes first, so an interrupted delete never leaves a backup that looks complete.
        keys.sort(key=lambda k: 0 if k.endswith("/" + MANIFEST_NAME) else 1)
        for key in keys:
            self.call("deleting '%s'" % key, "delete_object", Bucket=self.bucket, Key=key)
