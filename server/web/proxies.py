"""Which address and scheme a request comes from, when trusted reverse proxies forward it.

Without ``OSTIARY_TRUSTED_PROXIES`` the TCP peer is the client and the forwarding headers are
ignored: anyone can send them. With it, a request whose peer is in one of those networks gets
its client address (and scheme) from the forwarding headers, walked from the right: each
trusted proxy appended the address it received the request from, so the entries are believed
from the right-most one leftwards, skipping hops that are themselves trusted proxies, and the
right-most untrusted hop is the client (RFC 7239 §5.2 and §8.1). Anything further left was
written by the client and is never believed.

``X-Forwarded-For`` (and ``X-Forwarded-Proto``) is read when present, else ``Forwarded``
(RFC 7239 §4): the de facto header is the one every common proxy appends, so a ``Forwarded``
header a client sends through such a proxy (which passes it on untouched) is not believed.
All the trusted proxies of one deployment must use the same header.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from ..observe.context import accepted_request_id

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class Hop:
    """One forwarding entry: the node a proxy received the request from, and the scheme
    it was received over when the header says (``proto``, RFC 7239 §5.4)."""

    node: str
    proto: str | None = None


class ProxyTrust:
    """The trusted networks, and where a request forwarded through them comes from."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        # A deployment sees few distinct peers and hops; parsing and matching each once.
        self.is_trusted = functools.lru_cache(maxsize=4096)(self._is_trusted)

    def _is_trusted(self, address: str) -> bool:
        ip = parse_address(address)
        return ip is not None and any(ip in network for network in self.networks)

    def origin(self, headers: Sequence[tuple[bytes, bytes]]) -> tuple[str, str | None] | None:
        """The client address and scheme (None: not said) from the forwarding headers of a
        request whose peer is trusted; None when they name no address to believe."""
        hops = forwarding_hops(headers)
        if not hops:
            return None
        for hop in reversed(hops):
            if parse_address(hop.node) is None:
                # "unknown" or an obfuscated name (RFC 7239 §6): the proxy that wrote it does
                # not know the address, so nothing to its left can be believed either.
                return None
            if not self.is_trusted(hop.node):
                return _normal(hop.node), hop.proto
        # Every hop is a trusted proxy: the request began at the left-most one.
        return _normal(hops[0].node), hops[0].proto


#: the scope key of the X-Request-ID a trusted proxy sent (a plain token, else absent)
FORWARDED_REQUEST_ID = "ostiary.request_id"


class TrustedProxies:
    """Pure ASGI middleware: ``scope["client"]`` (and ``scope["scheme"]``) become those of the
    real client when the peer is a trusted proxy, whose ``X-Request-ID`` is kept for the logs
    (:data:`FORWARDED_REQUEST_ID`). Installed only when proxies are trusted."""

    def __init__(self, app: ASGIApp, *, networks: Iterable[Network]) -> None:
        self.app = app
        self.trust = ProxyTrust(networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            peer = scope.get("client")
            if peer is not None and self.trust.is_trusted(peer[0]):
                _keep_request_id(scope)
                origin = self.trust.origin(scope["headers"])
                if origin is not None:
                    address, scheme = origin
                    scope["client"] = (address, 0)
                    if scheme is not None:
                        scope["scheme"] = scheme
        await self.app(scope, receive, send)


def _keep_request_id(scope: Scope) -> None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            accepted = accepted_request_id(value)
            if accepted is not None:
                scope[FORWARDED_REQUEST_ID] = accepted
            return


def forwarding_hops(headers: Sequence[tuple[bytes, bytes]]) -> list[Hop]:
    """The hops of ``X-Forwarded-For`` (with ``X-Forwarded-Proto``) or else ``Forwarded``,
    left (the first proxy's entry) to right. Repeated header lines form one list (RFC 9110 §5.3)."""
    x_for: list[str] = []
    x_proto: list[str] = []
    forwarded: list[str] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            x_for.append(value.decode("latin-1"))
        elif name == b"x-forwarded-proto":
            x_proto.append(value.decode("latin-1"))
        elif name == b"forwarded":
            forwarded.append(value.decode("latin-1"))
    if x_for:
        return x_forwarded_hops(",".join(x_for), ",".join(x_proto))
    if forwarded:
        return parse_forwarded(",".join(forwarded))
    return []


def x_forwarded_hops(addresses: str, protos: str) -> list[Hop]:
    """``X-Forwarded-For`` entries, each with the ``X-Forwarded-Proto`` entry at the same
    place counted from the right. A proxy that overwrites the scheme rather than appending
    leaves fewer schemes than addresses: the hops beyond them get the left-most scheme,
    the one the outermost proxy that wrote it was reached over."""
    nodes = [item.strip() for item in addresses.split(",")]
    schemes = [item.strip().lower() for item in protos.split(",") if item.strip()]
    hops = []
    for index, node in enumerate(nodes):
        from_right = len(nodes) - 1 - index
        proto = schemes[max(len(schemes) - 1 - from_right, 0)] if schemes else None
        hops.append(Hop(node, proto if proto in _SCHEMES else None))
    return hops


def parse_forwarded(value: str) -> list[Hop]:
    """RFC 7239 §4: comma-separated elements of ``;``-separated ``name=value`` pairs, values
    a token or a quoted-string. Each element is one hop; an element without ``for`` is a hop
    whose address is unknown."""
    hops = []
    for element in _split_outside_quotes(value, ","):
        pairs: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            name, equals, raw = pair.partition("=")
            if equals:
                pairs.setdefault(name.strip().lower(), _unquote(raw.strip()))
        proto = pairs.get("proto", "").lower()
        hops.append(Hop(pairs.get("for", "unknown"), proto if proto in _SCHEMES else None))
    return hops


def parse_address(node: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of a node (RFC 7239 §6: ``192.0.2.1``, ``192.0.2.1:8080``, ``[2001:db8::1]``,
    ``[2001:db8::1]:8080``; a bare IPv6 address as ``X-Forwarded-For`` writes it), or None.
    An IPv4-mapped IPv6 address (a dual-stack socket's peer) is its IPv4 address."""
    text = node.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _normal(node: str) -> str:
    ip = parse_address(node)
    assert ip is not None  # the callers checked
    return str(ip)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def _unquote(value: str) -> str:
    """A quoted-string's content (RFC 9110 §5.6.4), or the token as it is."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out: list[str] = []
        escaped = False
        for char in value[1:-1]:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value
