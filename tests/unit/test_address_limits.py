"""What per-address limits count by: an IPv4 address, or the /64 of an IPv6 one."""

from __future__ import annotations

import pytest

from server.authn.secrets import AddressDigests, network_of


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::1", "::/64"),
        (None, "-"),
        ("", "-"),
        ("not an address", "-"),
    ],
)
def test_an_address_is_counted_by_its_network(address: str | None, counted_as: str) -> None:
    assert network_of(address) == counted_as


def test_addresses_of_one_64_share_a_digest_and_the_next_64_does_not() -> None:
    digests = AddressDigests(b"k" * 32)

    assert digests.digest("2001:db8:1:2::1") == digests.digest("2001:db8:1:2:abcd::9")
    assert digests.digest("2001:db8:1:2::1") != digests.digest("2001:db8:1:3::1")
    assert digests.digest("192.0.2.7") != digests.digest("192.0.2.8")
