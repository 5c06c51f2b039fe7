"""Certificates made on the fly (cryptography) and `openssl s_server` peers that present them."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .process import ManagedProcess, free_port, wait_for_port

UTC = datetime.UTC


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "locksmith tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key(kind: str):
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "rsa1024":  # deliberately weak, for tests that must flag it
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Issued:
    """A certificate with its key, and PEM files written for servers and clients."""

    cert: x509.Certificate
    key: object
    cert_path: Path
    key_path: Path
    chain_path: Path | None = None  # intermediates, for -cert_chain
    extra: dict = field(default_factory=dict)


class CertFactory:
    """A private CA (root + intermediate) that issues leaves with any defect a test needs."""

    def __init__(self, directory: str | Path | None = None):
        self.dir = Path(directory or tempfile.mkdtemp(prefix="locksmith-tls-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(UTC)
        self.root = self._issue(
            "locksmith test root",
            None,
            now - datetime.timedelta(days=1),
            now + datetime.timedelta(days=3650),
            ca=True,
            stem="root-ca",
        )
        self.intermediate = self._issue(
            "locksmith test intermediate",
            self.root,
            now - datetime.timedelta(days=1),
            now + datetime.timedelta(days=1825),
            ca=True,
            stem="intermediate-ca",
        )
        self.ca_file = self.root.cert_path

    def _write(self, stem: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
        cert_path, key_path = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path

    def _issue(
        self, cn, issuer, not_before, not_after, ca=False, sans=(), key_kind="ec", stem=None, hash_alg=None
    ) -> Issued:
        key = _key(key_kind)
        signer_key = key if issuer is None else issuer.key
        signer_name = _name(cn) if issuer is None else issuer.cert.subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(signer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        if sans:
            names = []
            for san in sans:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(san)))
                except ValueError:
                    names.append(x509.DNSName(san))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(signer_key, hash_alg or hashes.SHA256())
        cert_path, key_path = self._write(stem or cn.replace(" ", "_"), cert, key)
        return Issued(cert=cert, key=key, cert_path=cert_path, key_path=key_path)

    def leaf(
        self,
        name: str = "localhost",
        days: int = 90,
        *,
        expired: bool = False,
        self_signed: bool = False,
        sans: tuple[str, ...] | None = None,
        key_kind: str = "ec",
        stem: str | None = None,
    ) -> Issued:
        """Issue a server certificate; `days` may be small (short-lived) and `expired` puts it in the past."""
        now = datetime.datetime.now(UTC)
        if expired:
            not_before, not_after = now - datetime.timedelta(days=days + 30), now - datetime.timedelta(days=1)
        else:
            not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
        issuer = None if self_signed else self.intermediate
        sans = sans if sans is not None else (name, "127.0.0.1")
        issued = self._issue(
            name,
            issuer,
            not_before,
            not_after,
            sans=sans,
            key_kind=key_kind,
            stem=stem or f"leaf-{name}-{x509.random_serial_number() % 10**8}",
        )
        if not self_signed:
            issued.chain_path = self.intermediate.cert_path
        return issued

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class TLSPeer:
    """`openssl s_server` presenting one certificate; `legacy_only` accepts only TLS 1.0/1.1."""

    def __init__(self, issued: Issued, *, legacy_only: bool = False, extra_args: tuple[str, ...] = ()):
        self.issued = issued
        self.port = free_port()
        self.host = "127.0.0.1"
        self.legacy_only = legacy_only
        self.extra_args = extra_args
        self.log = issued.cert_path.with_suffix(f".{self.port}.log")
        self._proc: ManagedProcess | None = None

    def start(self) -> TLSPeer:
        argv = [
            "openssl",
            "s_server",
            "-accept",
            f"{self.host}:{self.port}",
            "-www",
            "-quiet",
            "-cert",
            str(self.issued.cert_path),
            "-key",
            str(self.issued.key_path),
        ]
        if self.issued.chain_path:
            argv += ["-cert_chain", str(self.issued.chain_path)]
        if self.legacy_only:
            argv += ["-no_tls1_2", "-no_tls1_3", "-cipher", "DEFAULT:@SECLEVEL=0"]
        argv += list(self.extra_args)
        self._proc = ManagedProcess(argv, log=self.log).start()
        wait_for_port(self.host, self.port, timeout=10, proc=self._proc.proc, log=self.log)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
