"""Client metadata where it shows, over real HTTP: ``token_endpoint_auth_method`` is the one
way a client may authenticate (at ``/token``, ``/revoke`` and ``/introspect``), and the
consent page shows the client's ``logo_uri`` (its CSP lets that image in, which Chromium
proves by loading it) and links its ``policy_uri`` and ``tos_uri``."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Browser as Chromium, Route

from tests.flows.conftest import Live, SignIn
from tests.helpers import Client, create_client
from tests.oidc import PASSWORD, REDIRECT_URI, Flow, forms_of

pytestmark = pytest.mark.anyio

LOGO = "https://cdn.rp.example.com/brand/logo.png"
POLICY = "https://rp.example.com/privacy"
TOS = "https://rp.example.com/terms"
#: a 1x1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def client_credentials(live: Live, client: Client, method: str) -> httpx.Response:
    form = {"grant_type": "client_credentials"}
    if method == "client_secret_post":
        return await live.http.post(
            "/token", data={**form, "client_id": client.client_id, "client_secret": client.client_secret}
        )
    return await live.http.post("/token", data=form, auth=(client.client_id, client.client_secret))


def refused(response: httpx.Response) -> bool:
    return response.status_code == 401 and response.json()["error"] == "invalid_client"


# token_endpoint_auth_method


@pytest.mark.parametrize("registered", ["client_secret_basic", "client_secret_post"])
async def test_a_client_authenticates_only_as_it_registered(live: Live, registered: str) -> None:
    other = "client_secret_post" if registered == "client_secret_basic" else "client_secret_basic"
    client = await create_client(live.settings, token_endpoint_auth_method=registered)

    assert (await client_credentials(live, client, registered)).status_code == 200
    assert refused(await client_credentials(live, client, other))


async def test_the_default_is_client_secret_basic(live: Live) -> None:
    assert (await client_credentials(live, live.client, "client_secret_basic")).status_code == 200
    assert refused(await client_credentials(live, live.client, "client_secret_post"))


@pytest.mark.parametrize("path", ["/revoke", "/introspect"])
async def test_revocation_and_introspection_take_the_registered_method_too(live: Live, path: str) -> None:
    poster = await create_client(live.settings, token_endpoint_auth_method="client_secret_post", introspection=True)
    access = (await client_credentials(live, poster, "client_secret_post")).json()["access_token"]

    by_post = await live.http.post(
        path, data={"token": access, "client_id": poster.client_id, "client_secret": poster.client_secret}
    )
    by_basic = await live.http.post(path, data={"token": access}, auth=(poster.client_id, poster.client_secret))

    assert by_post.status_code == 200, by_post.text
    assert refused(by_basic)


# The consent page


async def consent_page(signin: SignIn, client_id: str) -> httpx.Response:
    flow = Flow.start(client_id)
    page = await signin.browser.sign_in(await signin.browser.authorize(**flow.params(scope="openid")), "alice")
    assert 'name="decision"' in page.text, page.text
    return page


def img_src(response: httpx.Response) -> list[str]:
    csp = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    return csp["img-src"].split()


async def test_the_consent_page_shows_the_logo_and_links_the_policy_and_terms(signin: SignIn) -> None:
    client = await create_client(
        signin.live.settings,
        name="Photo Prints",
        grant_types=["authorization_code"],
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
        logo_uri=LOGO,
        policy_uri=POLICY,
        tos_uri=TOS,
    )
    page = await consent_page(signin, client.client_id)

    assert f'<img src="{LOGO}"' in page.text
    assert f'<a href="{POLICY}" rel="noopener noreferrer"' in page.text
    assert f'<a href="{TOS}" rel="noopener noreferrer"' in page.text
    assert img_src(page) == ["'self'", "data:", "https://cdn.rp.example.com"]
    assert len(forms_of(page.text)) == 1  # still one form, with its CSRF token
    assert 'id="client-unverified"' not in page.text, "an administrator registered it"


async def test_without_them_the_page_and_its_csp_are_as_before(signin: SignIn) -> None:
    page = await consent_page(signin, signin.rp.client_id)
    assert "<img" not in page.text and "noopener" not in page.text
    assert img_src(page) == ["'self'", "data:"]


async def test_chromium_loads_the_logo_under_the_pages_csp(signin: SignIn, chromium: Chromium) -> None:
    client = await create_client(
        signin.live.settings,
        name="Photo Prints",
        grant_types=["authorization_code"],
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
        logo_uri=LOGO,
        policy_uri=POLICY,
    )
    page = await chromium.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if message.type == "error" else None)
    served: list[str] = []

    async def logo(route: Route) -> None:
        served.append(route.request.url)
        await route.fulfill(status=200, content_type="image/png", body=PNG)

    await page.route("https://cdn.rp.example.com/**", logo)
    flow = Flow.start(client.client_id)
    await page.goto(f"{signin.live.base_url}/authorize?{urlencode(flow.params(scope='openid'))}")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("button[name=decision]")
    loaded = await page.eval_on_selector("img", "img => img.complete && img.naturalWidth")

    assert served == [LOGO]  # the browser asked for it: the CSP let it
    assert loaded == 1
    assert violations == []
    link = page.get_by_role("link", name="Photo Prints's privacy policy")
    assert await link.get_attribute("href") == POLICY
    assert await link.get_attribute("rel") == "noopener noreferrer"
