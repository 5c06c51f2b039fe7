"""Pebble, Let's Encrypt's ACME test server (Debian package `pebble`), on 127.0.0.1 with real HTTP-01.

Three processes make one ACME CA that validates like Let's Encrypt, without touching the host's DNS or ports
below 1024:

- `pebble-challtestsrv` answers Pebble's DNS queries: every name resolves to 127.0.0.1 (A only, no AAAA);
- a Python HTTP server serves ``webroot`` on the port Pebble validates HTTP-01 against (``httpPort``), so the
  challenge answers a client writes under ``webroot/.well-known/acme-challenge/`` are really fetched;
- `pebble` itself, with its HTTPS listener on a certificate from a private CA made here (``tls_ca_file``),
  and a management listener that hands out the root of the certificates it issues (``root_pem()``).
"""

from __future__ import annotations

import datetime
import functools
import http.server
import ipaddress
import json
import os
import shutil
import ssl
import tempfile
import threading
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .process import ManagedProcess, ServiceError, find_binary, free_port, wait_for_port

UTC = datetime.UTC


def _listener_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a 127.0.0.1/localhost leaf for Pebble's own HTTPS listeners: (ca, cert, key) paths."""
    now = datetime.datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "locksmith pebble listener CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "listener-ca.pem", directory / "listener.pem", directory / "listener.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


class _WebrootHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the webroot and remembers every path asked for, so a test can prove HTTP-01 really ran."""

    def __init__(self, *args, requests_seen: list, **kwargs):
        self._requests_seen = requests_seen
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self._requests_seen.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):
        pass


class PebbleServer:
    """Pebble with its DNS and HTTP-01 peers; ``directory_url`` is the ACME directory."""

    def __init__(self, validity_seconds: int = 90 * 86400, directory: str | Path | None = None):
        self.dir = Path(directory or tempfile.mkdtemp(prefix="locksmith-pebble-"))
        self.webroot = self.dir / "webroot"
        self.validity_seconds = validity_seconds
        self.acme_port, self.management_port = free_port(), free_port()
        self.http_port, self.tls_port = free_port(), free_port()
        self.dns_port, self.dns_management_port = free_port(), free_port()
        self.directory_url = f"https://127.0.0.1:{self.acme_port}/dir"
        self.http_requests: list[str] = []
        self.log = self.dir / "pebble.log"
        self.dns_log = self.dir / "challtestsrv.log"
        self.tls_ca_file: Path | None = None
        self._procs: list[ManagedProcess] = []
        self._http: http.server.ThreadingHTTPServer | None = None

    def start(self) -> PebbleServer:
        pebble, challtestsrv = find_binary("pebble"), find_binary("pebble-challtestsrv")
        if pebble is None or challtestsrv is None:
            raise ServiceError("pebble not found on PATH; it comes from Debian: apt-get install pebble")
        self.webroot.mkdir(parents=True, exist_ok=True)
        self.tls_ca_file, cert, key = _listener_certificate(self.dir)
        dns = ManagedProcess(
            [
                challtestsrv,
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                f"127.0.0.1:{self.dns_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"127.0.0.1:{self.dns_management_port}",
            ],
            log=self.dns_log,
        ).start()
        self._procs.append(dns)
        wait_for_port("127.0.0.1", self.dns_management_port, timeout=15, proc=dns.proc, log=self.dns_log)
        self._start_webroot_server()
        config = self.dir / "pebble-config.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{self.acme_port}",
                        "managementListenAddress": f"127.0.0.1:{self.management_port}",
                        "certificate": str(cert),
                        "privateKey": str(key),
                        "httpPort": self.http_port,
                        "tlsPort": self.tls_port,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                        "certificateValidityPeriod": self.validity_seconds,
                    }
                }
            ),
            encoding="utf-8",
        )
        env = {
            "PEBBLE_VA_NOSLEEP": "1",
            # Every order validates again (no reuse of earlier authorizations), and no nonce is refused at random,
            # so each run costs the same and a renewal really proves HTTP-01 again.
            "PEBBLE_AUTHZREUSE": "0",
            "PEBBLE_WFE_NONCEREJECT": "0",
        }
        server = ManagedProcess(
            [pebble, "-config", str(config), "-dnsserver", f"127.0.0.1:{self.dns_port}"], log=self.log, env=env
        ).start()
        self._procs.append(server)
        wait_for_port("127.0.0.1", self.acme_port, timeout=30, proc=server.proc, log=self.log)
        wait_for_port("127.0.0.1", self.management_port, timeout=30, proc=server.proc, log=self.log)
        return self

    def _start_webroot_server(self) -> None:
        handler = functools.partial(_WebrootHandler, directory=str(self.webroot), requests_seen=self.http_requests)
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", self.http_port), handler)
        threading.Thread(target=self._http.serve_forever, name="pebble-webroot", daemon=True).start()

    def _management_get(self, path: str) -> str:
        context = ssl.create_default_context(cafile=str(self.tls_ca_file))
        url = f"https://127.0.0.1:{self.management_port}{path}"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return response.read().decode()

    def root_pem(self) -> str:
        """The root CA of the certificates Pebble issues (made anew at each start)."""
        return self._management_get("/roots/0")

    def intermediate_pem(self) -> str:
        return self._management_get("/intermediates/0")

    def write_root(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.root_pem(), encoding="utf-8")
        return path

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()
        if not os.environ.get("LOCKSMITH_KEEP_PEBBLE"):
            shutil.rmtree(self.dir, ignore_errors=True)
