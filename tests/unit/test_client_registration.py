"""The rules a client's metadata must follow at registration, and its secret."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from server.clients.errors import ClientRegistrationError
from server.clients.secrets import new_client_id, new_client_secret, secret_digest, secret_matches
from server.clients.service import _audience, _cors_origin, _grant_types, _redirect_uri, _scopes

# Grant types.


def test_a_supported_grant_type_is_accepted() -> None:
    assert _grant_types(["client_credentials"]) == ("client_credentials",)


def test_grant_types_are_stripped_and_deduplicated() -> None:
    assert _grant_types([" client_credentials ", "client_credentials", ""]) == ("client_credentials",)


@pytest.mark.parametrize("values", [[], [""], ["  "]], ids=["none", "empty", "blank"])
def test_at_least_one_grant_type_is_required(values: list[str]) -> None:
    with pytest.raises(ClientRegistrationError, match="at least one") as caught:
        _grant_types(values)

    assert caught.value.field == "--grant-type"


@pytest.mark.parametrize("grant_type", ["password", "implicit", "Client_Credentials", "bogus"])
def test_an_unsupported_grant_type_is_refused(grant_type: str) -> None:
    with pytest.raises(ClientRegistrationError, match=re.escape(repr(grant_type))) as caught:
        _grant_types(["client_credentials", grant_type])

    assert caught.value.field == "--grant-type"


def test_the_error_message_starts_with_the_option() -> None:
    with pytest.raises(ClientRegistrationError) as caught:
        _grant_types(["password"])

    assert str(caught.value).startswith("--grant-type: ")
    assert isinstance(caught.value, ValueError)


# Scopes (RFC 6749 §3.3).


def test_scopes_are_split_on_spaces_and_deduplicated_in_order() -> None:
    assert _scopes(["read write", "admin", "read"]) == ("read", "write", "admin")


def test_no_scopes_is_allowed() -> None:
    assert _scopes([]) == ()


@pytest.mark.parametrize(
    "scope",
    ["read", "api:read", "https://api.example.com/read", "a!#$%&'()*+,-./:;<=>?@[]^_`{|}~", "x" * 128],
)
def test_a_valid_scope_token_is_accepted(scope: str) -> None:
    assert _scopes([scope]) == (scope,)


@pytest.mark.parametrize(
    "scope",
    ['say"hi"', "back\\slash", "café", "x" * 129, "nul\x00", "del\x7f"],
    ids=["quote", "backslash", "non-ascii", "too-long", "nul", "del"],
)
def test_an_invalid_scope_token_is_refused(scope: str) -> None:
    with pytest.raises(ClientRegistrationError, match="RFC 6749") as caught:
        _scopes(["read", scope])

    assert caught.value.field == "--scope"


# Redirect URIs (RFC 8252 §7, RFC 9700 §2.1).


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb",
        "https://app.example.com:8443/cb?tenant=a",
        "http://127.0.0.1:8080/cb",
        "http://localhost/cb",
        "http://[::1]:8080/cb",
        "com.example.app:/oauth2redirect",
        "com.example.app://callback",
    ],
)
def test_a_valid_redirect_uri_is_accepted(uri: str) -> None:
    assert _redirect_uri(uri) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example.com/cb",
        "http://10.0.0.5/cb",
        "http://localhost.example.com/cb",
        "http://127.0.0.1.example.com/cb",
    ],
)
def test_http_is_refused_unless_the_host_is_loopback(uri: str) -> None:
    with pytest.raises(ClientRegistrationError, match="https") as caught:
        _redirect_uri(uri)

    assert caught.value.field == "--redirect-uri"


@pytest.mark.parametrize("uri", ["https://app.example.com/cb#frag", "https://app.example.com/cb#"])
def test_a_redirect_uri_with_a_fragment_is_refused(uri: str) -> None:
    with pytest.raises(ClientRegistrationError, match="fragment") as caught:
        _redirect_uri(uri)

    assert caught.value.field == "--redirect-uri"


@pytest.mark.parametrize("uri", ["myapp:/cb", "myapp://cb", "javascript:alert(1)", "data:text/html,hi"])
def test_a_private_use_scheme_must_be_a_reverse_domain_name(uri: str) -> None:
    with pytest.raises(ClientRegistrationError, match="RFC 8252") as caught:
        _redirect_uri(uri)

    assert caught.value.field == "--redirect-uri"


@pytest.mark.parametrize(
    "uri",
    [
        "/cb",
        "app.example.com/cb",
        "",
        "https:///cb",
        "https:/cb",
        # urlsplit raises a plain ValueError on a broken IPv6 host: it must still be
        # reported as a registration error naming the option, not escape as a traceback.
        "https://[::1/cb",
    ],
)
def test_a_redirect_uri_must_be_absolute_with_a_host(uri: str) -> None:
    with pytest.raises(ClientRegistrationError) as caught:
        _redirect_uri(uri)

    assert caught.value.field == "--redirect-uri"


# Audiences: resource indicators (RFC 8707 §2).


@pytest.mark.parametrize(
    "value", ["https://api.example.com", "https://api.example.com/v1", "urn:example:resource", "http://localhost:9000"]
)
def test_a_valid_audience_is_accepted(value: str) -> None:
    assert _audience(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "api",
        "/api",
        "",
        "https:",
        "https://api.example.com#part",
        "https://api.example.com/#",
        "https://[::1",
    ],
)
def test_an_audience_must_be_an_absolute_uri_without_a_fragment(value: str) -> None:
    with pytest.raises(ClientRegistrationError) as caught:
        _audience(value)

    assert caught.value.field == "--audience"


# Client secrets and ids.


def test_a_client_secret_holds_256_random_bits() -> None:
    secret = new_client_secret()

    assert len(secret) == 43
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32


def test_client_secrets_and_ids_are_never_repeated() -> None:
    assert len({new_client_secret() for _ in range(50)}) == 50
    assert len({new_client_id() for _ in range(50)}) == 50


def test_a_client_id_is_url_safe() -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", new_client_id())


def test_the_stored_digest_is_sha256_of_the_secret() -> None:
    digest = secret_digest("the secret")

    assert len(digest) == 32
    assert digest == hashlib.sha256(b"the secret").digest()


def test_the_right_secret_matches_its_digest() -> None:
    secret = new_client_secret()

    assert secret_matches(secret, secret_digest(secret))


@pytest.mark.parametrize("presented", ["", "wrong", "the secret ", "The secret"])
def test_a_wrong_secret_does_not_match(presented: str) -> None:
    assert not secret_matches(presented, secret_digest("the secret"))


def test_no_digest_matches_no_secret() -> None:
    assert not secret_matches("the secret", None)
    assert not secret_matches("", None)


# Web origins for CORS (RFC 6454), as a browser sends them in Origin.


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("https://App.Example.COM/", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("https://app.example.com:8443", "https://app.example.com:8443"),
        ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_an_origin_is_kept_as_a_browser_sends_it(given: str, stored: str) -> None:
    assert _cors_origin(given) == stored


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "https://*.example.com",
        "https://app.example.com/path",
        "https://app.example.com?x=1",
        "https://app.example.com#top",
        "https://user@app.example.com",
        "http://app.example.com",
        "app.example.com",
        "ftp://app.example.com",
        "null",
        "https://app.example.com:99999",
    ],
)
def test_anything_but_an_exact_origin_is_refused(origin: str) -> None:
    with pytest.raises(ClientRegistrationError) as caught:
        _cors_origin(origin)
    assert caught.value.field == "--cors-origin"
