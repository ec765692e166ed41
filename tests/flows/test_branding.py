"""The operator's branding (``OSTIARY_BRAND_*``) over real HTTP: the pages carry the name,
the logo and the stylesheets, each served from its fixed path with its type and caching
headers, the pages' CSP unchanged; the consent page still shows the client's own name and
logo beside it; and a mail carries the name, the colour and the logo."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import brand
from server.settings import Settings
from tests.flows.conftest import Live
from tests.helpers import TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.mail import forgot, mailed_server
from tests.oidc import REDIRECT_URI, Browser, Flow

pytestmark = pytest.mark.anyio

NAME = "Acme Cloud"
COLOR = "#9d174d"
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"><rect width="32" height="32" fill="#9d174d"/>'
    b"<script>alert(1)</script></svg>"
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
CUSTOM = b".brand-name { letter-spacing: 0.05em; }\n"
CLIENT_LOGO = "https://cdn.prints.example.com/logo.png"
#: the pages' own CSP: branding adds files of our origin, never a source
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def branding(tmp_path: Path, logo: bytes) -> dict[str, Any]:
    """The brand settings, read from files the way startup reads them."""
    (tmp_path / "logo").write_bytes(logo)
    (tmp_path / "acme.css").write_bytes(CUSTOM)
    return {
        "brand_name": NAME,
        "brand_logo": brand.logo(str(tmp_path / "logo")),
        "brand_color": brand.light_color(COLOR),
        "brand_stylesheet": brand.stylesheet(str(tmp_path / "acme.css")),
    }


@pytest.fixture
async def branded(database: TestDatabase, tmp_path: Path) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    settings = make_settings(database, tmp_path, **branding(tmp_path, SVG))
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        yield settings, http


def linked(html: str) -> dict[str, str]:
    """The brand files a page links, by path, with their ``?v=``."""
    found = re.findall(r'(?:href|src)="(/static/brand[^"?]*)\?v=(\w+)"', html)
    return dict(found)


async def test_a_page_carries_the_name_logo_and_stylesheets(branded: tuple[Settings, httpx.AsyncClient]) -> None:
    _, http = branded
    home = await http.get("/")
    sign_in = await http.get("/account")

    for page in (home, sign_in):
        assert page.status_code == 200
        assert f"· {NAME}</title>" in page.text
        assert f'<span class="brand-name">{NAME}</span>' in page.text
        assert f"Secured by {NAME}" in page.text
        assert "Ostiary" not in page.text
        assert set(linked(page.text)) == {"/static/brand.css", "/static/brand/logo", "/static/brand/custom.css"}
        assert page.text.index("/static/ostiary.css") < page.text.index("/static/brand.css")
        assert page.text.index("/static/brand.css") < page.text.index("/static/brand/custom.css")
        assert page.headers["content-security-policy"].startswith(PAGE_CSP)
    assert f'<h1 id="page-title">{NAME}</h1>' in home.text
    assert f"to continue to <strong>your {NAME} account</strong>" in sign_in.text


async def test_the_brand_files_are_served_from_fixed_paths_with_caching(
    branded: tuple[Settings, httpx.AsyncClient],
) -> None:
    _, http = branded
    versions = linked((await http.get("/")).text)
    colors = await http.get("/static/brand.css", params={"v": versions["/static/brand.css"]})
    logo = await http.get("/static/brand/logo")
    custom = await http.get("/static/brand/custom.css")

    assert colors.headers["content-type"] == "text/css; charset=utf-8"
    assert f"--accent: {COLOR};" in colors.text and "--accent-ink: #ffffff;" in colors.text
    # the dark scheme gets the colour lightened until it passes on the dark card
    dark = re.search(r"prefers-color-scheme: dark\) \{\s*:root \{ --accent: (#\w{6});", colors.text)
    assert dark is not None and dark.group(1) == brand.dark_from_light(COLOR)
    assert (logo.content, logo.headers["content-type"]) == (SVG, "image/svg+xml")
    assert (custom.content, custom.headers["content-type"]) == (CUSTOM, "text/css; charset=utf-8")
    for response, path in (
        (colors, "/static/brand.css"),
        (logo, "/static/brand/logo"),
        (custom, "/static/brand/custom.css"),
    ):
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "public, max-age=86400"
        assert response.headers["etag"] == f'"{versions[path]}"'
        again = await http.get(path, headers={"If-None-Match": response.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")
        assert (await http.get(path, headers={"If-None-Match": '"stale"'})).status_code == 200
    # opened by itself, the SVG runs no script and loads nothing
    assert logo.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'; sandbox"


async def test_consent_shows_the_clients_name_and_logo_under_the_operators_brand(
    branded: tuple[Settings, httpx.AsyncClient],
) -> None:
    settings, http = branded
    await create_user(settings, "alice")
    client = await create_client(
        settings,
        name="Photo Prints",
        grant_types=["authorization_code"],
        scopes=["openid", "profile"],
        redirect_uris=[REDIRECT_URI],
        logo_uri=CLIENT_LOGO,
    )
    browser = Browser(http)
    sign_in = await browser.authorize(**Flow.start(client.client_id).params(scope="openid profile"))
    assert "to continue to <strong>Photo Prints</strong>" in sign_in.text
    consent = await browser.sign_in(sign_in, "alice")

    assert consent.status_code == 200
    assert '<h1 id="page-title">Allow Photo Prints?</h1>' in consent.text
    assert f'<img src="{CLIENT_LOGO}" alt="Photo Prints logo"' in consent.text
    assert '<img class="brand-logo" src="/static/brand/logo?v=' in consent.text
    assert f"Secured by {NAME}" in consent.text
    assert "img-src 'self' data: https://cdn.prints.example.com;" in consent.headers["content-security-policy"]


async def test_without_branding_no_brand_file_is_linked_or_served(live: Live) -> None:
    home = await live.http.get("/")

    assert linked(home.text) == {}
    assert "<title>Sign-in service · Ostiary</title>" in home.text and "Secured by Ostiary" in home.text
    for path in ("/static/brand.css", "/static/brand/logo", "/static/brand/custom.css"):
        assert (await live.http.get(path)).status_code == 404
    assert (await live.http.get("/static/ostiary.css")).status_code == 200


async def test_a_mail_carries_the_name_colour_and_logo(database: TestDatabase, tmp_path: Path) -> None:
    async with mailed_server(database, tmp_path, **branding(tmp_path, PNG)) as mailed:
        await forgot(mailed.browser(), "alice@example.com")
        (message,) = await mailed.mailbox.wait_for(1)
        html_part = message.get_body(preferencelist=("html",))
        assert html_part is not None
        html = html_part.get_content()
        logo = re.search(r'<img src="([^"]+)"', html)
        assert logo is not None
        served = await mailed.http.get(logo.group(1))

    assert message["From"] == f"{NAME} <no-reply@127.0.0.1>"
    assert f"{NAME}</p>" in html and f"sent by {NAME} at" in html
    assert f"color: {COLOR};" in html
    assert f"background: {COLOR}; color: #ffffff;" in html  # the reset button
    assert "Ostiary" not in html
    assert logo.group(1).startswith(f"{mailed.live.base_url}/static/brand/logo?v=")
    assert (served.status_code, served.headers["content-type"], served.content) == (200, "image/png", PNG)
