"""The Host and Origin names a listener answers to (the DNS-rebinding check of the proxy's HTTP
front and of `plr console`), and which addresses are loopback only."""

from __future__ import annotations

import pytest

from dsl.listener_names import allowed_names, is_loopback_listener, split_host


def test_a_loopback_listener_answers_to_its_address_and_the_loopback_names():
    hosts, origins = allowed_names("127.0.0.1", {8766}, ())
    assert hosts == ["127.0.0.1:8766", "localhost:8766", "[::1]:8766"]
    assert origins == ["http://127.0.0.1:8766", "http://localhost:8766", "http://[::1]:8766"]


def test_a_wildcard_listener_answers_to_the_loopback_names_but_not_to_the_wildcard():
    hosts, _ = allowed_names("0.0.0.0", {9000}, ())
    assert hosts == ["localhost:9000", "127.0.0.1:9000", "[::1]:9000"]
    assert "0.0.0.0:9000" not in hosts and "[::]:9000" not in allowed_names("::", {9000}, ())[0]


def test_a_public_address_answers_to_itself_only_each_bound_port_and_port_80_bare():
    hosts, origins = allowed_names("10.0.0.5", {80, 8443}, ())
    assert hosts == ["10.0.0.5:80", "10.0.0.5", "10.0.0.5:8443"]
    assert origins == ["http://10.0.0.5:80", "http://10.0.0.5", "http://10.0.0.5:8443"]
    assert allowed_names("FE80::1", {1}, ())[0] == ["[fe80::1]:1"]  # IPv6 in brackets, lower case


def test_allow_host_without_a_port_is_any_port_with_a_port_only_that_one():
    hosts, origins = allowed_names("10.0.0.5", {8766}, ("console.example", "proxy.example:443"))
    assert hosts[1:] == ["console.example", "console.example:*", "proxy.example:443"]
    assert origins[1:] == [
        "http://console.example",
        "https://console.example",
        "http://console.example:*",
        "https://console.example:*",
        "http://proxy.example:443",
        "https://proxy.example:443",
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4 loopback mapped into IPv6
        ("0.0.0.0", False),  # a wildcard serves every interface
        ("::", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
    ],
)
def test_loopback_listeners(host, loopback):
    assert is_loopback_listener(host) is loopback


def test_split_host():
    assert split_host("example.com:8080") == ("example.com", "8080")
    assert split_host("example.com") == ("example.com", "")
    assert split_host("[::1]:8765") == ("[::1]", "8765")
    assert split_host("[::1]") == ("[::1]", "")
