# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""HTTPS policy checks for tls_check: the port-80 redirect, HSTS and the other security headers.

Each check is one GET of one path, read-only; only the response's status line and headers are read,
up to a size limit and within the timeout as a whole, so a slow or endless response cannot hold the run.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import ssl
import time
from urllib.parse import urlsplit

from ansible_collections.locksmith.ops.plugins.module_utils._tls_probe import ProbeError, Target, open_plain, recv_by

MAX_HEAD_BYTES = 65536
REDIRECT_CODES = (301, 302, 303, 307, 308)
_DELTA_SECONDS = re.compile(r"\d+|\"\d+\"")


def parse_hsts(value: str | None) -> dict:
    """The parts of a Strict-Transport-Security header that matter for policy. As browsers do (RFC 6797
    6.1), a header whose max-age is not plain digits, or that repeats a directive, is ignored whole: it
    is reported present with a null max-age."""
    if not value:
        return {"present": False, "max_age_seconds": None, "include_subdomains": False, "preload": False}
    directives: dict = {}
    for part in value.split(";"):
        name, _eq, argument = part.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        if name in directives:
            directives = {}
            break
        directives[name] = argument.strip()
    max_age = directives.get("max-age")
    if max_age is None or not _DELTA_SECONDS.fullmatch(max_age):
        return {"present": True, "max_age_seconds": None, "include_subdomains": False, "preload": False}
    return {
        "present": True,
        "max_age_seconds": int(max_age.strip('"')),
        "include_subdomains": "includesubdomains" in directives,
        "preload": "preload" in directives,
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


def _https_on_host(location: str, server_name: str) -> bool:
    """``location`` is https:// on the same host: an off-host first redirect keeps HSTS from being set
    for this name (hstspreload.org and Mozilla Observatory fail it too)."""
    try:
        parts = urlsplit(location.strip())
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme.lower() == "https" and host is not None and host.rstrip(".") == server_name.lower().rstrip(".")


def _host_header(target: Target, port: int, default_port: int) -> str:
    host = target.server_name
    if ":" in host:
        host = "[%s]" % host
    return host if port == default_port else "%s:%d" % (host, port)


class _Head:
    """The bytes of a response head, in the shape http.client.HTTPResponse reads from."""

    def __init__(self, data: bytes):
        self.data = data

    def makefile(self, *_args):
        return io.BytesIO(self.data)


def read_head(sock: socket.socket, deadline: float) -> bytes:
    """The response up to its blank line, read by ``deadline``; a longer head is refused."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_HEAD_BYTES:
            raise http.client.HTTPException("response headers exceed %d bytes" % MAX_HEAD_BYTES)
        chunk = recv_by(sock, 4096, deadline)
        if not chunk:
            break
        data += chunk
    return data


def _get(sock: socket.socket, path: str, host_header: str, timeout: float) -> tuple[int, dict]:
    """One GET; the status and the headers, lower-cased names mapped to lists of values in order."""
    request = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: locksmith-tls-check\r\nAccept: */*\r\n" % (path, host_header)
    sock.sendall(request.encode("ascii") + b"Connection: close\r\n\r\n")
    response = http.client.HTTPResponse(_Head(read_head(sock, time.monotonic() + timeout)))
    response.begin()
    headers: dict = {}
    for key, value in response.getheaders():
        headers.setdefault(key.lower(), []).append(value)
    return response.status, headers


def https_headers(target: Target, ctx: ssl.SSLContext, path: str) -> dict:
    """GET ``path`` over TLS on the endpoint; return status, HSTS and security-header facts."""
    sock = open_plain(target)
    try:
        with ctx.wrap_socket(sock, server_hostname=target.sni) as tls:
            status, headers = _get(tls, path, _host_header(target, target.port, 443), target.timeout)
    except (OSError, http.client.HTTPException) as err:
        raise ProbeError("http_check_failed", "%s: HTTPS GET %s failed (%s)" % (target.label(), path, err)) from err
    finally:
        sock.close()
    first = {key: values[0] for key, values in headers.items()}
    return {"status": status, "hsts": parse_hsts(first.get("strict-transport-security")), **security_headers(first)}


def http_redirect(target: Target, port: int, path: str) -> dict:
    """GET ``path`` over plain HTTP on ``port``; does it redirect to https://?"""
    try:
        with socket.create_connection((target.host, port), timeout=target.timeout) as sock:
            status, headers = _get(sock, path, _host_header(target, port, 80), target.timeout)
    except (OSError, http.client.HTTPException) as err:
        return {"port": port, "status": None, "location": None, "redirects_to_https": False, "error": str(err)}
    headers = {key: values[0] for key, values in headers.items()}
    location = headers.get("location")
    redirects = status in REDIRECT_CODES and bool(location) and _https_on_host(location, target.server_name)
    return {"port": port, "status": status, "location": location, "redirects_to_https": redirects, "error": None}
