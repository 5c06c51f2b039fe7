# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""tls_check's engine: probe every endpoint concurrently, judge it, summarise, publish metrics.

Probes live in _tls_probe.py (sockets), _tls_cert.py (X.509) and _tls_http.py (HTTPS policy); this
file turns their facts into ``problems`` with codes and severities, which decide each status.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics, _tls_cert, _tls_http, _tls_probe
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._tls_judge import SEVERITY_RANK, judge, status_of
from ansible_collections.locksmith.ops.plugins.module_utils._tls_probe import PROTOCOLS, ProbeError, Target

STARTTLS = ["none", "postgres", "smtp"]
FAIL_ON = ["critical", "warning", "never"]
UNREACHABLE = ("connection_refused", "timeout", "connection_failed", "name_unresolved")
# Mozilla Observatory's floor for HSTS: six months.
DEFAULT_HSTS_MIN_AGE = 15768000
# Twice the daily audit schedule plus a day: one missed run is tolerated, a second is not (TlsCheckOverdue).
METRICS_MAX_AGE_SECONDS = 3 * 86400


class TlsCheckError(LocksmithError):
    """The options cannot be run as given; nothing was probed."""


def endpoint_spec() -> dict:
    """Suboptions of one entry in ``endpoints``."""
    return dict(
        host=dict(type="str", required=True),
        port=dict(type="int", default=443),
        name=dict(type="str"),
        server_name=dict(type="str"),
        starttls=dict(type="str", default="none", choices=STARTTLS),
        warn_days=dict(type="int"),
        crit_days=dict(type="int"),
        http_checks=dict(type="bool", default=False),
        http_path=dict(type="str", default="/"),
        http_redirect_port=dict(type="int", default=80),
        postgres_user=dict(type="str", default="postgres"),
    )


def tls_check_argument_spec() -> dict:
    """The module's options (documented in plugins/modules/tls_check.py)."""
    return dict(
        endpoints=dict(type="list", elements="dict", required=True, options=endpoint_spec()),
        warn_days=dict(type="int", default=30),
        crit_days=dict(type="int", default=7),
        min_protocol=dict(type="str", default="TLSv1.2", choices=list(PROTOCOLS)),
        ca_file=dict(type="path"),
        timeout=dict(type="float", default=10.0),
        concurrency=dict(type="int", default=16),
        hsts_min_age_seconds=dict(type="int", default=DEFAULT_HSTS_MIN_AGE),
        weak_cipher_check=dict(type="bool", default=True),
        fail_on=dict(type="str", default="critical", choices=FAIL_ON),
        metrics_dir=dict(type="path"),
        metrics_subject=dict(type="str"),
        metrics_max_age_seconds=dict(type="int", default=METRICS_MAX_AGE_SECONDS),
    )


def validate(params: dict) -> None:
    """Cross-field rules the spec cannot express; raise TlsCheckError naming the option."""
    if not 0 < params["timeout"] <= 3600:  # also refuses nan and inf, which socket/select cannot take
        raise TlsCheckError("timeout %s must be above 0 and at most 3600 seconds" % params["timeout"])
    if not 1 <= params["concurrency"] <= 256:
        raise TlsCheckError("concurrency %d must be between 1 and 256 threads" % params["concurrency"])
    if params.get("metrics_dir") and not os.path.isdir(params["metrics_dir"]):
        raise TlsCheckError(
            "metrics_dir '%s' does not exist; create it (node_exporter's textfile directory) or omit metrics_dir"
            % params["metrics_dir"]
        )
    if params["metrics_max_age_seconds"] <= 0:
        raise TlsCheckError(
            "metrics_max_age_seconds is %d; set it to the age in seconds past which this audit is overdue (default %d, "
            "twice a daily schedule plus a day)" % (params["metrics_max_age_seconds"], METRICS_MAX_AGE_SECONDS),
            option="metrics_max_age_seconds",
        )
    if not params["endpoints"]:
        raise TlsCheckError("endpoints is empty; list at least one {host, port}")
    seen = {}
    for index, ep in enumerate(params["endpoints"]):
        warn, crit = _thresholds(ep, params)
        if crit < 0 or warn < crit:
            raise TlsCheckError(
                "endpoints[%d] '%s': warn_days %d must be >= crit_days %d >= 0" % (index, ep["host"], warn, crit)
            )
        for option in ("host", "server_name"):
            if option == "server_name" and ep[option] is None:
                continue  # defaults to host
            problem = _host_problem(ep[option])
            if problem:
                raise TlsCheckError("endpoints[%d].%s %r %s" % (index, option, ep.get(option), problem))
        path = ep["http_path"]
        if (
            not path.startswith("/")
            or not path.isascii()
            or any(char.isspace() or not char.isprintable() for char in path)
        ):
            raise TlsCheckError(
                "endpoints[%d].http_path %r must start with / and hold only printable ASCII, no spaces or "
                "control characters; percent-encode the others (%%20, %%C3%%A9)" % (index, path)
            )
        if not 0 < ep["port"] < 65536 or not 0 <= ep["http_redirect_port"] < 65536:
            raise TlsCheckError("endpoints[%d] '%s': port numbers must be 1-65535" % (index, ep["host"]))
        name = endpoint_name(ep)
        if name in seen:
            raise TlsCheckError(
                "endpoints[%d] and endpoints[%d] are both named '%s'; set a distinct 'name' on one of them"
                % (seen[name], index, name)
            )
        seen[name] = index


def _host_problem(value) -> str | None:
    """Why ``value`` cannot be a host name or IP address to connect to and name in SNI, or None."""
    if not value:
        return "is empty; give a host name or IP address"
    if len(value) > 253 or any(char.isspace() or not char.isprintable() for char in value):
        return "is not a host name: at most 253 characters, no spaces or control characters"
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    # URL habits: '[::1]' and 'host:443' would only fail later as a name that does not resolve.
    if value.startswith("[") and value.endswith("]"):
        return "is an IPv6 address in brackets; write it without them (%s) and the port in port" % value[1:-1]
    if ":" in value or "/" in value:
        return "is not a host name (a URL or host:port?); give the host alone and the port in port"
    try:
        value.encode("idna")
    except UnicodeError as err:
        return "is not a valid host name (%s)" % err
    return None


def a_label(name: str) -> str:
    """An internationalised host name in the ASCII form certificates, SNI and Host headers carry."""
    return name if name.isascii() else name.encode("idna").decode("ascii")


def endpoint_name(ep: dict) -> str:
    """The endpoint's label in results and metrics: its name, else host:port."""
    return ep.get("name") or "%s:%d" % (ep["host"], ep["port"])


def _thresholds(ep: dict, params: dict) -> tuple[int, int]:
    warn = ep["warn_days"] if ep.get("warn_days") is not None else params["warn_days"]
    crit = ep["crit_days"] if ep.get("crit_days") is not None else params["crit_days"]
    return warn, crit


class Checker:
    """Shared, read-only state of one run: contexts, trust store and options; safe across threads."""

    def __init__(self, params: dict, now: datetime.datetime | None = None):
        self.params = params
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        self.min_protocol = params["min_protocol"]
        self.store, self.store_certs = _tls_cert.load_trust_store(params.get("ca_file"))
        self.main_ctx = _tls_probe.client_context(self.min_protocol)
        self.below = [p for p in PROTOCOLS if PROTOCOLS.index(p) < PROTOCOLS.index(self.min_protocol)]
        self.legacy_ctx = {p: _tls_probe.client_context(exact=p) for p in self.below}

    def target(self, ep: dict) -> Target:
        return Target(
            host=ep["host"],
            port=ep["port"],
            server_name=a_label(ep.get("server_name") or ep["host"]),
            starttls=ep.get("starttls") or "none",
            timeout=float(self.params["timeout"]),
        )

    def check(self, ep: dict) -> dict:
        """Probe one endpoint and judge it; never raises for a network failure."""
        started = time.monotonic()
        target = self.target(ep)
        result = {
            "name": endpoint_name(ep),
            "host": target.host,
            "port": target.port,
            "server_name": target.server_name,
            "starttls": target.starttls,
            "reachable": False,
            "error": None,
            "protocol": None,
            "cipher": None,
            "protocols_below_minimum": {},
            "weak_cipher": None,
            "certificate": None,
            "chain": None,
            "hostname_match": None,
            "ocsp_stapled": None,
            "ocsp": None,
            "plaintext_accepted": None,
            "plaintext_detail": None,
            "http": None,
        }
        try:
            self._probe(ep, target, result)
        except ProbeError as err:
            result["error"] = {"code": err.code, "message": err.msg}
            result["reachable"] = err.code not in UNREACHABLE
        warn, crit = _thresholds(ep, self.params)
        result["problems"] = judge(result, warn, crit, self.min_protocol, self.params["hsts_min_age_seconds"])
        result["status"] = status_of(result["problems"])
        result["duration_seconds"] = round(time.monotonic() - started, 4)
        return result

    def _probe(self, ep: dict, target: Target, result: dict) -> None:
        if target.starttls == "postgres":
            accepted, detail = _tls_probe.postgres_accepts_plaintext(target, ep.get("postgres_user") or "postgres")
            result["plaintext_accepted"] = accepted
            result["plaintext_detail"] = detail
        main, main_error, fallback = None, None, None
        try:
            main = _tls_probe.handshake(target, self.main_ctx)
        except ProbeError as err:
            if err.code != "handshake_failed":
                raise
            main_error = err
        result["reachable"] = True
        for proto in self.below:
            accepted, legacy = _tls_probe.accepts(target, self.legacy_ctx[proto])
            result["protocols_below_minimum"][proto] = accepted
            fallback = legacy or fallback  # protocols ascend: keep the newest one the server took
        main = main or fallback
        if main is None:
            raise main_error
        result.update(protocol=main["protocol"], cipher=main["cipher"])
        self._certificates(main["chain_der"], target, result)
        flight = _tls_probe.ocsp_staple(target)
        if flight is not None:
            result["ocsp_stapled"] = flight["ocsp_der"] is not None
            result["ocsp"] = _tls_cert.describe_ocsp(flight["ocsp_der"]) if flight["ocsp_der"] else None
        if self.params["weak_cipher_check"]:
            result["weak_cipher"] = _tls_probe.weak_cipher(target)
        if ep.get("http_checks"):
            result["http"] = self._http(ep, target)

    def _certificates(self, chain_der: list, target: Target, result: dict) -> None:
        try:
            certs = _tls_cert.load_der(chain_der)
        except ValueError as err:
            raise ProbeError(
                "certificate_unreadable", "%s: presented certificate cannot be parsed (%s)" % (target.label(), err)
            ) from err
        if not certs:
            raise ProbeError("certificate_unreadable", "%s: the server presented no certificate" % target.label())
        leaf, rest = certs[0], certs[1:]
        result["certificate"] = _tls_cert.describe(leaf, self.now)
        result["hostname_match"] = _tls_cert.hostname_matches(leaf, target.server_name)
        trust = _tls_cert.verify_chain(leaf, rest, self.store, self.store_certs, target.server_name, self.now)
        result["chain"] = {
            "presented": [_tls_cert.chain_entry(c) for c in certs],
            "trusted": trust["trusted"],
            "trust_error": trust["error"],
            "trust_reason": trust["reason"],
            "verified_path": trust["verified_chain"],
        }

    def _http(self, ep: dict, target: Target) -> dict:
        facts = {"redirect": None}
        try:
            facts.update(_tls_http.https_headers(target, self.main_ctx, ep["http_path"]))
        except ProbeError as err:
            facts["error"] = err.msg
        if ep["http_redirect_port"]:
            facts["redirect"] = _tls_http.http_redirect(target, ep["http_redirect_port"], ep["http_path"])
        return facts


def run_checks(params: dict, checker: Checker | None = None) -> list:
    """Check every endpoint with up to ``concurrency`` threads; results keep the input order."""
    checker = checker or Checker(params)
    workers = min(params["concurrency"], len(params["endpoints"]))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(checker.check, params["endpoints"]))


def summarize(results: list) -> dict:
    """Counts by status."""
    summary = {"total": len(results), "ok": 0, "warning": 0, "critical": 0}
    for result in results:
        summary[result["status"]] += 1
    return summary


def failing(results: list, fail_on: str) -> list:
    """Names of the endpoints at or above the fail_on severity."""
    if fail_on == "never":
        return []
    floor = SEVERITY_RANK[fail_on]
    return [r["name"] for r in results if SEVERITY_RANK[r["status"]] >= floor]


def metric_families(results: list, finished_at: float, subject: str | None = None, max_age: int | None = None) -> list:
    """locksmith_tls_* families (docs/metrics.md) for one run. Every series carries the run's subject (none without
    one): node_exporter serves a series that two files repeat from one file only, so two audits on a host must differ.
    """
    scope = {"subject": subject} if subject else {}
    expiry = _metrics.Family(
        "locksmith_tls_cert_not_after_timestamp_seconds", "leaf certificate expiry (endpoint is host:port)"
    )
    status = _metrics.Family("locksmith_tls_status", "0 ok, 1 warning, 2 critical")
    for result in results:
        if result["certificate"]:
            expiry.add(result["certificate"]["not_after_timestamp"], endpoint=result["name"], **scope)
        status.add(SEVERITY_RANK[result["status"]], endpoint=result["name"], **scope)
    last = _metrics.Family("locksmith_tls_last_check_timestamp_seconds", "end of the newest tls_check run")
    last.add(int(finished_at), **scope)
    target = _metrics.Family("locksmith_tls_max_age_seconds", "the audit is overdue past this age")
    target.add(METRICS_MAX_AGE_SECONDS if max_age is None else max_age, **scope)
    return [expiry, status, last, target]


def write_metrics(
    directory: str,
    subject: str | None,
    results: list,
    finished_at: float,
    check_mode: bool,
    max_age_seconds: int = METRICS_MAX_AGE_SECONDS,
) -> dict:
    """Publish the run's metrics; in check mode nothing is written. ``values_changed`` ignores the
    run timestamp, which moves on every run by design."""
    families = metric_families(results, finished_at, subject, max_age_seconds)
    path = "%s/%s" % (directory.rstrip("/"), _metrics.textfile_name("tls", subject))
    before = {
        k: v for k, v in _metrics.read_textfile(path).items() if not k[0].endswith("last_check_timestamp_seconds")
    }
    after = {
        k: v
        for k, v in _metrics.parse(_metrics.render(families)).items()
        if not k[0].endswith("last_check_timestamp_seconds")
    }
    # The timestamp always differs, so write_textfile always writes: 'written' is simply 'not check mode'.
    path = _metrics.write_textfile(directory, "tls", subject, families, check_mode=check_mode)[1]
    return {"path": path, "written": not check_mode, "values_changed": before != after}
