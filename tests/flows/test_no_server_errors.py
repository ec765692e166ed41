"""No request, however malformed, gets a 5xx answer.

Every route of the app (and the documents answered before routing: ``/jwks`` and the two
discovery documents) is sent GET and POST with a fixed list of odd inputs: malformed
``Authorization`` headers (a non-ASCII byte, bad base64, no colon), garbage cookies,
non-UTF-8 bytes in the query string and the body, repeated parameters, huge values and
bodies, wrong content types, and parameter sets that name our real client, user and
session so that the requests get past the first checks. The requests go over a raw socket
so that bytes httpx would refuse or re-encode reach the server as they are.

The list is fixed (no randomness): a failure names the exact request, and runs repeat.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import pytest
from starlette.routing import Mount, Route

from server.app import create_app
from server.settings import Settings
from server.web.wellknown import DOCUMENTS
from tests.flows.conftest import SignIn
from tests.helpers import create_client
from tests.oidc import REDIRECT_URI, Flow, forms_of

pytestmark = pytest.mark.anyio

HUGE = b"A" * 70_000  # over the default OSTIARY_MAX_BODY_BYTES (64 KiB)
LONG = "x" * 9_000  # over the 8 KiB query string limit of the pages


@dataclass(frozen=True)
class Probe:
    """One odd request: extra headers, a query string and a body (sent with POST only)."""

    name: str
    query: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    content_type: bytes | None = b"application/x-www-form-urlencoded"


@dataclass
class Known:
    """Real identifiers, so that probes reach past "unknown client" and "no session"."""

    rp_id: str
    rp_secret: str
    cc_id: str
    cc_secret: str
    #: a client_credentials client registered to send its secret in the body
    post_id: str
    post_secret: str
    cookies: bytes
    csrf: str
    access_token: str
    refresh_token: str
    id_token: str
    extra: list[Probe] = field(default_factory=list)


def basic(raw: bytes) -> tuple[bytes, bytes]:
    return (b"Authorization", b"Basic " + base64.b64encode(raw))


MALFORMED_AUTHORIZATION = [
    (b"Authorization", b"Basic \xff\xfe"),  # a non-ASCII byte where base64 belongs
    (b"Authorization", b"Basic \xc3\xa9t\xc3\xa9"),  # UTF-8 bytes where base64 belongs
    (b"Authorization", b"Basic !!!!"),  # not base64
    (b"Authorization", b"Basic abc"),  # base64 of the wrong length
    basic(b"no-colon-here"),
    basic(b"\xff\xfe:\xfd"),  # not UTF-8 once decoded
    basic(b"%ff%fe:%fd"),  # not UTF-8 once form-decoded (RFC 6749 2.3.1)
    basic(b":"),
    basic(b"\x00:\x00"),
    (b"Authorization", b"Basic"),
    (b"Authorization", b"Basic "),
    (b"Authorization", b"basic " + base64.b64encode(b"a:b") + b" trailing"),
    (b"Authorization", b"Bearer \xff\xfe"),
    (b"Authorization", b"Bearer a.b.c"),
    (b"Authorization", b"Bearer " + b"e" * 8000),
    (b"Authorization", b"Bearer"),
    (b"Authorization", b'Digest username="x"'),
    (b"Authorization", b"\xff"),
]


def generic_probes() -> Iterator[Probe]:
    for header in MALFORMED_AUTHORIZATION:
        yield Probe(
            f"authorization {header[1][:30]!r}", headers=(header,), body=b"token=abc&grant_type=client_credentials"
        )
    yield Probe("cookie garbage", headers=((b"Cookie", b"ostiary_session=\xff\xfe; ostiary_browser=%ff; ;=;"),))
    yield Probe("cookie huge", headers=((b"Cookie", b"ostiary_session=" + b"s" * 8000),))
    yield Probe("odd accept and origin", headers=((b"Accept", b"\xff/\xfe"), (b"Origin", b"null\xff")))
    yield Probe("forwarded garbage", headers=((b"X-Forwarded-For", b"\xff, not-an-ip"), (b"Forwarded", b"for=\xff")))
    yield Probe("query: non-UTF-8 escapes", query=b"client_id=%ff&redirect_uri=%fe%fd&scope=%c3%28")
    yield Probe("query: raw non-ASCII bytes", query=b"client_id=\xff\xfe&state=\xe9")
    yield Probe("query: control characters", query=b"client_id=%00&state=%0d%0aSet-Cookie:x&nonce=%1b")
    yield Probe("query: repeated", query=b"client_id=a&client_id=b&response_type=code&response_type=token")
    yield Probe("query: no values", query=b"&&=&a&=b&%&%%")
    yield Probe("query: huge", query=b"state=" + LONG.encode())
    yield Probe("body: non-UTF-8 escapes", body=b"grant_type=%ff&token=%fe&username=%c3%28&password=%ff")
    yield Probe("body: raw non-UTF-8 bytes", body=b"grant_type=\xff\xfe&token=\xe9")
    yield Probe("body: control characters", body=b"username=%00&password=%00&token=%0a&csrf_token=%1b")
    yield Probe("body: repeated", body=b"grant_type=client_credentials&grant_type=refresh_token&token=a&token=b")
    yield Probe("body: too many fields", body=b"&".join(b"f%d=1" % i for i in range(2000)))
    yield Probe("body: over the size limit", body=b"token=" + HUGE)
    yield Probe("body: JSON", body=b'{"grant_type": "client_credentials"}', content_type=b"application/json")
    yield Probe("body: multipart", body=b"--x\r\n\r\n--x--", content_type=b"multipart/form-data; boundary=x")
    yield Probe("body: no content type", body=b"grant_type=client_credentials", content_type=None)
    yield Probe("body: odd content type", body=b"a=b", content_type=b"application/x-www-form-urlencoded; charset=\xff")
    yield Probe("body: content type garbage", body=b"a=b", content_type=b"\xff\xfe;;;=")


def parameter_sets(known: Known) -> Iterator[tuple[str, dict[str, str]]]:
    """Parameters of every endpoint at once, with real identifiers and odd values."""
    rp = known.rp_id
    flow = Flow.start(rp)
    yield "authorize: odd values", flow.params(prompt="none login", max_age="-1", ui_locales="\u202e", acr_values="x")
    yield "authorize: huge max_age", flow.params(max_age="9" * 400, login_hint="\U0001f600" * 50)
    yield "authorize: odd claims", flow.params(claims="{not json", id_token_hint="a.b.c", request="x", display="x")
    yield "authorize: odd challenge", flow.params(code_challenge="\u00e9" * 43, code_challenge_method="plain")
    yield "authorize: wrong redirect", flow.params(redirect_uri="https://evil.example/\u00e9", response_mode="x")
    yield "authorize: scope garbage", flow.params(scope="openid \u00e9 \x7f" + "s" * 3000, resource="not a uri")
    yield (
        "token: code",
        {"grant_type": "authorization_code", "code": "\u00e9" * 50, "redirect_uri": REDIRECT_URI, "code_verifier": "v"},
    )
    yield "token: refresh", {"grant_type": "refresh_token", "refresh_token": known.refresh_token + "\u00e9"}
    yield "token: refresh huge", {"grant_type": "refresh_token", "refresh_token": "r" * 20_000, "scope": "openid x"}
    yield (
        "token: post auth",
        {"grant_type": "client_credentials", "client_id": known.post_id, "client_secret": "\u00e9", "scope": "\u00e9"},
    )
    yield (
        "token: resources",
        {"grant_type": "client_credentials", "client_id": known.post_id, "client_secret": known.post_secret,
         "resource": "https://x.example/#frag"},
    )  # fmt: skip
    yield "token: odd grant type", {"grant_type": "urn:\u00e9", "client_id": rp, "assertion": "a.b.c"}
    yield "revoke/introspect: jwt-shaped", {"token": "a.b.c", "token_type_hint": "\u00e9", "client_id": rp}
    yield "revoke/introspect: access token", {"token": known.access_token + "x", "token_type_hint": "access_token"}
    yield "revoke/introspect: id token as token", {"token": known.id_token, "token_type_hint": "refresh_token"}
    yield "logout: odd hint", {"id_token_hint": "a.b.c", "post_logout_redirect_uri": "\u00e9", "client_id": rp}
    yield "logout: real hint, bad uri", {"id_token_hint": known.id_token, "post_logout_redirect_uri": "https://x"}
    yield "pages: odd form", {"csrf_token": known.csrf, "username": "\u00e9" * 300, "password": "p" * 5000}
    yield "pages: odd codes", {"csrf_token": known.csrf, "code": "\u00e9\u00e9", "token": "t" * 3000, "email": "@"}
    yield (
        "pages: account changes",
        {"csrf_token": known.csrf, "current_password": "x", "new_password": "\x00", "decision": "\u00e9",
         "interaction": "\u00e9", "state": "s"},
    )  # fmt: skip
    yield "userinfo: body token", {"access_token": known.access_token + "\u00e9"}


def probes(known: Known) -> Iterator[Probe]:
    yield from generic_probes()
    signed_in = (b"Cookie", known.cookies)
    auth_as = [
        ("rp", basic(f"{quote(known.rp_id, safe='')}:{quote(known.rp_secret, safe='')}".encode())),
        ("cc", basic(f"{quote(known.cc_id, safe='')}:{quote(known.cc_secret, safe='')}".encode())),
        ("bearer", (b"Authorization", b"Bearer " + known.access_token.encode())),
    ]
    for name, params in parameter_sets(known):
        encoded = urlencode(params).encode()
        yield Probe(f"{name} (query, signed in)", query=encoded, headers=(signed_in,))
        yield Probe(f"{name} (body, signed in)", body=encoded, headers=(signed_in,))
        for who, header in auth_as:
            yield Probe(f"{name} (body, as {who})", query=encoded, body=encoded, headers=(header,))


def targets(settings: Settings) -> list[str]:
    """Every path the app answers: its routes, a static file, and the published documents."""
    paths: list[str] = []
    for route in create_app(settings).routes:
        if isinstance(route, Route):
            paths.append(route.path)
        elif isinstance(route, Mount):
            paths.append(route.path + "/ostiary.css")
    return [*dict.fromkeys(paths), *DOCUMENTS]


async def send(port: int, method: str, path: str, probe: Probe) -> bytes:
    """One request over a fresh connection; returns the status line (empty if none came)."""
    body = probe.body if method == "POST" else b""
    target = path.encode() + (b"?" + probe.query if probe.query else b"")
    lines = [b"%s %s HTTP/1.1" % (method.encode(), target), b"Host: 127.0.0.1:%d" % port, b"Connection: close"]
    lines += [b"%s: %s" % header for header in probe.headers]
    if method == "POST":
        if probe.content_type is not None:
            lines.append(b"Content-Type: " + probe.content_type)
        lines.append(b"Content-Length: %d" % len(body))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 30)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def known_values(signin: SignIn) -> Known:
    """Sign alice in to the relying party: a session cookie, a CSRF token and real tokens."""
    tokens = await signin.tokens(Flow.start(signin.rp.client_id), scope="openid profile email")
    cookies = "; ".join(f"{name}={value}" for name, value in signin.http.cookies.items())
    account = await signin.http.get("/account")
    csrf = next((form.fields["csrf_token"] for form in forms_of(account.text) if "csrf_token" in form.fields), "")
    poster = await create_client(signin.live.settings, token_endpoint_auth_method="client_secret_post")
    return Known(
        rp_id=signin.rp.client_id,
        rp_secret=signin.rp.client_secret,
        cc_id=signin.live.client.client_id,
        cc_secret=signin.live.client.client_secret,
        post_id=poster.client_id,
        post_secret=poster.client_secret,
        cookies=cookies.encode(),
        csrf=csrf,
        access_token=tokens["access_token"],
        refresh_token=tokens.get("refresh_token", "r"),
        id_token=tokens["id_token"],
    )


async def test_no_input_gets_a_server_error_on_any_endpoint(signin: SignIn) -> None:
    known = await known_values(signin)
    port = signin.live.settings.port
    failures: list[str] = []
    sent = 0
    for path in targets(signin.live.settings):
        for method in ("GET", "POST"):
            for probe in probes(known):
                status_line = await send(port, method, path, probe)
                sent += 1
                parts = status_line.split(b" ")
                if len(parts) < 2 or not parts[1].isdigit():
                    failures.append(f"{method} {path} [{probe.name}]: no HTTP answer ({status_line!r})")
                elif parts[1].startswith(b"5"):
                    failures.append(f"{method} {path} [{probe.name}]: {status_line.decode().strip()}")
    assert sent > 1000
    assert not failures, f"{len(failures)} of {sent} requests failed:\n" + "\n".join(failures[:60])


@pytest.mark.parametrize(
    "header",
    [
        b"Basic \xff\xfe",
        b"Basic !!!!",
        b"Basic " + base64.b64encode(b"no-colon"),
        b"Basic " + base64.b64encode(b"\xff:x"),
    ],
    ids=["non-ascii byte", "bad base64", "no colon", "not utf-8"],
)
@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
async def test_a_malformed_basic_header_is_invalid_client(signin: SignIn, path: str, header: bytes) -> None:
    """RFC 6749 5.2: 401 invalid_client, with the WWW-Authenticate challenge RFC 9110 15.5.2 requires."""
    port = signin.live.settings.port
    body = b"grant_type=client_credentials" if path == "/token" else b"token=abc"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: %s\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s"
    ) % (path.encode(), header, len(body), body)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), head
    assert b"\r\nwww-authenticate: basic" in head.lower(), head
    assert b'"error":"invalid_client"' in payload
