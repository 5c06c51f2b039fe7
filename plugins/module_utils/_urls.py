# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""The one check of the service URLs users give (S3 and Secrets Manager endpoints, Vault, a test URL)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def http_url_problem(url):
    """What is wrong with ``url`` as an http:// or https:// service URL, or None.

    A user:password@ part is refused: the options for credentials exist, and a URL is shown in messages.
    The reasons never repeat the URL, so a password in it is not echoed.
    """
    if not isinstance(url, str) or _SPACE_OR_CONTROL.search(url) or not url.isascii():
        return "holds a space, a control or a non-ASCII character (percent-encode it, or give the host in ASCII)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http:// or https:// URL with a host"
    if "@" in parts.netloc:
        return "holds a user name or password before the host; give credentials in their own options"
    return None


def redact_url(url):
    """``url`` as shown in messages: without any user:password@ part."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unparseable URL)"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
