"""``requested_acr``: what ``acr_values`` asks of the authentication; the ``claims``
parameter is not supported (discovery says ``claims_parameter_supported: false``), so it
asks for nothing, however it is written."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.authn.levels import ACR_MFA, ACR_PASSWORD
from server.signin.acr import NOTHING, AcrRequest, requested_acr

UNKNOWN = "urn:example:acr:gold"


def claims(acr: Any) -> str:
    """A ``claims`` parameter asking for ``acr`` in the ID token."""
    return json.dumps({"id_token": {"acr": acr}})


def ask(**data: str) -> AcrRequest:
    return requested_acr(data)


# acr_values: a voluntary request.


def test_no_parameters_ask_for_nothing() -> None:
    assert ask() == NOTHING
    assert NOTHING.mfa is False


def test_acr_values_of_the_mfa_level_ask_for_it_voluntarily() -> None:
    assert ask(acr_values=ACR_MFA) == AcrRequest(mfa=True)
    assert ask(acr_values=f"{UNKNOWN} {ACR_MFA}") == AcrRequest(mfa=True)
    assert ask(acr_values=f"  {ACR_MFA}  ") == AcrRequest(mfa=True)


@pytest.mark.parametrize("values", [f"{ACR_PASSWORD} {ACR_MFA}", f"{ACR_MFA} {ACR_PASSWORD}", ACR_PASSWORD])
def test_acr_values_a_password_satisfies_ask_for_nothing_more(values: str) -> None:
    assert ask(acr_values=values) == NOTHING


@pytest.mark.parametrize("values", [UNKNOWN, f"{UNKNOWN} urn:example:other", "", "   "])
def test_unknown_or_empty_acr_values_ask_for_nothing(values: str) -> None:
    assert ask(acr_values=values) == NOTHING


def test_acr_values_are_compared_exactly() -> None:
    assert ask(acr_values=ACR_MFA.upper()) == NOTHING
    assert ask(acr_values=ACR_MFA + "x") == NOTHING


# The claims parameter is ignored: an essential acr claim is not a requirement, and a
# malformed one is not an error.


@pytest.mark.parametrize(
    "raw",
    [
        claims({"essential": True, "values": [ACR_MFA]}),
        claims({"essential": True, "value": ACR_MFA}),
        claims({"values": [ACR_MFA]}),
        claims({"essential": True, "values": [UNKNOWN]}),
        "not json",
        "[]",
        '{"id_token": ' + "[" * 1200,
        claims({"value": 1}),
    ],
)
def test_the_claims_parameter_asks_for_nothing(raw: str) -> None:
    assert ask(claims=raw) == NOTHING


def test_acr_values_beside_a_claims_parameter_still_count() -> None:
    assert ask(acr_values=ACR_MFA, claims=claims({"essential": True, "values": [ACR_PASSWORD]})) == AcrRequest(mfa=True)
    assert ask(acr_values=ACR_PASSWORD, claims=claims({"essential": True, "values": [ACR_MFA]})) == NOTHING
