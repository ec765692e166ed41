"""Client credentials from a Basic header (RFC 6749 §2.3.1) and the Authlib view of a client."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.clients.secrets import secret_digest
from server.oauth.clients import OAuthClient
from server.oauth.request import basic_credentials
from server.storage.clients import StoredClient

SECRET = "s3cret-value-of-the-test-client"
REDIRECT_URI = "https://app.example.com/cb"


def basic(raw: bytes | str) -> str:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return "Basic " + base64.b64encode(data).decode("ascii")


# basic_credentials().


def test_a_basic_header_gives_the_client_id_and_secret() -> None:
    assert basic_credentials(basic("client-1:" + SECRET)) == ("client-1", SECRET)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("my%20client:se%3Acret", ("my client", "se:cret")),
        ("my+client:a+b%2Bc", ("my client", "a b+c")),
        ("client%3Aid:secret", ("client:id", "secret")),
        ("%C3%BCber:p%C3%A4ss", ("über", "päss")),
        ("client%25:100%25", ("client%", "100%")),
    ],
)
def test_the_client_id_and_secret_are_form_urldecoded(raw: str, expected: tuple[str, str]) -> None:
    assert basic_credentials(basic(raw)) == expected


def test_the_secret_may_hold_an_unencoded_colon() -> None:
    assert basic_credentials(basic("client:a:b:c")) == ("client", "a:b:c")


def test_an_empty_secret_is_still_credentials() -> None:
    assert basic_credentials(basic("client:")) == ("client", "")


@pytest.mark.parametrize("scheme", ["basic", "BASIC", "bAsIc"])
def test_the_scheme_is_case_insensitive(scheme: str) -> None:
    header = basic("client:" + SECRET).replace("Basic", scheme, 1)

    assert basic_credentials(header) == ("client", SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Bearer " + base64.b64encode(b"client:secret").decode(),
        "Digest username=client",
        "Basic !!!not-base64!!!",
        "Basic Y2xpZW50OnNlY3JldA",  # "client:secret" without its padding
        basic(b"\xff\xfe:\xfd"),
        basic("client-without-a-colon"),
        # Starlette decodes header bytes as Latin-1: a non-ASCII byte arrives as a character
        "Basic \xff\xfe",
        "Basic \u00e9" + base64.b64encode(b"client:secret").decode(),
        basic("client%00:secret"),
        basic("client:sec\nret"),
        basic("\x7f:secret"),
    ],
    ids=[
        "missing",
        "empty",
        "scheme-only",
        "scheme-and-space",
        "bearer",
        "digest",
        "bad-base64",
        "unpadded-base64",
        "not-utf8",
        "no-colon",
        "non-ascii-bytes",
        "non-ascii-before-base64",
        "encoded-nul",
        "control-character",
        "delete-character",
    ],
)
def test_a_missing_or_malformed_header_gives_none(header: str | None) -> None:
    assert basic_credentials(header) is None


# OAuthClient over a stored snapshot.


def make_client(**changes: Any) -> OAuthClient:
    stored = StoredClient(
        client_id="client-1",
        name="Test client",
        secret_digest=secret_digest(SECRET),
        grant_types=("client_credentials",),
        scopes=("read", "write", "admin"),
        redirect_uris=(REDIRECT_URI, "https://app.example.com/other"),
        audiences=(),
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
        disabled_at=None,
    )
    return OAuthClient(dataclasses.replace(stored, **changes))


@pytest.mark.parametrize("scope", [None, "", "   "])
def test_an_omitted_or_blank_scope_grants_every_registered_scope(scope: str | None) -> None:
    assert make_client().get_allowed_scope(scope) == "read write admin"


@pytest.mark.parametrize(
    ("scope", "granted"),
    [
        ("read", "read"),
        ("write read", "write read"),
        ("admin  read", "admin read"),
        ("read read write read", "read write"),
        ("read write admin", "read write admin"),
    ],
)
def test_registered_scopes_are_granted_in_request_order_without_duplicates(scope: str, granted: str) -> None:
    assert make_client().get_allowed_scope(scope) == granted


@pytest.mark.parametrize("scope", ["delete", "read delete", "Read", "read:all", "read,write"])
def test_any_unregistered_scope_refuses_the_whole_request(scope: str) -> None:
    assert make_client().get_allowed_scope(scope) is None


def test_a_client_without_scopes_is_granted_none_it_asks_for() -> None:
    assert make_client(scopes=()).get_allowed_scope("read") is None


def test_a_registered_redirect_uri_matches() -> None:
    client = make_client()

    assert client.check_redirect_uri(REDIRECT_URI)
    assert client.check_redirect_uri("https://app.example.com/other")


@pytest.mark.parametrize(
    "uri",
    [
        REDIRECT_URI + "/",
        REDIRECT_URI + "/extra",
        REDIRECT_URI + "?x=1",
        REDIRECT_URI + "#x",
        "https://app.example.com/c",
        "https://app.example.com",
        "HTTPS://app.example.com/cb",
        "https://APP.example.com/cb",
        "http://app.example.com/cb",
        "https://app.example.com:443/cb",
        "",
    ],
)
def test_a_redirect_uri_matches_only_exactly(uri: str) -> None:
    assert not make_client().check_redirect_uri(uri)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_confidential_client_authenticates_with_its_registered_method_only(method: str) -> None:
    client = make_client(token_endpoint_auth_method=method)
    other = "client_secret_post" if method == "client_secret_basic" else "client_secret_basic"

    for endpoint in ("token", "revocation", "introspection"):
        assert client.check_endpoint_auth_method(method, endpoint)
        assert not client.check_endpoint_auth_method(other, endpoint)


@pytest.mark.parametrize("method", ["none", "private_key_jwt", "client_secret_jwt", "tls_client_auth"])
def test_a_confidential_client_may_not_use_another_method(method: str) -> None:
    assert not make_client().check_endpoint_auth_method(method, "token")


def test_a_public_client_may_only_use_none() -> None:
    public = make_client(secret_digest=None, token_endpoint_auth_method="none")

    assert public.is_public
    assert public.check_endpoint_auth_method("none", "token")
    assert not public.check_endpoint_auth_method("client_secret_basic", "token")
    assert not public.check_endpoint_auth_method("client_secret_post", "token")
    assert not public.check_endpoint_auth_method("private_key_jwt", "token")


def test_a_private_key_jwt_client_is_confidential_and_may_only_use_its_keys() -> None:
    keyed = make_client(secret_digest=None, token_endpoint_auth_method="private_key_jwt")

    assert not keyed.is_public
    assert keyed.check_endpoint_auth_method("private_key_jwt", "token")
    for method in ("none", "client_secret_basic", "client_secret_post"):
        assert not keyed.check_endpoint_auth_method(method, "introspection")


def test_the_client_secret_is_checked_against_the_digest() -> None:
    client = make_client()

    assert client.check_client_secret(SECRET)
    assert not client.check_client_secret(SECRET + "x")
    assert not client.check_client_secret("")
    assert not make_client(secret_digest=None).check_client_secret(SECRET)


def test_a_replaced_secret_is_accepted_only_until_its_overlap_ends() -> None:
    old, new = "the-old-secret", "the-new-secret"
    rotated = {"secret_digest": secret_digest(new), "previous_secret_digest": secret_digest(old)}
    now = datetime.now(UTC)

    overlapping = make_client(**rotated, previous_secret_expires_at=now + timedelta(minutes=5))
    ended = make_client(**rotated, previous_secret_expires_at=now - timedelta(seconds=1))
    without_end = make_client(**rotated, previous_secret_expires_at=None)

    assert overlapping.check_client_secret(new) and overlapping.check_client_secret(old)
    assert ended.check_client_secret(new) and not ended.check_client_secret(old)
    assert without_end.check_client_secret(new) and not without_end.check_client_secret(old)
    assert not overlapping.check_client_secret("neither")


def test_only_registered_grant_types_are_allowed() -> None:
    client = make_client()

    assert client.check_grant_type("client_credentials")
    assert not client.check_grant_type("authorization_code")
    assert not client.check_grant_type("password")


def test_basic_credentials_with_an_escape_that_is_not_utf8_are_refused() -> None:
    header = "Basic " + base64.b64encode(b"client%FF:secret").decode()
    assert basic_credentials(header) is None
