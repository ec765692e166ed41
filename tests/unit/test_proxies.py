"""Where a request comes from behind reverse proxies: only trusted peers' forwarding headers
are believed, walked from the right to the right-most hop that is not a trusted proxy."""

from __future__ import annotations

import ipaddress

import pytest

from server.web.proxies import ProxyTrust, parse_address, parse_forwarded

LOAD_BALANCER = "10.0.0.7"
TRUST = ProxyTrust([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")])


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(name.replace("_", "-").encode(), value.encode()) for name, value in values.items()]


def test_without_forwarding_headers_there_is_nothing_to_believe() -> None:
    assert TRUST.origin(headers(host="id.example.com")) is None


def test_one_trusted_proxy_names_the_client() -> None:
    assert TRUST.origin(headers(x_forwarded_for="203.0.113.5", x_forwarded_proto="https")) == ("203.0.113.5", "https")


def test_what_the_client_wrote_left_of_the_proxy_entry_is_not_believed() -> None:
    forged = headers(x_forwarded_for="198.51.100.1, 203.0.113.5")
    assert TRUST.origin(forged) == ("203.0.113.5", None)


def test_a_chain_of_two_trusted_proxies_is_walked_past() -> None:
    # client -> edge proxy (10.0.0.7) -> local proxy (127.0.0.1, the peer) -> us
    chain = headers(x_forwarded_for=f"198.51.100.1, 203.0.113.5, {LOAD_BALANCER}", x_forwarded_proto="https, http")
    assert TRUST.origin(chain) == ("203.0.113.5", "https")


def test_a_scheme_overwritten_by_the_last_proxy_applies_to_every_hop() -> None:
    chain = headers(x_forwarded_for=f"203.0.113.5, {LOAD_BALANCER}", x_forwarded_proto="https")
    assert TRUST.origin(chain) == ("203.0.113.5", "https")


def test_when_every_hop_is_trusted_the_left_most_is_the_client() -> None:
    assert TRUST.origin(headers(x_forwarded_for=f"10.1.1.1, {LOAD_BALANCER}")) == ("10.1.1.1", None)


def test_repeated_header_lines_form_one_list() -> None:
    lines = [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-for", f"203.0.113.5, {LOAD_BALANCER}".encode())]
    assert TRUST.origin(lines) == ("203.0.113.5", None)


def test_an_unknown_hop_stops_the_walk() -> None:
    assert TRUST.origin(headers(x_forwarded_for="203.0.113.5, unknown")) is None
    assert TRUST.origin(headers(forwarded="for=203.0.113.5, for=_hidden")) is None


def test_forwarded_names_the_client_and_its_scheme() -> None:
    value = f'for=198.51.100.1;proto=http, for="[2001:db8::17]:4711";proto=https, for={LOAD_BALANCER};proto=http'
    assert TRUST.origin(headers(forwarded=value)) == ("2001:db8::17", "https")


def test_x_forwarded_for_wins_over_a_forwarded_header_a_proxy_passed_on() -> None:
    both = headers(forwarded="for=198.51.100.1", x_forwarded_for="203.0.113.5")
    assert TRUST.origin(both) == ("203.0.113.5", None)


def test_a_scheme_other_than_http_or_https_is_ignored() -> None:
    assert TRUST.origin(headers(x_forwarded_for="203.0.113.5", x_forwarded_proto="javascript")) == (
        "203.0.113.5",
        None,
    )


@pytest.mark.parametrize(
    "node, address",
    [
        ("192.0.2.43", "192.0.2.43"),
        ("192.0.2.43:47011", "192.0.2.43"),
        ("[2001:db8:cafe::17]", "2001:db8:cafe::17"),
        ("[2001:db8:cafe::17]:4711", "2001:db8:cafe::17"),
        ("2001:db8:cafe::17", "2001:db8:cafe::17"),
        ("::ffff:192.0.2.43", "192.0.2.43"),
        ("unknown", None),
        ("_gazonk", None),
        ("", None),
        ("[2001:db8::1", None),
        ("evil\nforged line", None),
    ],
)
def test_node_addresses(node: str, address: str | None) -> None:
    parsed = parse_address(node)
    assert (str(parsed) if parsed else None) == address


def test_forwarded_elements_pairs_and_quoted_strings() -> None:
    hops = parse_forwarded('for="_a,b;c";proto=HTTPS;by=x, For=192.0.2.60 ;host="example.com", proto=http')
    assert [(hop.node, hop.proto) for hop in hops] == [("_a,b;c", "https"), ("192.0.2.60", None), ("unknown", "http")]


def test_peers_are_trusted_by_network() -> None:
    assert TRUST.is_trusted("10.200.3.4") and TRUST.is_trusted("127.0.0.1") and TRUST.is_trusted("::ffff:10.0.0.1")
    assert not TRUST.is_trusted("127.0.0.2") and not TRUST.is_trusted("::1") and not TRUST.is_trusted("unknown")
