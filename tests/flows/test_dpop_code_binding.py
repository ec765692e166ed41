"""Authorization codes bound to a DPoP key (RFC 9449 §10) over real HTTP, on SQLite and
PostgreSQL: a push to ``/par`` with a proof, or an authorization request with ``dpop_jkt``,
gives a code that only a proof of that key redeems, and the access token it buys is bound
to that key."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from joserfc.jwk import Key

from tests.flows.conftest import SignIn
from tests.flows.test_dpop import KEY, OTHER, claims_of, dpop_error, proof, thumbprint
from tests.flows.test_par import assert_push_refused, code_through_par, finish, public_client, push, push_form
from tests.flows.test_refresh_tokens import run_sql
from tests.oidc import REDIRECT_URI, Flow, query_of

pytestmark = pytest.mark.anyio

BOUND = "The authorization code is bound to another DPoP key."


async def redeem(signin: SignIn, flow: Flow, code: str, key: Key | None, **extra: str) -> httpx.Response:
    """The code at ``/token`` by the confidential relying party, with a proof of ``key``."""
    headers = {"DPoP": proof(key, "POST", signin.live.settings.endpoint("/token"))} if key is not None else {}
    return await signin.http.post(
        "/token",
        data=flow.token_form(code, **extra),
        headers=headers,
        auth=(signin.rp.client_id, signin.rp.client_secret),
    )


async def push_proved(signin: SignIn, form: dict[str, str], key: Key, htu: str | None = None) -> httpx.Response:
    """``POST /par`` by the confidential relying party, with a proof of ``key`` (for ``htu``,
    by default the endpoint's own URI)."""
    dpop = proof(key, "POST", htu or signin.live.settings.endpoint("/par"))
    return await signin.http.post(
        "/par", data=form, headers={"DPoP": dpop}, auth=(signin.rp.client_id, signin.rp.client_secret)
    )


def refused_as_bound(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "invalid_grant", "error_description": BOUND}


def bound_to(response: httpx.Response, key: Key) -> dict[str, Any]:
    """The token response of a redemption that succeeded, bound to ``key``."""
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": thumbprint(key)}
    return body


async def unconsumed_codes(signin: SignIn) -> list[Any]:
    return await run_sql(signin.live.settings, "SELECT dpop_jkt FROM authorization_codes WHERE consumed_at IS NULL")


async def test_a_push_with_a_proof_binds_the_code_to_its_key(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    pushed = await push_proved(signin, push_form(flow), KEY)
    assert pushed.status_code == 201, pushed.text
    code = await code_through_par(signin, flow, pushed.json()["request_uri"])
    assert await unconsumed_codes(signin) == [(thumbprint(KEY),)]

    # without a proof, or with another key's: refused, and the code is not spent by it
    refused_as_bound(await redeem(signin, flow, code, None))
    refused_as_bound(await redeem(signin, flow, code, OTHER))
    assert await unconsumed_codes(signin) == [(thumbprint(KEY),)]
    assert await run_sql(signin.live.settings, "SELECT id FROM grants") == []

    body = bound_to(await redeem(signin, flow, code, KEY), KEY)
    assert "id_token" in body
    # used once: without the key, a replay gets nothing and revokes nothing (whoever saw
    # the code cannot end the grant); with the key, it is a replay, as for any code
    for key in (None, OTHER):
        keyless = await redeem(signin, flow, code, key)
        assert (keyless.status_code, keyless.json()["error"]) == (400, "invalid_grant"), keyless.text
    assert await run_sql(signin.live.settings, "SELECT revoked_at FROM grants") == [(None,)]
    again = await redeem(signin, flow, code, KEY)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    assert again.json()["error_description"] != BOUND
    ((revoked,),) = await run_sql(signin.live.settings, "SELECT revoked_at FROM grants")
    assert revoked is not None


async def test_a_bound_code_whose_pkce_check_fails_is_spent(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    form = {**push_form(flow), "dpop_jkt": thumbprint(KEY)}  # named and proved: the same key
    pushed = await push_proved(signin, form, KEY)
    assert pushed.status_code == 201, pushed.text
    code = await code_through_par(signin, flow, pushed.json()["request_uri"])
    wrong = await redeem(signin, flow, code, KEY, code_verifier="x" * 43)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant"), wrong.text
    # RFC 6749 §4.1.2: the failed attempt with the right key used the code
    assert await unconsumed_codes(signin) == []
    late = await redeem(signin, flow, code, KEY)
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant"), late.text


async def test_dpop_jkt_at_authorize_binds_a_public_clients_code(signin: SignIn) -> None:
    viewer = await public_client(signin.live)
    token_uri = signin.live.settings.endpoint("/token")
    flow = Flow.start(viewer.client_id)
    page = await signin.browser.authorize(**flow.params(dpop_jkt=thumbprint(KEY)))
    response = await finish(signin, page)
    assert response.status_code in (302, 303), response.text
    code = query_of(response.headers["location"])["code"]
    form = flow.token_form(code, client_id=viewer.client_id)

    for key in (None, OTHER):
        headers = {"DPoP": proof(key, "POST", token_uri)} if key is not None else {}
        refused_as_bound(await signin.http.post("/token", data=form, headers=headers))
    redeemed = await signin.http.post("/token", data=form, headers={"DPoP": proof(KEY, "POST", token_uri)})
    bound_to(redeemed, KEY)

    # a code asked for without dpop_jkt is not bound: redeemed without a proof, as before
    plain_flow = Flow.start(viewer.client_id)
    plain = await finish(signin, await signin.browser.authorize(**plain_flow.params()))
    plain_code = query_of(plain.headers["location"])["code"]
    unbound = await signin.http.post("/token", data=plain_flow.token_form(plain_code, client_id=viewer.client_id))
    assert unbound.status_code == 200, unbound.text
    assert unbound.json()["token_type"] == "Bearer"


async def test_a_dpop_jkt_pushed_without_a_proof_binds_the_code(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    pushed = await push(signin.http, signin.rp, {**push_form(flow), "dpop_jkt": thumbprint(OTHER)})
    assert pushed.status_code == 201, pushed.text
    code = await code_through_par(signin, flow, pushed.json()["request_uri"])
    refused_as_bound(await redeem(signin, flow, code, KEY))
    bound_to(await redeem(signin, flow, code, OTHER), OTHER)


MALFORMED = {
    "too short": thumbprint(KEY)[:42],
    "too long": thumbprint(KEY) + "A",
    "padded": thumbprint(KEY)[:42] + "=",
    "base64, not base64url": "+" + thumbprint(KEY)[1:],
    "empty": "",
    "hex SHA-256": "ab" * 32,
}


async def test_a_mismatched_or_malformed_dpop_jkt_is_refused(signin: SignIn) -> None:
    # RFC 9449 §10.1: a proof of one key beside a dpop_jkt of another
    form = {**push_form(Flow.start(signin.rp.client_id)), "dpop_jkt": thumbprint(OTHER)}
    mismatched = await push_proved(signin, form, KEY)
    dpop_error(mismatched)
    assert mismatched.headers["cache-control"] == "no-store"
    # a proof that does not hold is refused whatever dpop_jkt says
    form = {**push_form(Flow.start(signin.rp.client_id)), "dpop_jkt": thumbprint(KEY)}
    dpop_error(await push_proved(signin, form, KEY, htu=signin.live.settings.endpoint("/token")))

    for case, value in MALFORMED.items():  # one server for every case: each is a request of its own
        flow = Flow.start(signin.rp.client_id)
        try:
            assert_push_refused(
                await push(signin.http, signin.rp, {**push_form(flow), "dpop_jkt": value}), "invalid_request"
            )
            response = await signin.browser.authorize(**flow.params(dpop_jkt=value))
            assert response.status_code == 302, response.text
            assert response.headers["location"].startswith(REDIRECT_URI + "?")
            params = query_of(response.headers["location"])
            assert (params["error"], params["state"]) == ("invalid_request", flow.state)
            assert "dpop_jkt" in params["error_description"]
        except AssertionError as failure:
            raise AssertionError(f"{case}: {failure}") from None
    assert await run_sql(signin.live.settings, "SELECT digest FROM pushed_authorization_requests") == []
