"""A moto server on 127.0.0.1 (or another local address): the S3 and Secrets Manager APIs without AWS."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .process import ManagedProcess, ServiceError, find_binary, free_port, wait_for_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any key pair
    "AWS_DEFAULT_REGION": "eu-west-1",
}


class MotoServer:
    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port = port or free_port(host)
        self.endpoint_url = f"http://{host}:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="locksmith-moto-"))
        self.log = self._dir / "moto.log"
        self._proc: ManagedProcess | None = None

    def start(self) -> MotoServer:
        binary = find_binary("moto_server")
        if binary is None:
            raise ServiceError("`moto_server` not found on PATH; it comes from PyPI moto[server] (run `make venv`)")
        self._proc = ManagedProcess([binary, "-H", self.host, "-p", str(self.port)], log=self.log).start()
        wait_for_port(self.host, self.port, timeout=30, proc=self._proc.proc, log=self.log)
        return self

    def env(self) -> dict:
        """Environment that points boto3 and amazon.aws at this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def client(self, service: str, region: str = "eu-west-1"):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=region,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def reset(self) -> None:
        """Forget every bucket and secret (moto's reset API), so tests do not see each other's state."""
        import requests

        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=5).raise_for_status()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)
