"""A branded sign-in page in headless Chromium, light and dark: the operator's logo shows,
the accent colours and the extra stylesheet apply, nothing breaks the page's CSP, and
axe-core still finds no WCAG 2.1 A or AA violation (colour contrast included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser as Chromium

from server import brand
from tests.flows.test_admin_console_in_browser import watch
from tests.flows.test_pages_everywhere_in_browser import _axe, _boundaries
from tests.helpers import TestDatabase, make_settings, serve_in_process
from tests.pages import LOOKS, Look

pytestmark = pytest.mark.anyio

COLOR = "#9d174d"
LOGO = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
    b'<rect width="64" height="64" rx="12" fill="#9d174d"/><circle cx="32" cy="32" r="14" fill="#fff"/></svg>'
)
#: something the browser's computed style shows, that nothing else on the page sets
CUSTOM = b".brand-name { text-transform: uppercase; }\n"
DESKTOP = [look for look in LOOKS if look.device == "desktop"]


@pytest.fixture
async def base_url(database: TestDatabase, tmp_path: Path) -> AsyncIterator[str]:
    (tmp_path / "logo.svg").write_bytes(LOGO)
    (tmp_path / "acme.css").write_bytes(CUSTOM)
    settings = make_settings(
        database,
        tmp_path,
        brand_name="Acme Cloud",
        brand_logo=brand.logo(str(tmp_path / "logo.svg")),
        brand_color=brand.light_color(COLOR),
        brand_stylesheet=brand.stylesheet(str(tmp_path / "acme.css")),
    )
    async with serve_in_process(settings) as url:
        yield url


def rgb(color: str) -> str:
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


@pytest.mark.parametrize("look", DESKTOP, ids=[look.name for look in DESKTOP])
async def test_a_branded_sign_in_page_is_accessible(base_url: str, chromium: Chromium, look: Look) -> None:
    context = await look.context(chromium)
    page = await context.new_page()
    console = watch(page)
    try:
        await page.goto(base_url + "/account")
        await page.wait_for_selector("input[name=password]")
        logo_width = await page.eval_on_selector("img.brand-logo", "img => img.complete && img.naturalWidth")
        button = await page.eval_on_selector("button[type=submit]", "b => getComputedStyle(b).backgroundColor")
        link = await page.eval_on_selector("#forgot-password", "a => getComputedStyle(a).color")
        case = await page.eval_on_selector(".brand-name", "name => getComputedStyle(name).textTransform")
        problems = await _axe(page) + await _boundaries(page)
    finally:
        await context.close()

    accent = COLOR if look.scheme == "light" else brand.dark_from_light(COLOR)
    assert accent != (brand.DEFAULT_LIGHT if look.scheme == "light" else brand.DEFAULT_DARK)
    assert problems == []
    assert logo_width == 64
    assert button == link == rgb(accent)
    assert case == "uppercase"
    assert console == []  # no CSP violation, no stylesheet or image that failed to load
