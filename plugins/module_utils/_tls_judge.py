# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""tls_check's verdicts: the facts one endpoint showed, turned into problems {code, severity, message}.

Pure functions only, so every code and threshold is unit-tested without a network.
"""

from __future__ import annotations

from ansible_collections.locksmith.ops.plugins.module_utils._tls_cert import MIN_KEY_BITS, WEAK_SIGNATURE_HASHES
from ansible_collections.locksmith.ops.plugins.module_utils._tls_probe import PROTOCOLS

SEVERITY_RANK = {"ok": 0, "warning": 1, "critical": 2}
HEADER_CODES = (
    ("x_content_type_options", "x_content_type_options_missing", "X-Content-Type-Options: nosniff"),
    ("frame_protection", "frame_options_missing", "X-Frame-Options or CSP frame-ancestors"),
    ("content_security_policy", "csp_missing", "Content-Security-Policy"),
    ("referrer_policy", "referrer_policy_missing", "Referrer-Policy"),
)


def _problem(problems: list, code: str, severity: str, message: str) -> None:
    problems.append({"code": code, "severity": severity, "message": message})


def judge(result: dict, warn_days: int, crit_days: int, min_protocol: str, hsts_min: int) -> list:
    """Every problem the facts show, as {code, severity, message}; the worst severity is the status."""
    problems, name = [], result["name"]
    if result["plaintext_accepted"]:
        _problem(
            problems,
            "plaintext_accepted",
            "critical",
            "%s: PostgreSQL accepts connections without SSL; use hostssl lines (and no host lines) in "
            "pg_hba.conf" % name,
        )
    if result["error"]:
        _problem(problems, result["error"]["code"], "critical", result["error"]["message"])
        return problems
    below = sorted(p for p, ok in result["protocols_below_minimum"].items() if ok)
    if result["protocol"] and PROTOCOLS.index(result["protocol"]) < PROTOCOLS.index(min_protocol):
        _problem(
            problems,
            "protocol_below_minimum",
            "critical",
            "%s: best protocol is %s, below min_protocol %s; enable %s or newer on the server"
            % (name, result["protocol"], min_protocol, min_protocol),
        )
    elif below:
        _problem(
            problems,
            "legacy_protocol_accepted",
            "warning",
            "%s: accepts %s, below min_protocol %s; disable them on the server"
            % (name, ", ".join(below), min_protocol),
        )
    _judge_cipher(problems, result)
    _judge_certificate(problems, result, warn_days, crit_days)
    _judge_http(problems, result, hsts_min)
    return problems


def _judge_cipher(problems: list, result: dict) -> None:
    suite = result.get("weak_cipher")
    if not suite:
        return
    if "NULL" in suite:
        severity, why = "critical", "no encryption at all"
    elif suite.startswith(("ADH-", "AECDH-", "EXP-ADH-")):
        severity, why = "critical", "no server authentication, so anyone in the path can impersonate the server"
    else:
        severity, why = "warning", "a broken or export-grade cipher (RC4, DES, 3DES, IDEA or export)"
    _problem(
        problems,
        "weak_cipher_accepted",
        severity,
        "%s: chose the weak cipher suite %s from a client offering only weak ones (%s); remove such suites "
        "from the server's cipher list" % (result["name"], suite, why),
    )


def _judge_certificate(problems: list, result: dict, warn_days: int, crit_days: int) -> None:
    cert, chain, name = result["certificate"], result["chain"], result["name"]
    seconds = cert["seconds_left"]
    if seconds <= 0:
        _problem(problems, "cert_expired", "critical", "%s: certificate expired on %s" % (name, cert["not_after"]))
    elif seconds < crit_days * 86400 or seconds < warn_days * 86400:
        severity = "critical" if seconds < crit_days * 86400 else "warning"
        _problem(
            problems,
            "cert_expiring",
            severity,
            "%s: certificate expires on %s, in %d days (%s below %d days); renew it"
            % (
                name,
                cert["not_after"],
                cert["days_left"],
                "crit_days" if severity == "critical" else "warn_days",
                crit_days if severity == "critical" else warn_days,
            ),
        )
    if cert["not_yet_valid"]:
        _problem(
            problems,
            "cert_not_yet_valid",
            "critical",
            "%s: certificate is valid only from %s" % (name, cert["not_before"]),
        )
    if not chain["trusted"]:
        reason = chain["trust_reason"] or "invalid"
        codes = {
            "self_signed": "self_signed",
            "chain_incomplete": "chain_incomplete",
            "untrusted_root": "untrusted_root",
            "no_san": "chain_invalid",
            "invalid": "chain_invalid",
        }
        hints = {
            "self_signed": "use a certificate issued by a trusted CA, or add it to ca_file",
            "chain_incomplete": "serve the intermediate certificates with the leaf",
            "untrusted_root": "add the root to ca_file if it is your private CA",
            "no_san": "reissue it with subjectAltName entries",
            "invalid": "reissue the chain",
        }
        _problem(
            problems,
            codes[reason],
            "critical",
            "%s: chain does not verify to a trusted root (%s); %s" % (name, chain["trust_error"], hints[reason]),
        )
    if not result["hostname_match"]:
        _problem(
            problems,
            "hostname_mismatch",
            "critical",
            "%s: certificate names %s do not match '%s'"
            % (name, ", ".join(cert["subject_alt_names"]) or cert["subject"], result["server_name"]),
        )
    minimum = MIN_KEY_BITS.get(cert["key_type"])
    if minimum and (cert["key_size"] or 0) < minimum:
        _problem(
            problems,
            "weak_key",
            "warning",
            "%s: %s key of %s bits is below %d; reissue with a stronger key"
            % (name, cert["key_type"], cert["key_size"], minimum),
        )
    # The hash is read from the signature's parameters; an RSASSA-PSS name ('rsassaPss') does not carry it.
    hashed = cert.get("signature_hash")
    if hashed in WEAK_SIGNATURE_HASHES or any(h in cert["signature_algorithm"].lower() for h in WEAK_SIGNATURE_HASHES):
        _problem(
            problems,
            "weak_signature",
            "warning",
            "%s: signed with %s%s; reissue with SHA-256 or better"
            % (name, cert["signature_algorithm"], " over %s" % hashed.upper() if hashed else ""),
        )


def _judge_http(problems: list, result: dict, hsts_min: int) -> None:
    http, name = result["http"], result["name"]
    if not http:
        return
    if http.get("error"):
        _problem(problems, "http_check_failed", "warning", http["error"])
    else:
        hsts = http["hsts"]
        if not hsts["present"]:
            _problem(problems, "hsts_missing", "warning", "%s: no Strict-Transport-Security header" % name)
        elif hsts["max_age_seconds"] is None:
            _problem(
                problems,
                "hsts_max_age_short",
                "warning",
                "%s: Strict-Transport-Security has no valid max-age (or repeats a directive), so browsers ignore "
                "it; send one max-age=<seconds> of at least %d" % (name, hsts_min),
            )
        elif hsts["max_age_seconds"] < hsts_min:
            _problem(
                problems,
                "hsts_max_age_short",
                "warning",
                "%s: HSTS max-age %s is below %d seconds" % (name, hsts["max_age_seconds"], hsts_min),
            )
        for key, code, header in HEADER_CODES:
            if not http[key]:
                _problem(problems, code, "warning", "%s: response lacks %s" % (name, header))
    redirect = http["redirect"]
    if redirect and not redirect["redirects_to_https"]:
        _problem(
            problems,
            "http_not_redirected",
            "warning",
            "%s: http://%s:%d does not redirect to https (%s)"
            % (
                name,
                result["server_name"],
                redirect["port"],
                redirect["error"] or "status %s, Location %s" % (redirect["status"], redirect["location"]),
            ),
        )


def status_of(problems: list) -> str:
    """ok, warning or critical: the worst severity among the problems."""
    worst = max((SEVERITY_RANK[p["severity"]] for p in problems), default=0)
    return next(k for k, v in SEVERITY_RANK.items() if v == worst)
