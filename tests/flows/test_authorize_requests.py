"""What the authorization endpoint refuses, and where it says so (RFC 6749 §4.1.2.1, RFC 9207,
RFC 7636, RFC 9700, OIDC Core §3.1.2); ``prompt``, ``max_age`` and ``login_hint``; and the
code exchange's checks at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6).

An error goes back to the client's redirect URI only when the client and that exact
registered URI are known; otherwise the user sees an error page and is never redirected.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import jwt
import pytest

from tests.flows.conftest import Live, SignIn
from tests.flows.test_refresh_tokens import run_sql
from tests.flows.test_sessions_and_logout import disable_user
from tests.helpers import Client, TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.oidc import REDIRECT_URI, Browser, Flow, forms_of, pkce, query_of

pytestmark = pytest.mark.anyio

SCOPES = ["openid", "profile", "email"]

Pairs = list[tuple[str, str]]


# -- helpers ---------------------------------------------------------------------------


def pairs_of(flow: Flow, drop: tuple[str, ...] = (), repeat: Pairs | None = None, **extra: str) -> Pairs:
    """The flow's request parameters, without ``drop``, then the ``repeat`` pairs appended."""
    return [(key, value) for key, value in flow.params(**extra).items() if key not in drop] + (repeat or [])


async def authorize_raw(signin: SignIn, query: str) -> httpx.Response:
    """``GET /authorize?<query>`` with the query sent exactly as given."""
    return await signin.http.get("/authorize?" + query)


async def authorize(signin: SignIn, pairs: Pairs) -> httpx.Response:
    return await authorize_raw(signin, urlencode(pairs))


def assert_error_page(response: httpx.Response) -> None:
    """An error shown to the user, never a redirect to anywhere."""
    assert response.status_code == 400, (response.status_code, response.headers, response.text)
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in response.text
    assert "code=" not in response.text


def assert_error_redirect(
    response: httpx.Response, signin: SignIn, flow: Flow, error: str, status: int = 302
) -> dict[str, str]:
    """An RFC 6749 §4.1.2.1 error at the registered redirect URI, with ``state`` and ``iss``."""
    assert response.status_code == status, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    assert "#" not in location
    params = query_of(location)
    assert params.get("error") == error, params
    assert params["state"] == flow.state
    assert params["iss"] == signin.live.settings.issuer
    assert "code" not in params
    return params


def code_of(response: httpx.Response, flow: Flow) -> str:
    """The code of a successful authorization response."""
    assert response.status_code in (302, 303), (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    params = query_of(location)
    assert "error" not in params, params
    assert params["state"] == flow.state
    return params["code"]


def is_login_page(response: httpx.Response) -> bool:
    return response.status_code == 200 and 'name="password"' in response.text


def is_consent_page(response: httpx.Response) -> bool:
    return response.status_code == 200 and 'name="decision"' in response.text


async def exchange(signin: SignIn, form: dict[str, str], client: Client | None = None) -> httpx.Response:
    """``POST /token`` authenticated with ``client_secret_basic`` (the Photo Prints client by default)."""
    rp = client or signin.rp
    return await signin.http.post("/token", data=form, auth=(rp.client_id, rp.client_secret))


def assert_token_error(response: httpx.Response, error: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert "access_token" not in response.json()


async def userinfo(signin: SignIn, access_token: str) -> httpx.Response:
    return await signin.http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def claims_of(id_token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(id_token, options={"verify_signature": False})
    return claims


def session_cookie(signin: SignIn) -> str | None:
    return signin.http.cookies.get("ostiary_session")


async def abandon_at_consent(signin: SignIn) -> None:
    """Sign in for Photo Prints but leave the consent page unanswered: a session, no consent."""
    page = await signin.browser.authorize(**Flow.start(signin.rp.client_id).params())
    page = await signin.browser.sign_in(page, signin.username)
    assert is_consent_page(page), page.text
    assert session_cookie(signin)


async def register_rp(live: Live, name: str, **options: object) -> Client:
    return await create_client(
        live.settings,
        name=name,
        grant_types=["authorization_code"],
        scopes=SCOPES,
        redirect_uris=[REDIRECT_URI],
        **options,
    )


# -- errors shown as a page, never redirected --------------------------------------------


def _replace(**values: str) -> Callable[[Flow], str]:
    return lambda flow: urlencode(pairs_of(flow, **values))


def _without(name: str) -> Callable[[Flow], str]:
    return lambda flow: urlencode(pairs_of(flow, drop=(name,)))


def _repeated(name: str, value: str | None = None) -> Callable[[Flow], str]:
    def query(flow: Flow) -> str:
        pairs = pairs_of(flow)
        return urlencode([*pairs, (name, value if value is not None else dict(pairs)[name])])

    return query


def _appended(raw: str) -> Callable[[Flow], str]:
    return lambda flow: urlencode(pairs_of(flow)) + raw


PAGE_ERRORS = {
    "unknown client_id": _replace(client_id="no-such-client"),
    "missing client_id": _without("client_id"),
    "empty client_id": _replace(client_id=""),
    "redirect_uri a prefix of the registered one": _replace(redirect_uri="https://rp.example.com/call"),
    "redirect_uri extending the registered path": _replace(redirect_uri="https://rp.example.com/callback/more"),
    "redirect_uri with an added query": _replace(redirect_uri="https://rp.example.com/callback?next=/"),
    "redirect_uri on another port": _replace(redirect_uri="https://rp.example.com:8443/callback"),
    "redirect_uri with a trailing slash": _replace(redirect_uri="https://rp.example.com/callback/"),
    "redirect_uri over http": _replace(redirect_uri="http://rp.example.com/callback"),
    "redirect_uri on another host": _replace(redirect_uri="https://evil.example.com/callback"),
    "missing redirect_uri": _without("redirect_uri"),
    "repeated client_id": _repeated("client_id"),
    "repeated client_id, second unknown": _repeated("client_id", "no-such-client"),
    "repeated redirect_uri": _repeated("redirect_uri"),
    "repeated redirect_uri, second unregistered": _repeated("redirect_uri", "https://evil.example.com/callback"),
    "query over 8 KiB": _appended("&padding=" + "a" * 8192),
    "invalid UTF-8 in a value": _appended("&login_hint=%ff%fe"),
    "invalid UTF-8 in a name": _appended("&%c3%28=x"),
    "NUL in a value": _appended("&login_hint=al%00ice"),
    "NUL in the state": lambda flow: urlencode(pairs_of(flow, drop=("state",))) + "&state=s%00t",
}


@pytest.mark.parametrize("query", PAGE_ERRORS.values(), ids=PAGE_ERRORS.keys())
async def test_errors_that_cannot_be_trusted_to_a_redirect_are_an_error_page(
    signin: SignIn, query: Callable[[Flow], str]
) -> None:
    response = await authorize_raw(signin, query(Flow.start(signin.rp.client_id)))
    assert_error_page(response)


async def test_the_same_requests_with_valid_parameters_are_accepted(signin: SignIn) -> None:
    """The page errors above are caused by the one thing each changes, not by the rest."""
    response = await authorize(signin, pairs_of(Flow.start(signin.rp.client_id)))
    assert is_login_page(response), response.text
    # Up to 4096 bytes of parameters are stored while the request waits for the user.
    pairs = pairs_of(Flow.start(signin.rp.client_id))
    used = sum(len(name) + len(value) for name, value in pairs) + len("padding")
    response = await authorize(signin, [*pairs, ("padding", "a" * (4096 - used))])
    assert is_login_page(response), response.text
    response = await authorize(signin, pairs_of(Flow.start(signin.rp.client_id), login_hint="zoë"))
    assert is_login_page(response), response.text


async def test_an_unsupported_response_type_for_an_unknown_client_is_a_page(signin: SignIn) -> None:
    flow = Flow.start("no-such-client")
    assert_error_page(await authorize(signin, pairs_of(flow, response_type="token")))


# -- errors returned to the registered redirect URI --------------------------------------


def _with(**values: str) -> Callable[[Flow], Pairs]:
    return lambda flow: pairs_of(flow, **values)


def _dropping(name: str) -> Callable[[Flow], Pairs]:
    return lambda flow: pairs_of(flow, drop=(name,))


def _plus(*pairs: tuple[str, str]) -> Callable[[Flow], Pairs]:
    return lambda flow: pairs_of(flow, repeat=list(pairs))


REDIRECT_ERRORS: dict[str, tuple[Callable[[Flow], Pairs], str]] = {
    "missing code_challenge": (_dropping("code_challenge"), "invalid_request"),
    "code_challenge_method=plain": (_with(code_challenge_method="plain"), "invalid_request"),
    "missing code_challenge_method": (_dropping("code_challenge_method"), "invalid_request"),
    "code_challenge too short": (_with(code_challenge="abc"), "invalid_request"),
    "unknown scope": (_with(scope="openid profile photos:delete"), "invalid_scope"),
    # RFC 6749 §4.1.2.1 lists unsupported_response_type among the redirected errors, and
    # docs/decisions.md says so: the client and its redirect URI are valid.
    "response_type=token": (_with(response_type="token"), "unsupported_response_type"),
    "response_type=id_token": (_with(response_type="id_token"), "unsupported_response_type"),
    "repeated scope": (_plus(("scope", "openid")), "invalid_request"),
    "repeated nonce": (_plus(("nonce", "another")), "invalid_request"),
    "repeated code_challenge": (_plus(("code_challenge", pkce()[1])), "invalid_request"),
    "repeated prompt": (_plus(("prompt", "login"), ("prompt", "login")), "invalid_request"),
    "request object": (_with(request="eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9."), "request_not_supported"),
    "request_uri": (_with(request_uri="https://rp.example.com/request.jwt"), "request_uri_not_supported"),
    # fragment and form_post are served (tests/flows/test_response_modes.py)
    "response_mode=jwt": (_with(response_mode="jwt"), "invalid_request"),
    "max_age=abc": (_with(max_age="abc"), "invalid_request"),
    "max_age negative": (_with(max_age="-1"), "invalid_request"),
    # str.isdigit() is true for "²", which int() refuses.
    "max_age a superscript digit": (_with(max_age="²"), "invalid_request"),
    "prompt=none with login": (_with(prompt="none login"), "invalid_request"),
}


@pytest.mark.parametrize(("pairs", "error"), REDIRECT_ERRORS.values(), ids=REDIRECT_ERRORS.keys())
async def test_request_errors_go_back_to_the_registered_redirect_uri_with_state_and_iss(
    signin: SignIn, pairs: Callable[[Flow], Pairs], error: str
) -> None:
    flow = Flow.start(signin.rp.client_id)
    response = await authorize(signin, pairs(flow))
    assert_error_redirect(response, signin, flow, error)
    assert response.headers["cache-control"] == "no-store"


async def test_the_state_comes_back_exactly_whatever_it_holds(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    flow.state = "a b&c=d/é+%?#"
    response = await authorize(signin, pairs_of(flow, drop=("code_challenge",)))
    assert_error_redirect(response, signin, flow, "invalid_request")


async def test_a_request_error_found_for_a_signed_in_user_is_redirected_too(signin: SignIn) -> None:
    await signin.tokens(Flow.start(signin.rp.client_id))
    flow = Flow.start(signin.rp.client_id)
    response = await authorize(signin, pairs_of(flow, drop=("code_challenge",)))
    assert_error_redirect(response, signin, flow, "invalid_request")


async def test_denied_consent_is_access_denied_with_state_and_iss(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.sign_in(await signin.browser.authorize(**flow.params()), signin.username)
    assert is_consent_page(page), page.text
    response = await signin.browser.submit(page, decision="deny")
    assert_error_redirect(response, signin, flow, "access_denied", status=303)
    # Denying remembers nothing: the next request asks again.
    again = await signin.browser.authorize(**Flow.start(signin.rp.client_id).params())
    assert is_consent_page(again), again.text


# -- prompt, max_age, login_hint (OIDC Core §3.1.2.1) -------------------------------------


async def test_prompt_none_without_a_session_is_login_required(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    response = await signin.browser.authorize(**flow.params(prompt="none"))
    assert_error_redirect(response, signin, flow, "login_required")


async def test_prompt_none_with_a_session_but_no_consent_is_consent_required(signin: SignIn) -> None:
    await abandon_at_consent(signin)
    flow = Flow.start(signin.rp.client_id)
    response = await signin.browser.authorize(**flow.params(prompt="none"))
    assert_error_redirect(response, signin, flow, "consent_required")


async def test_prompt_none_with_a_session_and_consent_issues_a_code(signin: SignIn) -> None:
    first = await signin.tokens(Flow.start(signin.rp.client_id))
    flow = Flow.start(signin.rp.client_id)
    response = await signin.browser.authorize(**flow.params(prompt="none"))
    assert response.status_code == 302
    assert query_of(response.headers["location"])["iss"] == signin.live.settings.issuer
    tokens = await exchange(signin, flow.token_form(code_of(response, flow)))
    assert tokens.status_code == 200, tokens.text
    assert claims_of(tokens.json()["id_token"])["sid"] == claims_of(first["id_token"])["sid"]


async def test_prompt_none_with_max_age_exceeded_is_login_required(signin: SignIn) -> None:
    await signin.tokens(Flow.start(signin.rp.client_id))
    flow = Flow.start(signin.rp.client_id)
    response = await signin.browser.authorize(**flow.params(prompt="none", max_age="0"))
    assert_error_redirect(response, signin, flow, "login_required")


async def test_prompt_login_signs_in_again_under_a_new_cookie_in_the_same_session(signin: SignIn) -> None:
    first = await signin.tokens(Flow.start(signin.rp.client_id))
    old_cookie = session_cookie(signin)
    assert old_cookie
    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params(prompt="login"))
    assert is_login_page(page), page.text
    response = await signin.browser.sign_in(page, signin.username)
    code = code_of(response, flow)  # consent is remembered: straight back
    assert session_cookie(signin) not in (None, old_cookie)
    tokens = await exchange(signin, flow.token_form(code))
    assert tokens.status_code == 200, tokens.text
    old, new = claims_of(first["id_token"]), claims_of(tokens.json()["id_token"])
    assert new["auth_time"] >= old["auth_time"]
    # the same person: the session goes on (the ID tokens the apps hold still name it)
    assert new["sid"] == old["sid"]


async def test_prompt_consent_asks_again_although_consent_is_remembered(signin: SignIn) -> None:
    await signin.tokens(Flow.start(signin.rp.client_id))
    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params(prompt="consent"))
    assert is_consent_page(page), page.text
    assert code_of(await signin.browser.submit(page, decision="allow"), flow)


async def test_max_age_zero_always_asks_for_the_password(signin: SignIn) -> None:
    await signin.tokens(Flow.start(signin.rp.client_id))
    for _ in range(2):
        flow = Flow.start(signin.rp.client_id)
        page = await signin.browser.authorize(**flow.params(max_age="0"))
        assert is_login_page(page), page.text
        assert code_of(await signin.browser.sign_in(page, signin.username), flow)


async def test_a_generous_max_age_keeps_a_fresh_session(signin: SignIn) -> None:
    first = await signin.tokens(Flow.start(signin.rp.client_id))
    flow = Flow.start(signin.rp.client_id)
    response = await signin.browser.authorize(**flow.params(max_age="86400"))
    tokens = await exchange(signin, flow.token_form(code_of(response, flow)))
    assert claims_of(tokens.json()["id_token"])["auth_time"] == claims_of(first["id_token"])["auth_time"]


async def test_max_age_older_than_the_session_asks_for_the_password(signin: SignIn) -> None:
    await signin.tokens(Flow.start(signin.rp.client_id))
    await anyio.sleep(2.1)
    page = await signin.browser.authorize(**Flow.start(signin.rp.client_id).params(max_age="1"))
    assert is_login_page(page), page.text


async def test_login_hint_prefills_the_username(signin: SignIn) -> None:
    page = await signin.browser.authorize(**Flow.start(signin.rp.client_id).params(login_hint="bob"))
    assert is_login_page(page), page.text
    (form,) = forms_of(page.text)
    assert form.fields["username"] == "bob"
    assert 'value="bob"' in page.text


async def test_login_hint_is_escaped_in_the_page(signin: SignIn) -> None:
    page = await signin.browser.authorize(**Flow.start(signin.rp.client_id).params(login_hint='"><script>x</script>'))
    assert is_login_page(page), page.text
    assert "<script>x" not in page.text
    (form,) = forms_of(page.text)
    assert form.fields["username"] == '"><script>x</script>'


# -- first-party clients ------------------------------------------------------------------


async def test_a_first_party_client_never_shows_a_consent_page(signin: SignIn) -> None:
    console = await register_rp(signin.live, "Ostiary Console", first_party=True)
    flow = Flow.start(console.client_id)
    page = await signin.browser.authorize(**flow.params())
    assert is_login_page(page), page.text
    response = await signin.browser.sign_in(page, signin.username)
    assert not is_consent_page(response), response.text
    tokens = await exchange(signin, flow.token_form(code_of(response, flow)), client=console)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == "openid profile email"

    flow = Flow.start(console.client_id)
    response = await signin.browser.authorize(**flow.params(prompt="none"))
    assert code_of(response, flow)

    # The same user still has to consent to a third-party client.
    page = await signin.browser.authorize(**Flow.start(signin.rp.client_id).params())
    assert is_consent_page(page), page.text


# -- the code exchange (RFC 6749 §4.1.3, RFC 7636 §4.6) -----------------------------------


async def test_a_wrong_code_verifier_is_invalid_grant(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    code = await signin.code(flow)
    wrong, _ = pkce()
    assert_token_error(await exchange(signin, flow.token_form(code, code_verifier=wrong)), "invalid_grant")
    # Spent by the failed attempt: the right verifier cannot follow.
    assert_token_error(await exchange(signin, flow.token_form(code)), "invalid_grant")


async def test_a_missing_code_verifier_is_invalid_grant_and_spends_the_code(signin: SignIn) -> None:
    # A PKCE downgrade: the code was issued for an S256 code_challenge (RFC 7636 §4.6,
    # RFC 9700 §4.8.2). The code is consumed, so the right verifier cannot follow.
    flow = Flow.start(signin.rp.client_id)
    code = await signin.code(flow)
    form = flow.token_form(code)
    del form["code_verifier"]
    assert_token_error(await exchange(signin, form), "invalid_grant")
    assert_token_error(await exchange(signin, flow.token_form(code)), "invalid_grant")


async def test_a_code_redeemed_twice_fails_and_revokes_the_first_tokens(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    code = await signin.code(flow)
    first = await exchange(signin, flow.token_form(code))
    assert first.status_code == 200, first.text
    access_token = first.json()["access_token"]
    assert (await userinfo(signin, access_token)).status_code == 200

    assert_token_error(await exchange(signin, flow.token_form(code)), "invalid_grant")
    refused = await userinfo(signin, access_token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


@pytest.mark.parametrize("with_refresh", [False, True], ids=["grant only", "with a refresh token"])
async def test_two_exchanges_of_one_code_at_once_issue_once_and_that_grant_is_revoked(
    signin: SignIn, with_refresh: bool
) -> None:
    # Both may read the code as usable; one statement consumes it and inserts the grant,
    # so the other finds it consumed with its grant there to revoke: a replay either way.
    rp = signin.rp
    if with_refresh:
        rp = await create_client(
            signin.live.settings,
            name="Offline Prints",
            grant_types=["authorization_code", "refresh_token"],
            scopes=["openid", "offline_access"],
            redirect_uris=[REDIRECT_URI],
        )
    flow = Flow.start(rp.client_id)
    code = await signin.code(flow, scope="openid offline_access") if with_refresh else await signin.code(flow)
    answers: list[httpx.Response] = []

    async def one() -> None:
        answers.append(await exchange(signin, flow.token_form(code), client=rp))

    async with anyio.create_task_group() as group:
        group.start_soon(one)
        group.start_soon(one)
    assert sorted(answer.status_code for answer in answers) == [200, 400], [a.text for a in answers]
    issued = next(answer for answer in answers if answer.status_code == 200).json()
    assert_token_error(next(answer for answer in answers if answer.status_code == 400), "invalid_grant")
    assert [tuple(row) for row in await run_sql(signin.live.settings, "SELECT revoked_reason FROM grants")] == [
        ("code_replay",)
    ]
    assert (await userinfo(signin, issued["access_token"])).status_code == 401
    assert ("refresh_token" in issued) is with_refresh
    if with_refresh:
        refresh = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
        assert_token_error(await exchange(signin, refresh, client=rp), "invalid_grant")


async def test_the_code_of_a_user_disabled_since_is_refused_and_issues_nothing(signin: SignIn) -> None:
    # On PostgreSQL the statement that consumes the code reads its user too; a disabled
    # user's code is refused, and the transaction leaves no grant and no refresh token.
    flow = Flow.start(signin.rp.client_id)
    code = await signin.code(flow)
    await disable_user(signin.live.settings, signin.username)
    assert_token_error(await exchange(signin, flow.token_form(code)), "invalid_grant")
    assert await run_sql(signin.live.settings, "SELECT id FROM grants") == []
    assert await run_sql(signin.live.settings, "SELECT generation FROM refresh_tokens") == []


async def test_a_code_is_bound_to_the_client_it_was_issued_to(signin: SignIn) -> None:
    other = await register_rp(signin.live, "Other Prints")
    flow = Flow.start(signin.rp.client_id)
    code = await signin.code(flow)

    assert_token_error(await exchange(signin, flow.token_form(code), client=other), "invalid_grant")
    tokens = await exchange(signin, flow.token_form(code))
    assert tokens.status_code == 200, tokens.text

    # Presented by another client after it was redeemed: refused, and not a replay by the
    # client it belongs to, so the real client's grant stays.
    assert_token_error(await exchange(signin, flow.token_form(code), client=other), "invalid_grant")
    info = await userinfo(signin, tokens.json()["access_token"])
    assert info.status_code == 200, info.text


async def test_a_different_redirect_uri_at_the_token_endpoint_is_invalid_grant(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    code = await signin.code(flow)
    form = flow.token_form(code, redirect_uri="https://rp.example.com/callback/")
    assert_token_error(await exchange(signin, form), "invalid_grant")
    form = flow.token_form(code)
    del form["redirect_uri"]
    assert_token_error(await exchange(signin, form), "invalid_grant")


async def test_a_confidential_client_cannot_redeem_its_code_without_its_secret(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    code = await signin.code(flow)
    response = await signin.http.post("/token", data=flow.token_form(code, client_id=signin.rp.client_id))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert (await exchange(signin, flow.token_form(code))).status_code == 200


async def test_a_public_client_completes_the_flow_with_pkce(signin: SignIn) -> None:
    app = await register_rp(signin.live, "Photo Prints Mobile", public=True)
    assert app.client_secret == ""
    flow = Flow.start(app.client_id)
    code = await signin.code(flow)
    response = await signin.http.post("/token", data=flow.token_form(code, client_id=app.client_id))
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert claims_of(tokens["id_token"])["aud"] == app.client_id
    assert claims_of(tokens["id_token"])["nonce"] == flow.nonce
    info = await userinfo(signin, tokens["access_token"])
    assert info.status_code == 200, info.text


async def test_a_public_client_without_code_verifier_gets_no_tokens(signin: SignIn) -> None:
    app = await register_rp(signin.live, "Photo Prints Mobile", public=True)
    flow = Flow.start(app.client_id)
    code = await signin.code(flow)
    form = flow.token_form(code, client_id=app.client_id)
    del form["code_verifier"]
    response = await signin.http.post("/token", data=form)
    assert_token_error(response, "invalid_grant")
    wrong, _ = pkce()
    response = await signin.http.post(
        "/token", data=flow.token_form(code, client_id=app.client_id, code_verifier=wrong)
    )
    assert_token_error(response, "invalid_grant")


@pytest.fixture
async def short_codes(database: TestDatabase, tmp_path: Path) -> AsyncIterator[SignIn]:
    """Like ``signin``, on a server whose codes live 10 s (the lowest OSTIARY_AUTH_CODE_TTL)."""
    settings = make_settings(database, tmp_path, auth_code_ttl=10)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        rp = await create_client(
            settings,
            name="Photo Prints",
            grant_types=["authorization_code"],
            scopes=SCOPES,
            redirect_uris=[REDIRECT_URI],
        )
        await create_user(settings, "alice")
        yield SignIn(Live(settings, base_url, http, rp), rp, "alice", Browser(http))


async def test_an_expired_code_is_invalid_grant(short_codes: SignIn) -> None:
    signin = short_codes
    fresh, stale = Flow.start(signin.rp.client_id), Flow.start(signin.rp.client_id)
    stale_code = await signin.code(stale)
    issued = time.monotonic()
    fresh_code = await signin.code(fresh)
    assert (await exchange(signin, fresh.token_form(fresh_code))).status_code == 200
    await anyio.sleep(11 - (time.monotonic() - issued))
    assert_token_error(await exchange(signin, stale.token_form(stale_code)), "invalid_grant")


# -- the nonce (OIDC Core §3.1.2.1, §15.5.2) ----------------------------------------------


async def test_a_nonce_that_already_produced_a_code_is_refused(signin: SignIn) -> None:
    used = Flow.start(signin.rp.client_id)
    await signin.tokens(used)
    flow = Flow.start(signin.rp.client_id)
    flow.nonce = used.nonce
    response = await signin.browser.authorize(**flow.params())
    assert_error_redirect(response, signin, flow, "invalid_request")


async def test_a_nonce_is_refused_even_when_its_code_was_never_redeemed(signin: SignIn) -> None:
    used = Flow.start(signin.rp.client_id)
    await signin.code(used)
    flow = Flow.start(signin.rp.client_id)
    flow.nonce = used.nonce
    response = await signin.browser.authorize(**flow.params(prompt="none"))
    assert_error_redirect(response, signin, flow, "invalid_request")


async def test_a_nonce_used_with_one_client_does_not_block_another(signin: SignIn) -> None:
    console = await register_rp(signin.live, "Ostiary Console", first_party=True)
    used = Flow.start(signin.rp.client_id)
    await signin.code(used)
    flow = Flow.start(console.client_id)
    flow.nonce = used.nonce
    assert await signin.code(flow)


async def test_a_nonce_is_refused_when_scope_is_omitted_too(signin: SignIn) -> None:
    """An omitted scope grants the registered ones, openid included: an ID token, so the
    nonce must be checked all the same (OIDC Core §15.5.2)."""
    used = Flow.start(signin.rp.client_id)
    await signin.tokens(used)
    flow = Flow.start(signin.rp.client_id)
    flow.nonce = used.nonce
    response = await authorize(signin, pairs_of(flow, drop=("scope",)))
    assert_error_redirect(response, signin, flow, "invalid_request")


async def test_a_nonce_used_while_the_request_waited_for_the_user_is_refused_at_the_end(signin: SignIn) -> None:
    waiting = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**waiting.params())
    assert is_login_page(page), page.text
    racing = Flow.start(signin.rp.client_id)
    racing.nonce = waiting.nonce
    async with httpx.AsyncClient(base_url=signin.live.base_url, timeout=10) as http:
        await SignIn(signin.live, signin.rp, signin.username, Browser(http)).code(racing)
    response = await signin.browser.sign_in(page, signin.username)
    assert_error_redirect(response, signin, waiting, "invalid_request", status=303)
