"""``requested_acr``: what ``acr_values`` and the ``claims`` parameter ask of the authentication."""

from __future__ import annotations

import json
from typing import Any

import pytest
from authlib.oauth2.rfc6749.errors import InvalidRequestError

from server.authn.levels import ACR_MFA, ACR_PASSWORD
from server.oauth.acr import NOTHING, AcrRequest, UnmetAuthenticationRequirementsError, requested_acr

REDIRECT_URI = "https://rp.example.com/cb"
UNKNOWN = "urn:example:acr:gold"


def claims(acr: Any) -> str:
    """A ``claims`` parameter asking for ``acr`` in the ID token."""
    return json.dumps({"id_token": {"acr": acr}})


def ask(**data: str) -> AcrRequest:
    return requested_acr(data, REDIRECT_URI)


# acr_values: a voluntary request.


def test_no_parameters_ask_for_nothing() -> None:
    assert ask() == NOTHING
    assert (NOTHING.mfa, NOTHING.essential) == (False, False)


def test_acr_values_of_the_mfa_level_ask_for_it_voluntarily() -> None:
    assert ask(acr_values=ACR_MFA) == AcrRequest(mfa=True, essential=False)
    assert ask(acr_values=f"{UNKNOWN} {ACR_MFA}") == AcrRequest(mfa=True, essential=False)
    assert ask(acr_values=f"  {ACR_MFA}  ") == AcrRequest(mfa=True, essential=False)


@pytest.mark.parametrize("values", [f"{ACR_PASSWORD} {ACR_MFA}", f"{ACR_MFA} {ACR_PASSWORD}", ACR_PASSWORD])
def test_acr_values_a_password_satisfies_ask_for_nothing_more(values: str) -> None:
    assert ask(acr_values=values) == NOTHING


@pytest.mark.parametrize("values", [UNKNOWN, f"{UNKNOWN} urn:example:other", "", "   "])
def test_unknown_or_empty_acr_values_ask_for_nothing(values: str) -> None:
    assert ask(acr_values=values) == NOTHING


def test_acr_values_are_compared_exactly() -> None:
    assert ask(acr_values=ACR_MFA.upper()) == NOTHING
    assert ask(acr_values=ACR_MFA + "x") == NOTHING


# The claims parameter: an essential acr claim is a requirement.


def test_an_essential_acr_claim_of_the_mfa_level_requires_it() -> None:
    request = ask(claims=json.dumps({"id_token": {"acr": {"essential": True, "values": [ACR_MFA]}}}))

    assert request == AcrRequest(mfa=True, essential=True)


def test_the_single_value_form_counts_too() -> None:
    assert ask(claims=claims({"essential": True, "value": ACR_MFA})) == AcrRequest(mfa=True, essential=True)
    assert ask(claims=claims({"value": ACR_MFA})) == AcrRequest(mfa=True, essential=False)


def test_a_voluntary_acr_claim_is_a_voluntary_request() -> None:
    assert ask(claims=claims({"values": [ACR_MFA]})) == AcrRequest(mfa=True, essential=False)
    assert ask(claims=claims({"essential": False, "values": [ACR_MFA]})) == AcrRequest(mfa=True, essential=False)
    # Only the JSON true makes a claim essential.
    assert ask(claims=claims({"essential": "true", "values": [ACR_MFA]})) == AcrRequest(mfa=True, essential=False)


def test_an_essential_claim_a_password_satisfies_asks_for_nothing() -> None:
    for values in ([ACR_PASSWORD], [ACR_MFA, ACR_PASSWORD], [UNKNOWN, ACR_PASSWORD]):
        assert ask(claims=claims({"essential": True, "values": values})) == NOTHING, values


def test_an_essential_claim_with_unknown_values_among_known_ones_is_met() -> None:
    request = ask(claims=claims({"essential": True, "values": [UNKNOWN, ACR_MFA]}))

    assert request == AcrRequest(mfa=True, essential=True)


@pytest.mark.parametrize(
    "acr",
    [
        {"essential": True, "values": [UNKNOWN]},
        {"essential": True, "values": [UNKNOWN, "urn:example:other"]},
        {"essential": True, "value": UNKNOWN},
    ],
)
def test_an_essential_claim_of_unknown_values_only_cannot_be_met(acr: dict[str, Any]) -> None:
    with pytest.raises(UnmetAuthenticationRequirementsError) as caught:
        ask(claims=claims(acr))

    assert caught.value.error == "unmet_authentication_requirements"
    assert caught.value.redirect_uri == REDIRECT_URI
    assert dict(caught.value.get_body())["error"] == "unmet_authentication_requirements"


def test_an_essential_claim_of_unknown_values_cannot_be_met_even_with_acr_values() -> None:
    with pytest.raises(UnmetAuthenticationRequirementsError):
        ask(acr_values=ACR_MFA, claims=claims({"essential": True, "values": [UNKNOWN]}))


def test_a_voluntary_claim_of_unknown_values_asks_for_nothing() -> None:
    assert ask(claims=claims({"values": [UNKNOWN]})) == NOTHING


def test_an_essential_claim_without_values_asks_for_any_level() -> None:
    assert ask(claims=claims({"essential": True})) == NOTHING
    assert ask(claims=claims({"essential": True, "values": []})) == NOTHING


@pytest.mark.parametrize(
    "raw",
    [
        claims(None),
        json.dumps({"id_token": {"auth_time": {"essential": True}}}),
        json.dumps({"id_token": None}),
        json.dumps({"userinfo": {"acr": {"essential": True, "values": [UNKNOWN]}}}),
        "{}",
    ],
)
def test_claims_without_an_acr_request_in_the_id_token_ask_for_nothing(raw: str) -> None:
    assert ask(claims=raw) == NOTHING


def test_acr_values_still_count_beside_claims_without_acr() -> None:
    assert ask(acr_values=ACR_MFA, claims=claims(None)) == AcrRequest(mfa=True, essential=False)
    assert ask(acr_values=ACR_MFA, claims="{}") == AcrRequest(mfa=True, essential=False)


def test_acr_values_and_a_voluntary_claim_together() -> None:
    # A voluntary claim a password satisfies does not cancel acr_values asking for more.
    assert ask(acr_values=ACR_MFA, claims=claims({"values": [ACR_PASSWORD]})) == AcrRequest(mfa=True, essential=False)
    assert ask(acr_values=ACR_PASSWORD, claims=claims({"values": [ACR_MFA]})) == AcrRequest(mfa=True, essential=False)


# A malformed claims parameter is invalid_request, sent to the redirect URI.


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "{",
        '{"id_token": {"acr": {"essential": true,}}}',
        "[]",
        '"id_token"',
        "42",
        "null",
        json.dumps({"id_token": []}),
        json.dumps({"id_token": "acr"}),
        claims([ACR_MFA]),
        claims(ACR_MFA),
        claims(True),
        claims({"values": ACR_MFA}),
        claims({"values": [ACR_MFA, 42]}),
        claims({"values": {"a": ACR_MFA}}),
        claims({"values": None}),
        claims({"value": [ACR_MFA]}),
        claims({"value": 1}),
        claims({"essential": True, "value": None}),
    ],
)
def test_a_malformed_claims_parameter_is_an_invalid_request(raw: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ask(claims=raw)

    assert caught.value.error == "invalid_request"
    assert caught.value.redirect_uri == REDIRECT_URI
    assert caught.value.description


def test_the_error_carries_the_redirect_uri_it_was_given() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        requested_acr({"claims": "not json"}, "https://other.example.com/callback")
    assert caught.value.redirect_uri == "https://other.example.com/callback"

    with pytest.raises(InvalidRequestError) as caught:
        requested_acr({"claims": "[]"}, None)
    assert caught.value.redirect_uri is None


def test_a_deeply_nested_claims_parameter_is_an_invalid_request() -> None:
    # About 1 KB of brackets (3.6 KB in a query string, under its 8 KiB limit): JSON this deep
    # must be refused like any other malformed claims, not end the request in a server error.
    raw = '{"id_token": ' + "[" * 1200

    with pytest.raises(InvalidRequestError) as caught:
        ask(claims=raw)

    assert caught.value.redirect_uri == REDIRECT_URI
