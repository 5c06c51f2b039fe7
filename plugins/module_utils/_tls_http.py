# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""HTTPS policy checks for tls_check: the port-80 redirect, HSTS and the other security headers.

Each check is one GET of one path, read-only; response bodies are read only up to a small limit.
"""

from __future__ import annotations

import http.client
import re
import ssl

from ansible_collections.locksmith.ops.plugins.module_utils._tls_probe import ProbeError, Target, open_plain

MAX_BODY_BYTES = 65536
REDIRECT_CODES = (301, 302, 303, 307, 308)
_MAX_AGE = re.compile(r"(?:^|;)\s*max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


def parse_hsts(value: str | None) -> dict:
    """The parts of a Strict-Transport-Security header that matter for policy."""
    if not value:
        return {"present": False, "max_age_seconds": None, "include_subdomains": False, "preload": False}
    match = _MAX_AGE.search(value)
    tokens = {part.strip().lower() for part in value.split(";")}
    return {
        "present": True,
        "max_age_seconds": int(match.group(1)) if match else None,
        "include_subdomains": "includesubdomains" in tokens,
        "preload": "preload" in tokens,
    }


def security_headers(headers: dict) -> dict:
    """Which of the seeds' security headers a response carries (keys are lower-case names)."""
    csp = headers.get("content-security-policy")
    return {
        "x_content_type_options": (headers.get("x-content-type-options") or "").strip().lower() == "nosniff",
        "frame_protection": bool(headers.get("x-frame-options")) or bool(csp and "frame-ancestors" in csp.lower()),
        "content_security_policy": bool(csp),
        "referrer_policy": bool(headers.get("referrer-policy")),
    }


def _host_header(target: Target, port: int, default_port: int) -> str:
    host = target.server_name
    if ":" in host:
        host = "[%s]" % host
    return host if port == default_port else "%s:%d" % (host, port)


def _get(conn: http.client.HTTPConnection, path: str, host_header: str) -> tuple[int, dict]:
    conn.request("GET", path, headers={"Host": host_header, "User-Agent": "locksmith-tls-check", "Accept": "*/*"})
    response = conn.getresponse()
    response.read(MAX_BODY_BYTES)
    return response.status, {k.lower(): v for k, v in response.getheaders()}


def https_headers(target: Target, ctx: ssl.SSLContext, path: str) -> dict:
    """GET ``path`` over TLS on the endpoint; return status, HSTS and security-header facts."""
    sock = open_plain(target)
    conn = http.client.HTTPConnection(target.host, target.port, timeout=target.timeout)
    try:
        conn.sock = ctx.wrap_socket(sock, server_hostname=target.sni)
        status, headers = _get(conn, path, _host_header(target, target.port, 443))
    except (OSError, http.client.HTTPException) as err:
        sock.close()
        raise ProbeError("http_check_failed", "%s: HTTPS GET %s failed (%s)" % (target.label(), path, err)) from err
    finally:
        conn.close()
    return {"status": status, "hsts": parse_hsts(headers.get("strict-transport-security")), **security_headers(headers)}


def http_redirect(target: Target, port: int, path: str) -> dict:
    """GET ``path`` over plain HTTP on ``port``; does it redirect to https://?"""
    conn = http.client.HTTPConnection(target.host, port, timeout=target.timeout)
    try:
        status, headers = _get(conn, path, _host_header(target, port, 80))
    except (OSError, http.client.HTTPException) as err:
        return {"port": port, "status": None, "location": None, "redirects_to_https": False, "error": str(err)}
    finally:
        conn.close()
    location = headers.get("location")
    redirects = status in REDIRECT_CODES and bool(location) and location.lower().startswith("https://")
    return {"port": port, "status": status, "location": location, "redirects_to_https": redirects, "error": None}
