"""locksmith.ops.any_address: every spelling of "every interface" that Go or glibc accept, and nothing else."""

from __future__ import annotations

import socket

import pytest

from plugins.test import any_address as plugin
from plugins.test.any_address import any_address

EVERY_INTERFACE = [
    "0.0.0.0",  # noqa: S104 - the values under test
    "::",
    "[::]",
    "*",
    "::0",
    "0::0",
    "0:0:0:0:0:0:0:0",
    "[0::0]",
    "::ffff:0.0.0.0",
    "::ffff:0:0",
    "0",
    "0x0",
    "0.0",
    "00.0.0.0",
    " 0.0.0.0 ",
]
ONE_INTERFACE = [
    "127.0.0.1",
    "10.0.0.5",
    "::1",
    "[::1]",
    "fe80::1%eth0",
    "0.0.0.1",
    "::ffff:10.0.0.1",
    "localhost",
    "db.example.internal",
    "1.2.3",
    "",
    "0.0.0.0.0",
    "::ffff:0.0.0.0:9100",
]


@pytest.mark.parametrize("value", EVERY_INTERFACE)
def test_every_interface(value):
    assert any_address(value) is True


@pytest.mark.parametrize("value", ONE_INTERFACE)
def test_one_interface_or_not_an_address(value):
    assert any_address(value) is False


@pytest.mark.parametrize("value", ["0", "0x0", "0.0", "00.0.0.0"])
def test_the_inet_aton_forms_are_what_getaddrinfo_makes_of_them(value):
    # The reason they are in the list: PostgreSQL's listen_addresses and rsyslog resolve them to 0.0.0.0.
    assert socket.getaddrinfo(value, 5432, socket.AF_INET, socket.SOCK_STREAM)[0][4][0] == "0.0.0.0"  # noqa: S104


def test_registered_under_its_name():
    assert plugin.TestModule().tests() == {"any_address": any_address}
