"""A moto server on 127.0.0.1 (or another local address): the S3 and Secrets Manager APIs without AWS.

With `ssl_cert` and `ssl_key` it serves HTTPS (clients that only speak TLS to S3, such as pgBackRest); `ca_file`
is then what boto3 and requests verify it with.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from .process import ManagedProcess, ServiceError, find_binary, free_port, wait_for_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any key pair
    "AWS_DEFAULT_REGION": "eu-west-1",
}

# Werkzeug's dev server answers every request with `Connection: close` and then drops the TLS layer without a
# close_notify (socketserver's shutdown_request on an SSLSocket). A client that reads such a reply to the end of the
# connection sees an unexpected EOF: pgBackRest (OpenSSL 3) fails on moto's empty text/html PUT replies with
# "TLS error [1:167772454] unexpected eof while reading", as it tolerates that only for XML or JSON bodies
# (pgbackrest/pgbackrest#1677). Real S3 endpoints send close_notify, so with TLS moto runs with a shutdown_request
# that sends it first.
_TLS_MOTO_SERVER = """
import sys

from moto.server import main
from werkzeug.serving import BaseWSGIServer

plain_shutdown_request = BaseWSGIServer.shutdown_request


def shutdown_request(self, request):
    try:
        request.settimeout(1)  # unwrap() then waits for the client's close_notify; a silent client must not hang it
        request.unwrap()
    except (OSError, ValueError):
        pass
    plain_shutdown_request(self, request)


BaseWSGIServer.shutdown_request = shutdown_request
main(sys.argv[1:])
"""


class MotoServer:
    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        ssl_cert: str | Path | None = None,
        ssl_key: str | Path | None = None,
        ca_file: str | Path | None = None,
    ):
        if (ssl_cert is None) != (ssl_key is None):
            raise ValueError("MotoServer needs both ssl_cert and ssl_key for HTTPS, or neither")
        self.host = host
        self.port = port or free_port(host)
        self.ssl_cert, self.ssl_key = ssl_cert, ssl_key
        self.ca_file = str(ca_file) if ca_file else None
        scheme = "https" if ssl_cert else "http"
        self.endpoint_url = f"{scheme}://{host}:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="locksmith-moto-"))
        self.log = self._dir / "moto.log"
        self._proc: ManagedProcess | None = None

    def start(self) -> MotoServer:
        binary = find_binary("moto_server")
        if binary is None:
            raise ServiceError("`moto_server` not found on PATH; it comes from PyPI moto[server] (run `make venv`)")
        self._proc = ManagedProcess(self._argv(binary), log=self.log).start()
        wait_for_port(self.host, self.port, timeout=30, proc=self._proc.proc, log=self.log)
        return self

    def _argv(self, binary: str) -> list[str]:
        if not self.ssl_cert:
            return [binary, "-H", self.host, "-p", str(self.port)]
        tls = ["--ssl-cert", str(self.ssl_cert), "--ssl-key", str(self.ssl_key)]
        return [sys.executable, "-c", _TLS_MOTO_SERVER, "-H", self.host, "-p", str(self.port), *tls]

    def _verify(self) -> str | bool:
        """What requests verifies the server certificate with (the system store without ca_file)."""
        return self.ca_file or True

    def env(self) -> dict:
        """Environment that points boto3 and amazon.aws at this server."""
        env = {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}
        if self.ca_file:
            env["AWS_CA_BUNDLE"] = self.ca_file
        return env

    def client(self, service: str, region: str = "eu-west-1"):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=region,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            verify=self.ca_file,  # None: botocore's own default
        )

    def reset(self) -> None:
        """Forget every bucket and secret (moto's reset API), so tests do not see each other's state."""
        import requests

        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=5, verify=self._verify()).raise_for_status()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)
