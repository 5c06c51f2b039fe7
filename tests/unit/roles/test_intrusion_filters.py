"""The locksmith-nginx-* fail2ban filters of role intrusion_detection against the attack and benign corpora.

Every attack target must match the filter of its class; no benign target may match any filter. The targets are
written into access-log lines exactly as nginx writes them in web_hardening's "locksmith" format (nginx escapes
'"', '\\' and bytes outside 0x20-0x7e as \\xHH). Two engines read the filters: fail2ban-regex (fail2ban's own
reader, date handling and <HOST>), and Python re on the failregex lines after fail2ban-style interpolation, so
the corpus also runs where fail2ban is not installed.
"""

from __future__ import annotations

import configparser
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROLE = Path(__file__).resolve().parents[3] / "roles" / "intrusion_detection"
FILTER_DIR = ROLE / "files" / "filter.d"
CLASSES = ("sqli", "xss", "traversal", "cmdi")
LOG_FORMAT = (
    '{addr} - - [27/Nov/2026:03:45:00 +0000] "GET {target} HTTP/1.1" 404 153 "-" "corpus-test/1.0" '
    'rt=0.001 ut="-" host=www.example.test'
)


def _corpus(name: str) -> list[str]:
    lines = (ROLE / "tests" / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


ATTACKS = [tuple(line.split(" ", 1)) for line in _corpus("attack_urls.txt")]
BENIGN = _corpus("benign_urls.txt")


def nginx_escape(target: str) -> str:
    """The request target as nginx's access log writes it (escape=default)."""
    out = []
    for byte in target.encode("utf-8"):
        if byte in (0x22, 0x5C) or byte < 0x20 or byte > 0x7E:
            out.append("\\x%02X" % byte)
        else:
            out.append(chr(byte))
    return "".join(out)


def address(index: int) -> str:
    """A distinct documentation address per corpus line, so a match names its line."""
    return str(ipaddress.ip_address("198.18.0.0") + index + 1)


def log_lines(targets: list[str]) -> list[str]:
    return [LOG_FORMAT.format(addr=address(i), target=nginx_escape(t)) for i, t in enumerate(targets)]


def test_corpora_cover_every_class_and_are_distinct():
    classes = {cls for cls, _target in ATTACKS}
    assert classes == set(CLASSES)
    for cls in CLASSES:
        assert sum(1 for c, _target in ATTACKS if c == cls) >= 10, cls
    targets = [t for _cls, t in ATTACKS]
    assert len(set(targets)) == len(targets)
    assert len(set(BENIGN)) == len(BENIGN) >= 40
    assert not set(targets) & set(BENIGN)


# ---- Python re on the exact failregex lines ----------------------------------------------------------------

HOST_RE = r"(?P<host>[0-9a-fA-F.:]+)"


def failregexes(cls: str) -> list[re.Pattern]:
    """The failregex lines of one filter, interpolated as fail2ban does (common file first, then the filter)."""
    parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation())
    parser.optionxform = str
    parser.read([FILTER_DIR / "locksmith-nginx-common.conf", FILTER_DIR / f"locksmith-nginx-{cls}.conf"])
    lines = [line.strip() for line in parser.get("Definition", "failregex").splitlines() if line.strip()]
    assert lines, cls
    return [re.compile(line.replace("<HOST>", HOST_RE)) for line in lines]


@pytest.fixture(scope="module")
def regexes():
    return {cls: failregexes(cls) for cls in CLASSES}


def matching_classes(regexes, line: str) -> set[str]:
    return {cls for cls, patterns in regexes.items() if any(p.search(line) for p in patterns)}


@pytest.mark.parametrize(("cls", "target"), ATTACKS, ids=[t for _cls, t in ATTACKS])
def test_attack_matches_its_filter_python_re(regexes, cls, target):
    line = log_lines([target])[0]
    assert cls in matching_classes(regexes, line), line


@pytest.mark.parametrize("target", BENIGN)
def test_benign_matches_no_filter_python_re(regexes, target):
    line = log_lines([target])[0]
    assert matching_classes(regexes, line) == set(), line


def test_host_is_the_client_address_not_a_referer(regexes):
    line = (
        '198.18.0.9 - - [27/Nov/2026:03:45:00 +0000] "GET / HTTP/1.1" 200 612 '
        '"https://x.test/?q=<script>alert(1)</script>" "Mozilla/5.0 ../../etc/passwd" rt=0.001 ut="-" host=x'
    )
    assert matching_classes(regexes, line) == set()
    attack = log_lines(["/?q=<script>alert(1)</script>"])[0]
    match = next(p.search(attack) for p in regexes["xss"] if p.search(attack))
    assert match["host"] == address(0)


# ---- fail2ban-regex, fail2ban's own engine -----------------------------------------------------------------

FAIL2BAN_REGEX = shutil.which("fail2ban-regex")
needs_fail2ban = pytest.mark.skipif(
    FAIL2BAN_REGEX is None, reason="fail2ban-regex not installed (apt-get install fail2ban); Python re tests ran"
)


def fail2ban_matched(tmp_path: Path, cls: str, lines: list[str]) -> set[str]:
    """Addresses fail2ban-regex reports as failures for the filter of one class."""
    log = tmp_path / f"{cls}.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    filter_dir = tmp_path / "filter.d"
    if not filter_dir.exists():
        shutil.copytree(FILTER_DIR, filter_dir)
    run = subprocess.run(
        [FAIL2BAN_REGEX, "-o", "ip", str(log), str(filter_dir / f"locksmith-nginx-{cls}.conf")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return {line.strip() for line in run.stdout.splitlines() if line.strip()}


@needs_fail2ban
@pytest.mark.parametrize("cls", CLASSES)
def test_fail2ban_regex_bans_every_attack_of_its_class(tmp_path, cls):
    targets = [t for c, t in ATTACKS if c == cls]
    matched = fail2ban_matched(tmp_path, cls, log_lines(targets))
    missed = [t for i, t in enumerate(targets) if address(i) not in matched]
    assert missed == []


@needs_fail2ban
@pytest.mark.parametrize("cls", CLASSES)
def test_fail2ban_regex_matches_no_benign_target(tmp_path, cls):
    matched = fail2ban_matched(tmp_path, cls, log_lines(BENIGN))
    hits = [t for i, t in enumerate(BENIGN) if address(i) in matched]
    assert hits == []
