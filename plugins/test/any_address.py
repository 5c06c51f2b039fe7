# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja test: does a listen address mean "every interface" to the service that parses it?

A list such as ['0.0.0.0', '::', '*'] misses spellings the services accept: Go (Prometheus, the exporters,
Grafana) listens everywhere on [::0] or [::ffff:0.0.0.0], and glibc's getaddrinfo (PostgreSQL, rsyslog) reads
0, 0x0 and 0.0 as 0.0.0.0. The roles' guards ask this test instead.
"""

from __future__ import annotations

import ipaddress
import socket


def any_address(value):
    """True when value, as a listen address, is the unspecified address in any spelling a service accepts."""
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text == "*":
        return True
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        address = None
    if address is not None:
        if address.is_unspecified:
            return True
        mapped = getattr(address, "ipv4_mapped", None)
        return bool(mapped is not None and mapped.is_unspecified)
    # inet_aton's forms (what getaddrinfo accepts for AF_INET): 0, 0x0, 0.0, 00.0.0.0, ...
    try:
        return socket.inet_aton(text) == b"\0\0\0\0"
    except (OSError, ValueError):
        return False


class TestModule:
    def tests(self):
        return {"any_address": any_address}
