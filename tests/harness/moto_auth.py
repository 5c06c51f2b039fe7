"""A moto server that enforces IAM authentication and authorisation, for tests of refused S3 calls.

moto_server starts with INITIAL_NO_AUTH_ACTION_COUNT=0, so every request must be signed with the keys of an IAM
user whose policy allows the action. The setup (users, policies, buckets) runs in an `unauthenticated()` block,
which lifts the check through moto's /moto-api/reset-auth endpoint and enforces it again at the end.
"""

from __future__ import annotations

import contextlib
import json
import uuid

from .moto import MotoServer
from .process import ManagedProcess, ServiceError, find_binary, wait_for_port

# moto checks HEAD bucket as s3:HeadBucket, where AWS checks s3:ListBucket: a reader needs both here.
READ_ACTIONS = [
    "s3:ListBucket",
    "s3:HeadBucket",
    "s3:GetObject",
    "s3:GetBucketLocation",
    "s3:ListBucketMultipartUploads",
]


class AuthMotoServer(MotoServer):
    """MotoServer with authentication enforced from the first request."""

    def start(self) -> AuthMotoServer:
        binary = find_binary("moto_server")
        if binary is None:
            raise ServiceError("`moto_server` not found on PATH; it comes from PyPI moto[server] (run `make venv`)")
        env = {"INITIAL_NO_AUTH_ACTION_COUNT": "0"}
        self._proc = ManagedProcess(self._argv(binary), log=self.log, env=env).start()
        wait_for_port(self.host, self.port, timeout=30, proc=self._proc.proc, log=self.log)
        return self

    def _set_auth_count(self, count: str) -> None:
        import requests

        requests.post(
            f"{self.endpoint_url}/moto-api/reset-auth", data=count, timeout=5, verify=self._verify()
        ).raise_for_status()

    @contextlib.contextmanager
    def unauthenticated(self):
        """Within the block any request passes (setup); authentication is enforced again after it."""
        self._set_auth_count("inf")
        try:
            yield
        finally:
            self._set_auth_count("0")

    def user(self, actions: list[str], resource: str = "*") -> dict:
        """Create an IAM user allowed only `actions` on `resource`; return its access_key and secret_key."""
        name = f"locksmith-{uuid.uuid4().hex[:8]}"
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}
        with self.unauthenticated():
            iam = self.client("iam")
            iam.create_user(UserName=name)
            iam.put_user_policy(UserName=name, PolicyName="locksmith-test", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}

    def client_as(self, keys: dict, service: str = "s3", region: str = "eu-west-1"):
        """A boto3 client signed with an IAM user's keys."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=region,
            aws_access_key_id=keys["access_key"],
            aws_secret_access_key=keys["secret_key"],
            verify=self.ca_file,  # None: botocore's own default
        )
