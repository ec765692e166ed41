"""``response_mode`` at ``/authorize``: ``query`` (the default), ``fragment`` when asked for,
and ``form_post`` (OAuth 2.0 Form Post Response Mode): an auto-submitting form that posts
the response to the redirect URI, under a CSP that lets it go there and nowhere else, and
that works without JavaScript."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from playwright.async_api import Browser as Chromium, Route

from tests.flows.conftest import SignIn
from tests.helpers import create_client
from tests.oidc import PASSWORD, REDIRECT_URI, Flow, forms_of, query_of

pytestmark = pytest.mark.anyio

_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


async def signed_in_page(signin: SignIn, flow: Flow, **extra: str) -> httpx.Response:
    """Sign in and consent; returns the answer to the last step (the authorization response)."""
    page = await signin.browser.authorize(**flow.params(**extra))
    if 'name="password"' in page.text:
        page = await signin.browser.sign_in(page, signin.username)
    if page.status_code == 200 and 'name="decision"' in page.text:
        page = await signin.browser.submit(page, decision="allow")
    return page


def csp_of(response: httpx.Response) -> dict[str, str]:
    directives = (part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    return {name: value for name, value in directives}


async def test_form_post_answers_with_a_form_to_the_redirect_uri_and_no_redirect(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    page = await signed_in_page(signin, flow, response_mode="form_post")
    assert page.status_code == 200, page.text
    assert "location" not in page.headers
    assert page.headers["cache-control"] == "no-store"
    (form,) = forms_of(page.text)
    assert (form.action, form.method.lower()) == (REDIRECT_URI, "post")
    assert set(form.fields) == {"code", "state", "iss"}
    assert form.fields["state"] == flow.state and form.fields["iss"] == signin.live.settings.issuer
    assert "<noscript>" in page.text and "<button" in page.text  # works without JavaScript

    csp = csp_of(page)
    assert csp["form-action"] == "https://rp.example.com"  # that form's target, not even 'self'
    (script,) = _SCRIPT.findall(page.text)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert csp["script-src"] == f"'sha256-{digest}'"  # that script and no other
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert page.headers["referrer-policy"] == "origin"  # the post's Origin is ours, not "null"

    token = await signin.http.post(
        "/token", data=flow.token_form(form.fields["code"]), auth=(signin.rp.client_id, signin.rp.client_secret)
    )
    assert token.status_code == 200, token.text


async def test_form_post_carries_errors_too(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params(response_mode="form_post"))
    page = await signin.browser.sign_in(page, signin.username)
    denied = await signin.browser.submit(page, decision="deny")
    assert denied.status_code == 200, denied.text
    (form,) = forms_of(denied.text)
    assert form.action == REDIRECT_URI
    assert form.fields["error"] == "access_denied" and form.fields["state"] == flow.state
    assert form.fields["iss"] == signin.live.settings.issuer
    assert "code" not in form.fields


async def test_query_stays_the_default_and_fragment_is_given_when_asked_for(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    queried = await signed_in_page(signin, flow)
    assert queried.status_code in (302, 303)
    assert set(query_of(queried.headers["location"])) == {"code", "state", "iss"}

    flow = Flow.start(signin.rp.client_id)
    fragment = await signed_in_page(signin, flow, response_mode="fragment")
    assert fragment.status_code in (302, 303)
    location = urlsplit(fragment.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI and location.query == ""
    params = dict(parse_qsl(location.fragment))
    assert set(params) == {"code", "state", "iss"} and params["state"] == flow.state


async def test_a_request_error_goes_back_in_the_mode_asked_for(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    params = {key: value for key, value in flow.params(response_mode="fragment").items() if key != "code_challenge"}
    refused = await signin.browser.authorize(**params)
    assert refused.status_code in (302, 303), refused.text
    location = urlsplit(refused.headers["location"])
    assert location.query == ""
    error = dict(parse_qsl(location.fragment))
    assert error["error"] == "invalid_request" and error["state"] == flow.state

    flow = Flow.start(signin.rp.client_id)
    params = {key: value for key, value in flow.params(response_mode="form_post").items() if key != "code_challenge"}
    posted = await signin.browser.authorize(**params)
    assert posted.status_code == 200, posted.text
    (form,) = forms_of(posted.text)
    assert form.action == REDIRECT_URI and form.fields["error"] == "invalid_request"


async def test_form_post_to_a_native_apps_scheme_is_refused(signin: SignIn) -> None:
    native = "com.example.prints:/callback"
    app = await create_client(
        signin.live.settings,
        name="Prints for phones",
        grant_types=["authorization_code"],
        scopes=["openid"],
        redirect_uris=[native],
        public=True,
    )
    flow = Flow.start(app.client_id)
    refused = await signin.browser.authorize(
        **flow.params(scope="openid", redirect_uri=native, response_mode="form_post")
    )
    assert refused.status_code in (302, 303), refused.text
    assert refused.headers["location"].startswith(native + "?")
    error = query_of(refused.headers["location"])
    assert error["error"] == "invalid_request" and "form_post" in error["error_description"]


@pytest.mark.parametrize("mode", ["jwt", "query.jwt", "FORM_POST", ""])
async def test_an_unknown_response_mode_is_an_error_sent_by_query(signin: SignIn, mode: str) -> None:
    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params(response_mode=mode))
    assert page.status_code in (302, 303), page.text
    params = query_of(page.headers["location"])
    assert params["error"] == "invalid_request" and params["state"] == flow.state
    assert "response_mode" in params["error_description"]


async def test_discovery_lists_the_response_modes(signin: SignIn) -> None:
    metadata = (await signin.http.get("/.well-known/openid-configuration")).json()
    assert metadata["response_modes_supported"] == ["query", "fragment", "form_post"]


@pytest.mark.parametrize("javascript", [True, False], ids=["script", "no-script"])
async def test_form_post_in_chromium_reaches_the_app(signin: SignIn, chromium: Chromium, javascript: bool) -> None:
    context = await chromium.new_context(java_script_enabled=javascript)
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    posted: dict[str, str] = {}

    async def app(route: Route) -> None:
        request = route.request
        posted.update(method=request.method, body=request.post_data or "", origin=request.headers.get("origin", ""))
        await route.fulfill(status=200, content_type="text/html", body="<title>Back at the app</title>")

    await page.route("https://rp.example.com/**", app)
    flow = Flow.start(signin.rp.client_id)
    await page.goto(f"{signin.live.base_url}/authorize?{urlencode(flow.params(response_mode='form_post'))}")
    await page.get_by_label("Username").fill(signin.username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.click("button[type=submit]")
    await page.click("button[name=decision][value=allow]")
    if not javascript:
        await page.get_by_role("button", name="Continue to the application").click()
    await page.wait_for_url(f"{REDIRECT_URI}**")
    assert await page.title() == "Back at the app"
    assert posted["method"] == "POST"
    assert posted["origin"] == signin.live.base_url  # not "null": the client can check it
    fields = dict(parse_qsl(posted["body"]))
    assert fields["state"] == flow.state and fields["iss"] == signin.live.settings.issuer
    assert problems == []  # no CSP violation: the script ran (or was not needed) and the post was allowed
    token = await signin.http.post(
        "/token", data=flow.token_form(fields["code"]), auth=(signin.rp.client_id, signin.rp.client_secret)
    )
    assert token.status_code == 200, token.text
    await context.close()
