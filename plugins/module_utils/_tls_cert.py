# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Certificate facts for tls_check: leaf details, hostname matching and chain verification.

Trust is decided by cryptography's own X.509 path builder (cryptography.x509.verification), so the
presented chain is judged exactly as sent, without the handshake's help. Hostname matching is done
here (RFC 6125: SANs only, one left-most wildcard label) so that trust and name are reported apart.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import warnings

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._paths import PathError, open_regular

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
    from cryptography.x509 import ocsp, verification
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as import_error:  # pragma: no cover - exercised by the missing_required_lib path
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = import_error

UTC = datetime.timezone.utc
# Below these sizes a key is weak by current guidance (NIST SP 800-57, BSI TR-02102).
MIN_KEY_BITS = {"RSA": 2048, "DSA": 2048, "EC": 256}
WEAK_SIGNATURE_HASHES = ("md5", "sha1")


class TrustStoreError(LocksmithError):
    """The CA file or the system trust store cannot be read."""


def load_trust_store(ca_file: str | None):
    """A cryptography Store from ``ca_file`` or, when None, the system's default CA bundle."""
    path = ca_file or ssl.get_default_verify_paths().cafile or ssl.get_default_verify_paths().openssl_cafile
    option = "ca_file '%s'" % ca_file if ca_file else "the system trust store '%s'" % path
    try:
        # A regular file only: a FIFO at ca_file would block the run forever.
        with open_regular(path, "ca_file" if ca_file else "the system trust store") as handle:
            data = handle.read()
    except PathError as err:
        raise TrustStoreError(
            "%s cannot be read (%s); point ca_file at a PEM bundle of trusted roots" % (option, err.reason),
            ca_file=ca_file,
        ) from err
    with warnings.catch_warnings():
        # Some system roots carry non-positive serials; cryptography warns but loads them.
        warnings.simplefilter("ignore")
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as err:
            raise TrustStoreError(
                "%s holds no PEM certificate (%s); point ca_file at a PEM bundle of trusted roots" % (option, err),
                ca_file=ca_file,
            ) from err
    return verification.Store(certs), certs


def _name_attr(name, oid) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def subject_alt_names(cert) -> list[str]:
    """DNS and IP subjectAltNames of ``cert``, as strings."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = list(ext.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return names


def key_facts(public_key) -> tuple[str, int | None]:
    """(type, size in bits) of a public key."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC", public_key.curve.key_size
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA", public_key.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(public_key).__name__, None


def signature_algorithm(cert) -> str:
    """The signature algorithm's name, e.g. 'ecdsa-with-SHA256'."""
    oid = cert.signature_algorithm_oid
    return getattr(oid, "_name", None) or oid.dotted_string


def signature_hash(cert) -> str | None:
    """The hash under the signature ('sha256'), also for RSASSA-PSS, whose name carries none; None for EdDSA
    or an algorithm cryptography does not know."""
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - UnsupportedAlgorithm, or ValueError for malformed PSS parameters
        return None
    return algorithm.name if algorithm is not None else None


def describe(cert, now: datetime.datetime) -> dict:
    """The leaf facts tls_check returns."""
    key_type, key_size = key_facts(cert.public_key())
    not_after = cert.not_valid_after_utc
    seconds_left = (not_after - now).total_seconds()
    return {
        "subject": cert.subject.rfc4514_string(),
        "common_name": _name_attr(cert.subject, NameOID.COMMON_NAME),
        "subject_alt_names": subject_alt_names(cert),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": "%x" % cert.serial_number,
        "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after_timestamp": int(not_after.timestamp()),
        "seconds_left": int(seconds_left),
        "days_left": int(seconds_left // 86400),
        "key_type": key_type,
        "key_size": key_size,
        "signature_algorithm": signature_algorithm(cert),
        "signature_hash": signature_hash(cert),
        "self_signed": cert.issuer == cert.subject,
        "not_yet_valid": cert.not_valid_before_utc > now,
    }


def chain_entry(cert) -> dict:
    """Short description of one presented certificate."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _ip(value: str):
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _dns_match(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if "*" not in pattern:
        return pattern == host
    first, rest = [*pattern.split(".", 1), ""][:2]
    # Only a whole left-most label may be a wildcard, and never over a public suffix-like two labels.
    if first != "*" or "*" in rest or rest.count(".") < 1:
        return False
    host_first, host_rest = [*host.split(".", 1), ""][:2]
    return bool(host_first) and host_rest == rest


def hostname_matches(cert, host: str) -> bool:
    """RFC 6125 name check against SANs only (the CN fallback is obsolete, as in browsers)."""
    address = _ip(host)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if address is not None:
        return address in ext.get_values_for_type(x509.IPAddress)
    return any(_dns_match(name, host) for name in ext.get_values_for_type(x509.DNSName))


def _verify_subjects(cert, host: str):
    """Names to verify the leaf for: the host when it matches, then each one the leaf carries (name is judged
    apart, so any name the verifier accepts will do)."""
    candidates = ([host] if hostname_matches(cert, host) else []) + subject_alt_names(cert)
    for name in candidates:
        address = _ip(name)
        if address is not None:
            yield verification.IPAddress(address)
            continue
        if "*" in name:
            name = name.replace("*", "x", 1)
        try:
            yield verification.DNSName(name)
        except ValueError:
            continue


def _server_verifier(builder, leaf, host: str):
    """A verifier for the first of those names it accepts, or None. It refuses some that DNSName() took (an
    underscore, common in internal names; a trailing dot) with ValueError, which used to end the module."""
    for subject in _verify_subjects(leaf, host):
        try:
            return builder.build_server_verifier(subject)
        except ValueError:
            continue
    return None


def _policy_builder(store, at: datetime.datetime):
    builder = verification.PolicyBuilder().store(store).time(at)
    # Private CAs often omit authorityKeyIdentifier; it helps path building but does not make trust.
    crit = verification.Criticality.NON_CRITICAL
    ee_policy = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.AuthorityKeyIdentifier, crit, None
    )
    ca_policy = verification.ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.AuthorityKeyIdentifier, crit, None
    )
    return builder.extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)


def verify_chain(leaf, intermediates: list, store, store_certs: list, host: str, now: datetime.datetime) -> dict:
    """Whether the presented chain builds to a trusted root; expiry is judged apart, so an expired
    leaf is verified at a moment inside its validity."""
    result = {"trusted": False, "error": None, "reason": None, "verified_chain": []}
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    at = min(max(now, start), end)
    verifier = _server_verifier(_policy_builder(store, at), leaf, host)
    if verifier is None:
        result.update(reason="no_san", error="the leaf carries no subjectAltName a client can verify")
        return result
    try:
        chain = verifier.verify(leaf, intermediates)
    except verification.VerificationError as err:
        if _pinned_self_signed(leaf, store_certs):
            result.update(trusted=True, verified_chain=[leaf.subject.rfc4514_string()])
            return result
        result["error"] = str(err).split(" (encountered processing", maxsplit=1)[0]
        result["reason"] = _classify(leaf, intermediates, store_certs)
        return result
    result.update(trusted=True, verified_chain=[c.subject.rfc4514_string() for c in chain])
    return result


def _pinned_self_signed(leaf, store_certs: list) -> bool:
    """The leaf is self-signed and itself in the trust store. OpenSSL (libpq, curl, Python) trusts it so even with
    cA set, as `openssl req -x509` sets it; the WebPKI verifier refuses cA in a leaf."""
    if leaf.issuer != leaf.subject or leaf not in store_certs or not _server_purpose(leaf):
        return False
    try:
        leaf.verify_directly_issued_by(leaf)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _server_purpose(leaf) -> bool:
    """The leaf may serve TLS as OpenSSL judges it: refused when its extendedKeyUsage leaves out serverAuth (the
    legacy Netscape/Microsoft SGC ones aside; anyExtendedKeyUsage alone does not do), or its keyUsage has none of
    digitalSignature, keyEncipherment, keyAgreement ("unsupported certificate purpose"). Either extension, when
    absent, allows it. An extension that does not parse refuses."""
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    except ValueError:
        return False
    allowed = (
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.ObjectIdentifier("2.16.840.1.113730.4.1"),  # Netscape server gated crypto
        x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),  # Microsoft server gated crypto
    )
    if eku is not None and not any(usage in allowed for usage in eku):
        return False
    try:
        key_usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False
    return bool(key_usage.digital_signature or key_usage.key_encipherment or key_usage.key_agreement)


def _classify(leaf, intermediates: list, store_certs: list) -> str:
    """Why a chain did not verify, as one of self_signed, chain_incomplete, untrusted_root, invalid."""
    if leaf.issuer == leaf.subject:
        return "self_signed"
    known = {c.subject for c in intermediates} | {c.subject for c in store_certs}
    if leaf.issuer not in known:
        return "chain_incomplete"
    trusted = {c.subject for c in store_certs}
    if not any(c.issuer in trusted or c.subject in trusted for c in [leaf, *intermediates]):
        return "untrusted_root"
    return "invalid"


def describe_ocsp(der: bytes) -> dict:
    """The facts of a stapled OCSP response."""
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as err:
        return {"response_status": "unparseable", "error": str(err)}
    facts = {"response_status": response.response_status.name.lower()}
    if response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
        next_update = response.next_update_utc
        facts.update(
            cert_status=response.certificate_status.name.lower(),
            this_update=response.this_update_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            next_update=next_update.strftime("%Y-%m-%dT%H:%M:%SZ") if next_update else None,
        )
    return facts


def load_der(der_list: list) -> list:
    """Parse DER certificates, skipping none: a malformed one raises ValueError."""
    return [x509.load_der_x509_certificate(der) for der in der_list]
