#!/usr/bin/python
# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tls_check
short_description: Audit TLS endpoints for expiry, trust, hostname, protocols and HTTPS policy
version_added: 0.1.0
description:
  - Connects to each endpoint (directly, or after a PostgreSQL or SMTP STARTTLS preamble) and reports the
    leaf certificate, the presented chain and whether it verifies to a trusted root, the hostname match,
    the negotiated protocol and cipher, which protocols below O(min_protocol) the server still accepts
    (TLS 1.0 and 1.1 are probed actively with a legacy-permitting client), whether the server picks a weak
    cipher suite (NULL, anonymous, export, RC4, DES, 3DES, IDEA) when a client offers nothing else, and
    whether an OCSP response is stapled.
  - Optionally checks HTTPS policy (port-80 redirect to https on the same host, HSTS and its max-age,
    X-Content-Type-Options, X-Frame-Options or CSP frame-ancestors, Content-Security-Policy, Referrer-Policy), and for
    PostgreSQL whether the server still accepts a connection without SSL.
  - Each endpoint gets a RV(endpoints[].status) of V(ok), V(warning) or V(critical) and a list of
    RV(endpoints[].problems). Unreachable endpoints are reported, not raised; only O(fail_on) fails the task.
  - Read-only towards the endpoints; nothing on them is ever changed. With O(metrics_dir) the module writes
    one node_exporter textfile, its only side effect, which is never reported as a change.
author: locksmith.ops contributors (@locksmith-ops)
requirements:
  - cryptography >= 45 (X.509 path validation)
notes:
  - Trust is decided by cryptography's X.509 path builder on the chain exactly as presented; a server that
    omits an intermediate gets V(chain_incomplete) even if a browser would fetch it.
  - Problem codes are V(connection_refused), V(timeout), V(connection_failed), V(name_unresolved),
    V(tls_not_offered), V(handshake_failed), V(certificate_unreadable), V(protocol_below_minimum),
    V(plaintext_accepted), V(cert_expired), V(cert_not_yet_valid), V(self_signed), V(chain_incomplete),
    V(untrusted_root), V(chain_invalid) and V(hostname_mismatch) (all critical); V(cert_expiring) (warning
    below O(warn_days), critical below O(crit_days)); V(weak_cipher_accepted) (critical for NULL and
    anonymous suites, warning for the others); V(legacy_protocol_accepted), V(weak_key),
    V(weak_signature), V(hsts_missing), V(hsts_max_age_short), V(x_content_type_options_missing),
    V(frame_options_missing), V(csp_missing), V(referrer_policy_missing), V(http_not_redirected) and
    V(http_check_failed) (warning).
  - Metrics (docs/metrics.md) are C(locksmith_tls_cert_not_after_timestamp_seconds),
    C(locksmith_tls_status), C(locksmith_tls_last_check_timestamp_seconds) and C(locksmith_tls_max_age_seconds),
    each with the label C(subject) set to O(metrics_subject) (no label without one).
extends_documentation_fragment:
  - locksmith.ops.attributes
  - locksmith.ops.attributes.INFO_MODULE
attributes:
  check_mode:
    details: Endpoints are probed as in a real run; the metrics file is not written in check mode.
  idempotent:
    details: Nothing is changed on the endpoints. The metrics file's run timestamp moves on every run by design.
options:
  endpoints:
    description: The endpoints to check.
    type: list
    elements: dict
    required: true
    version_added: 0.1.0
    suboptions:
      host:
        description:
          - Host name or IP address to connect to.
          - A value with spaces or control characters, over 253 characters, or not encodable as an
            internationalised host name fails the task before any endpoint is probed.
        type: str
        required: true
        version_added: 0.1.0
      port:
        description: TCP port.
        type: int
        default: 443
        version_added: 0.1.0
      name:
        description: Label in results and metrics; defaults to C(host:port). Must be unique.
        type: str
        version_added: 0.1.0
      server_name:
        description:
          - Name sent as SNI and matched against the certificate; defaults to O(endpoints[].host).
          - Checked like O(endpoints[].host).
        type: str
        version_added: 0.1.0
      starttls:
        description: Protocol preamble before the TLS handshake.
        type: str
        default: none
        choices: [none, postgres, smtp]
        version_added: 0.1.0
      warn_days:
        description: Overrides O(warn_days) for this endpoint.
        type: int
        version_added: 0.1.0
      crit_days:
        description: Overrides O(crit_days) for this endpoint.
        type: int
        version_added: 0.1.0
      http_checks:
        description: Also GET O(endpoints[].http_path) over TLS and check HSTS, security headers and the redirect.
        type: bool
        default: false
        version_added: 0.1.0
      http_path:
        description:
          - Path requested by the HTTP checks. It must start with C(/) and hold no spaces or control characters
            (percent-encode them); anything else fails the task before any endpoint is probed.
        type: str
        default: /
        version_added: 0.1.0
      http_redirect_port:
        description: Plain-HTTP port that must redirect to https; V(0) skips the redirect check.
        type: int
        default: 80
        version_added: 0.1.0
      postgres_user:
        description:
          - User named in the non-SSL startup probe (O(endpoints[].starttls=postgres)). No password is sent;
            the probe stops as soon as the server answers.
        type: str
        default: postgres
        version_added: 0.1.0
  warn_days:
    description: A certificate with fewer days left is a warning.
    type: int
    default: 30
    version_added: 0.1.0
  crit_days:
    description: A certificate with fewer days left is critical.
    type: int
    default: 7
    version_added: 0.1.0
  min_protocol:
    description: Oldest acceptable protocol; every older one is probed and reported when accepted.
    type: str
    default: TLSv1.2
    choices: [TLSv1.0, TLSv1.1, TLSv1.2, TLSv1.3]
    version_added: 0.1.0
  ca_file:
    description: PEM bundle of trusted roots; the system trust store when omitted.
    type: path
    version_added: 0.1.0
  timeout:
    description:
      - Seconds allowed for each connection, each TLS handshake and each exchange on it (a STARTTLS preamble,
        an HTTP response's headers), however slowly the server sends.
    type: float
    default: 10.0
    version_added: 0.1.0
  concurrency:
    description: Endpoints checked at the same time (threads), 1-256.
    type: int
    default: 16
    version_added: 0.1.0
  hsts_min_age_seconds:
    description: An HSTS max-age below this is a warning (six months by default).
    type: int
    default: 15768000
    version_added: 0.1.0
  weak_cipher_check:
    description:
      - Offer only weak cipher suites in one more TLS 1.2 ClientHello per endpoint (built by the module, so
        suites the local OpenSSL no longer has are offered too) and report the one the server chooses in
        RV(endpoints[].weak_cipher), as problem V(weak_cipher_accepted).
      - The server's answer is read up to its ServerHello; the handshake is never completed.
    type: bool
    default: true
    version_added: 0.1.0
  fail_on:
    description:
      - Fail the task when any endpoint is V(critical), or V(warning) or worse; V(never) only reports.
      - The full results are returned in either case.
    type: str
    default: critical
    choices: [critical, warning, never]
    version_added: 0.1.0
  metrics_dir:
    description:
      - node_exporter textfile-collector directory to write C(locksmith_tls[_<subject>].prom) into.
        No metrics are written when omitted, nor in check mode.
    type: path
    version_added: 0.1.0
  metrics_subject:
    description:
      - Suffix of the metrics file, so that two audits with different endpoint lists keep two files, and the value of
        the C(subject) label of every series in it.
      - Give each audit that writes into one directory its own subject; node_exporter serves a series that two files
        repeat with the same labels from one file only.
    type: str
    version_added: 0.1.0
  metrics_max_age_seconds:
    description:
      - With O(metrics_dir), published as C(locksmith_tls_max_age_seconds), the age past which this audit's newest run
        is overdue (alert C(TlsCheckOverdue)); a positive number.
      - The default, 3 days, is twice a daily schedule plus a day, so one missed run is tolerated and a second is not.
        Set it from your schedule.
    type: int
    default: 259200
    version_added: 0.1.0
seealso:
  - name: sslyze
    description: A full TLS scanner (every cipher suite), about 1-2 seconds an endpoint.
    link: https://github.com/nabla-c0d3/sslyze
"""

EXAMPLES = r"""
- name: Check the web front ends (fail the play on critical findings)
  locksmith.ops.tls_check:
    endpoints:
      - host: www.example.com
      - host: api.example.com

- name: Audit web and database endpoints, publish metrics, report without failing
  locksmith.ops.tls_check:
    endpoints:
      - host: 10.0.0.5
        server_name: www.example.com
        http_checks: true
      - host: db1.example.com
        port: 5432
        starttls: postgres
        warn_days: 45
      - host: mail.example.com
        port: 25
        starttls: smtp
    ca_file: /etc/ssl/certs/internal-root.pem
    min_protocol: TLSv1.2
    concurrency: 32
    metrics_dir: /var/lib/prometheus/node-exporter
    metrics_subject: production
    metrics_max_age_seconds: 259200  # a daily schedule: overdue after two missed runs
    fail_on: never
  register: tls_audit

- name: Probe in check mode (nothing is written)
  locksmith.ops.tls_check:
    endpoints: "{{ tls_audit_endpoints }}"
    fail_on: never
  check_mode: true
"""

RETURN = r"""
endpoints:
  description: One entry per endpoint, in input order.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Label (name or host:port)., type: str, returned: always, sample: "db1.example.com:5432"}
    status: {description: "ok, warning or critical.", type: str, returned: always, sample: warning}
    problems:
      description: Findings with a machine C(code), a C(severity) and a human C(message).
      type: list
      elements: dict
      returned: always
      sample: [{code: cert_expiring, severity: warning, message: "db1.example.com:5432: certificate expires ..."}]
    reachable:
      description: The endpoint answered (false after a refused, failed or timed-out connection).
      type: bool
      returned: always
    error:
      description: The failure that stopped probing (C(code), C(message)), or null.
      type: dict
      returned: always
      sample: {code: connection_refused, message: "10.0.0.9:443: connection refused"}
    protocol: {description: Negotiated protocol., type: str, returned: always, sample: TLSv1.3}
    cipher: {description: Negotiated cipher suite., type: str, returned: always, sample: TLS_AES_256_GCM_SHA384}
    weak_cipher:
      description:
        - The weak cipher suite (OpenSSL's name) the server chose when offered nothing else, or null when it
          refused them all or O(weak_cipher_check=false).
      type: str
      returned: always
      sample: DES-CBC3-SHA
    protocols_below_minimum:
      description: Each protocol below O(min_protocol) and whether the server accepted it (null if unknown).
      type: dict
      returned: always
      sample: {"TLSv1.0": false, "TLSv1.1": false}
    certificate:
      description: The leaf certificate, or null when none was presented.
      type: dict
      returned: always
      sample:
        subject: "CN=db1.example.com"
        common_name: db1.example.com
        subject_alt_names: [db1.example.com]
        issuer: "CN=Example Issuing CA,O=Example"
        serial: "4f3a9c"
        not_before: "2026-01-01T00:00:00Z"
        not_after: "2026-04-01T00:00:00Z"
        not_after_timestamp: 1775001600
        seconds_left: 1728000
        days_left: 20
        key_type: EC
        key_size: 256
        signature_algorithm: ecdsa-with-SHA256
        signature_hash: sha256
        self_signed: false
        not_yet_valid: false
    chain:
      description:
        - C(presented) certificates (subject, issuer, not_after), whether the chain is C(trusted), the
          C(trust_error) and C(trust_reason) (self_signed, chain_incomplete, untrusted_root, no_san, invalid),
          and the C(verified_path) subjects.
      type: dict
      returned: always
      sample: {trusted: true, trust_error: null, trust_reason: null, presented: [], verified_path: []}
    hostname_match: {description: The certificate's SANs cover server_name., type: bool, returned: always}
    ocsp_stapled:
      description: An OCSP response was stapled to a TLS 1.2 handshake; null if the server refuses TLS 1.2.
      type: bool
      returned: always
    ocsp:
      description: The stapled response's status, cert_status, this_update and next_update.
      type: dict
      returned: always
      sample: {response_status: successful, cert_status: good}
    plaintext_accepted:
      description: For starttls=postgres, the server went on to authentication without SSL; else null.
      type: bool
      returned: always
    plaintext_detail:
      description: For starttls=postgres, what the server answered the non-SSL startup message.
      type: str
      returned: always
      sample: "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"postgres\", no encryption"
    http:
      description: >-
        With http_checks, the HTTPS C(status), C(hsts) (present, max_age_seconds, include_subdomains,
        preload), the booleans x_content_type_options, frame_protection, content_security_policy,
        referrer_policy, and the plain-HTTP C(redirect) (port, status, location, redirects_to_https).
      type: dict
      returned: always
    duration_seconds: {description: Wall time spent on this endpoint., type: float, returned: always}
summary:
  description: Counts of endpoints by status.
  returned: always
  type: dict
  sample: {total: 3, ok: 1, warning: 1, critical: 1}
failing:
  description: Names of the endpoints at or above O(fail_on).
  returned: always
  type: list
  elements: str
  sample: ["db1.example.com:5432"]
metrics:
  description:
    - The textfile C(path), whether it was C(written) (never in check mode), and C(values_changed), true when
      a status or expiry differs from the file as it was (the run timestamp is not counted).
  returned: when metrics_dir is set
  type: dict
  sample: {path: /var/lib/prometheus/node-exporter/locksmith_tls.prom, written: true, values_changed: false}
"""

import time  # noqa: E402 - ansible modules document before they import

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.locksmith.ops.plugins.module_utils import _tls, _tls_cert  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError  # noqa: E402
from ansible_collections.locksmith.ops.plugins.module_utils._paths import refuse_nul_in_paths  # noqa: E402


def main():
    module = AnsibleModule(argument_spec=_tls.tls_check_argument_spec(), supports_check_mode=True)
    refuse_nul_in_paths(module)
    if not _tls_cert.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=str(_tls_cert.CRYPTOGRAPHY_IMPORT_ERROR))
    params = module.params
    try:
        _tls.validate(params)
        results = _tls.run_checks(params)
        result = {
            "changed": False,
            "endpoints": results,
            "summary": _tls.summarize(results),
            "failing": _tls.failing(results, params["fail_on"]),
        }
        if params["metrics_dir"]:
            result["metrics"] = _tls.write_metrics(
                params["metrics_dir"],
                params["metrics_subject"],
                results,
                time.time(),
                module.check_mode,
                params["metrics_max_age_seconds"],
            )
    except LocksmithError as err:
        module.fail_json(msg=str(err), **err.details)
    if result["failing"]:
        module.fail_json(
            msg="%d endpoint(s) at or above fail_on=%s: %s; see each endpoint's problems, or set fail_on: never "
            "to report without failing" % (len(result["failing"]), params["fail_on"], ", ".join(result["failing"])),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
