"""plain_path and plain_settings: what may be printed into a configuration file or a systemd unit as it is."""

import pytest

from ansible_collections.locksmith.ops.plugins.test.plain_path import TestModule as PlainPathTests
from ansible_collections.locksmith.ops.plugins.test.plain_path import plain_path, plain_settings


@pytest.mark.parametrize(
    "value", ["/var/lib/prometheus/node-exporter", "/var/log/nginx/access.log", "/", "/srv/a-b_c.d/e,f@g+h:i"]
)
def test_plain_paths(value):
    assert plain_path(value) is True


@pytest.mark.parametrize(
    "value",
    [
        "/var/lib/x\nExecStartPre=+/bin/touch /tmp/pwned",  # a new unit line, run as root
        "/var/log/a.log main; error_log /tmp/x",
        "/var/log/a b",
        "/var/log/a#b",
        "/var/log/%(action_)s",
        "/var/log/$HOME",
        '/var/log/"a"',
        "/var/log/a\\b",
        "/var/log/a\tb",
        "/var/log/a\x00",
        "relative/path",
        "",
        None,
        ["/var/log"],
    ],
)
def test_paths_that_would_change_the_file_are_not_plain(value):
    assert plain_path(value) is False


def test_plain_settings():
    assert plain_settings({}) is True
    assert plain_settings({"kernel.yama.ptrace_scope": None, "net.ipv4.ip_forward": 0, "ENCRYPT_METHOD": "SHA512"})
    assert plain_settings({"repo1-retention-full": 2, "queue.size": "10000"}) is True


@pytest.mark.parametrize(
    "value",
    [
        {"kernel.core_uses_pid": "1\nkernel.core_pattern=|/bin/sh -c id"},
        {"ENCRYPT_METHOD": "SHA512\nUSERDEL_CMD\t/tmp/evil.sh"},
        {'queue.size" action(type="omprog" binary="/bin/touch")': "1"},
        {"name with blank": "1"},
        {"a\rb": "1"},
        {1: "x"},
        ["a", "b"],
        "a=1",
        None,
    ],
)
def test_settings_that_would_add_lines_are_not_plain(value):
    assert plain_settings(value) is False


def test_both_tests_are_registered():
    assert set(PlainPathTests().tests()) == {"plain_path", "plain_settings"}


@pytest.mark.parametrize("char", list("`|&<>()*?[]{}!"))
def test_shell_syntax_is_not_plain(char):
    # Printed into a cron line and PostgreSQL's archive_command, which sh runs: /a/`id` ran id as the job's user.
    assert plain_path("/var/lib/a%sb" % char) is False
