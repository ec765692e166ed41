"""Every user-facing page in headless Chromium, on a phone (390×844) and a desktop (1280×800),
in light and dark: axe-core finds no WCAG 2.1 A or AA violation (colour contrast included),
the boundaries of controls and the focus ring stand out at 3:1, and no page breaks its CSP.
And the defects of issue 24 stay fixed: a backup code never wraps, the TOTP secret is a
tappable ``otpauth://`` link (the QR code's URI), the forgotten-password page leads back to
its sign-in, and the sign-out page can be left signed in.

The pages are the same whatever the database: one server on SQLite for the module, one
browser context per look, each walking the pages with its own users (tests/pages.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser as Chromium, Page

from server.mfa import totp
from tests.flows.conftest import ARTIFACTS
from tests.flows.test_admin_console_in_browser import watch
from tests.helpers import TestDatabase, make_settings, serve_in_process
from tests.pages import LOOKS, SETTINGS, Look, Site, register, walk

pytestmark = pytest.mark.anyio

#: WCAG 2.1 A and AA, and nothing else; the contrast rule among them (checked on each page)
WCAG_21_AA = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations", "incomplete"],
}
#: how many pages a walk shows: a page left out of the walk is a page left unchecked
PAGES = 38


@pytest.fixture(scope="module")
async def site(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """One Ostiary for the module's tests, on a copy of the migrated SQLite template."""
    directory = tmp_path_factory.mktemp("pages")
    database = directory / "ostiary.db"
    database.write_bytes(sqlite_template.read_bytes())
    settings = make_settings(TestDatabase("sqlite", f"sqlite+aiosqlite:///{database}"), directory, **SETTINGS)
    async with serve_in_process(settings) as base_url:
        yield await register(settings, base_url)


@pytest.mark.parametrize("look", LOOKS, ids=[look.name for look in LOOKS])
async def test_every_page_is_accessible_and_keeps_its_fixes(site: Site, chromium: Chromium, look: Look) -> None:
    context = await look.context(chromium)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    console = watch(page)
    problems: list[str] = []
    seen: list[str] = []

    async def shown(name: str, page: Page) -> None:
        seen.append(name)
        found = await _axe(page) + await _boundaries(page)
        check = CHECKS.get(name)
        if check is not None:
            found += await check(page, look)
        if found:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"page-{name}-{look.name}.png"), full_page=True)
            problems.extend(f"{name} ({look.name}, {page.url}): {problem}" for problem in found)

    try:
        await walk(site, page, look.name, shown)
    finally:
        await context.close()
    assert problems == [], "\n".join(problems)
    assert len(seen) == len(set(seen)) == PAGES, seen
    assert console == []  # no CSP violation, no stylesheet or image that failed to load


# -- on every page --------------------------------------------------------------------------


_STYLED = """() => new Promise((done) => {
  const loaded = Array.from(document.querySelectorAll("link[rel=stylesheet]")).every((link) => link.sheet !== null);
  if (!loaded) return done(false);
  // two frames: the styles are applied and the autofocus, run when rendering, has taken place
  requestAnimationFrame(() => requestAnimationFrame(() => done(true)));
})"""


async def _styled(page: Page) -> None:
    """Wait until the page's stylesheets have loaded and it has been rendered with them.

    A page's elements can be found before its stylesheet arrives; read then, a control sits
    on no background at all and the focus ring is the browser's own (1.10:1 on black)."""
    await page.wait_for_function(_STYLED)


async def _axe(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations; contrast it could not decide counts too, and
    the contrast rule must have run."""
    await _styled(page)
    results = (await Axe().run(page, options=WCAG_21_AA)).response
    ran = {rule["id"] for kind in ("passes", "violations", "incomplete") for rule in results[kind]}
    problems = [] if "color-contrast" in ran else ["axe-core did not run its color-contrast rule"]
    for rule in results["violations"]:
        problems += [f"{rule['id']}: {node['failureSummary']} at {node['target']}" for node in rule["nodes"]]
    for rule in results["incomplete"]:
        if rule["id"] == "color-contrast":
            problems += [
                f"contrast undecided at {node['target']}: {node['any']}"
                for node in rule["nodes"]
                # a glyph with no letters (the brand's ◆) has no text contrast to decide
                if not any(check.get("data", {}).get("messageKey") == "nonBmp" for check in node["any"])
            ]
    return problems


_BOUNDARIES = """() => {
  const rgb = (text) => {
    const [r, g, b, a = 1] = text.match(/[\\d.]+/g).map(Number);
    return { r, g, b, a };
  };
  const luminance = ({ r, g, b }) => {
    const f = (v) => ((v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const ratio = (x, y) => {
    const [hi, lo] = [luminance(x), luminance(y)].sort((p, q) => q - p);
    return (hi + 0.05) / (lo + 0.05);
  };
  const behind = (element) => {
    for (let node = element.parentElement; node; node = node.parentElement) {
      const colour = rgb(getComputedStyle(node).backgroundColor);
      if (colour.a > 0) return colour;
    }
    return rgb(getComputedStyle(document.documentElement).backgroundColor);
  };
  const name = (element) => element.tagName.toLowerCase() + (element.id ? "#" + element.id : "")
    + (element.className ? "." + element.className.split(" ").join(".") : "");
  const problems = [];
  const controls = document.querySelectorAll("input:not([type=hidden]), button, a.button");
  for (const control of controls) {
    if (control.getClientRects().length === 0) continue;
    const style = getComputedStyle(control);
    const around = behind(control);
    const fill = rgb(style.backgroundColor);
    const border = rgb(style.borderTopColor);
    const best = Math.max(
      fill.a > 0 ? ratio(fill, around) : 1,
      border.a > 0 && parseFloat(style.borderTopWidth) > 0 ? ratio(border, around) : 1,
    );
    if (best < 3) problems.push(`${name(control)} stands out ${best.toFixed(2)}:1 from what is around it`);
  }
  const focused = document.activeElement;
  if (focused && focused !== document.body) {
    const style = getComputedStyle(focused);
    const ring = style.outlineStyle === "none" ? 0 : ratio(rgb(style.outlineColor), behind(focused));
    if (ring < 3) problems.push(`the focus ring of ${name(focused)} is ${ring.toFixed(2)}:1`);
  }
  return problems;
}"""


async def _boundaries(page: Page) -> list[str]:
    """WCAG 1.4.11 (axe-core does not check it): every input and button stands out 3:1 from
    the card around it, by its fill or its border, and so does the keyboard's focus ring."""
    await _styled(page)
    await page.keyboard.press("Tab")
    problems: list[str] = await page.evaluate(_BOUNDARIES)
    return problems


# -- the defects of issue 24 ------------------------------------------------------------------

_ONE_LINE = """(selector) => Array.from(document.querySelectorAll(selector)).flatMap((code) => {
  const box = code.getBoundingClientRect();
  const card = code.closest("main");
  const inner = card.getBoundingClientRect().right - parseFloat(getComputedStyle(card).paddingRight);
  const line = parseFloat(getComputedStyle(code).lineHeight);
  const pieces = code.getClientRects().length;
  const problems = [];
  if (pieces !== 1 || Math.abs(box.height - line) > 1)
    problems.push(`${code.textContent} is ${box.height}px high in ${pieces} pieces, a line is ${line}px`);
  if (box.right > inner + 0.5) problems.push(`${code.textContent} sticks out of the card by ${box.right - inner}px`);
  return problems;
})"""


async def _on_one_line(page: Page, look: Look, selector: str, count: int) -> list[str]:
    """Each of the ``count`` codes is one line in the card, at this width and, on a phone,
    at the narrowest one WCAG's reflow asks for (320 px)."""
    assert await page.locator(selector).count() == count
    problems: list[str] = await page.evaluate(_ONE_LINE, selector)
    if look.device == "phone":
        await page.set_viewport_size({"width": 320, "height": look.height})
        problems += [f"at 320 px: {problem}" for problem in await page.evaluate(_ONE_LINE, selector)]
        await page.set_viewport_size({"width": look.width, "height": look.height})
    return problems


async def _backup_codes(page: Page, look: Look) -> list[str]:
    return await _on_one_line(page, look, "#backup-codes code", 10)


async def _device_code(page: Page, look: Look) -> list[str]:
    return await _on_one_line(page, look, "#device-user-code", 1)


async def _otpauth_link(page: Page, look: Look) -> list[str]:
    """A link to the otpauth:// URI the QR code encodes, named for what it does."""
    link = page.get_by_role("link", name="Add this account to an authenticator app on this device")
    assert await link.count() == 1
    href = await link.get_attribute("href")
    assert href is not None and href.startswith("otpauth://totp/"), href
    shown_secret = (await page.inner_text("#totp-secret")).replace(" ", "")
    assert parse_qs(urlsplit(href).query)["secret"] == [shown_secret]
    # the QR code on the page is the one this URI makes, module for module
    (expected,) = re.findall(r'class="qrline"[^>]* d="([^"]+)"', totp.qr_svg(href))
    assert await page.locator("figure.qr svg path.qrline").get_attribute("d") == expected
    return []


async def _reachable(page: Page, selector: str) -> bool:
    """Tabbing from the top of the page reaches ``selector``."""
    await page.locator("h1").click()
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await page.evaluate("(selector) => document.activeElement.matches(selector)", selector):
            return True
    return False


async def _back_to_the_sign_in(page: Page, look: Look) -> list[str]:
    """Opened from a sign-in page: the link leads back to that sign-in (the walk follows it
    and finishes that sign-in at the application)."""
    assert await page.locator("#back-to-sign-in").count() == 1
    href = await page.get_attribute("#back-to-sign-in", "href")
    assert href is not None and re.fullmatch(r"/login\?interaction=[\w-]+", href), href
    assert await page.inner_text("#back-to-sign-in") == "Back to sign in"
    assert await _reachable(page, "#back-to-sign-in")
    return []


async def _back_to_the_plain_sign_in(page: Page, look: Look) -> list[str]:
    """Opened on its own: the link leads to the account's sign-in."""
    assert await page.locator("#back-to-sign-in").count() == 1
    assert await page.get_attribute("#back-to-sign-in", "href") == "/account"
    assert await _reachable(page, "#back-to-sign-in")
    return []


async def _stay_signed_in(page: Page, look: Look) -> list[str]:
    """The sign-out page's cancel goes to /account (the walk follows it, still signed in)."""
    assert await page.locator("#cancel-sign-out").count() == 1
    assert await page.get_attribute("#cancel-sign-out", "href") == "/account"
    assert await page.inner_text("#cancel-sign-out") == "Stay signed in"
    assert await _reachable(page, "#cancel-sign-out")
    return []


CHECKS: dict[str, Callable[[Page, Look], Awaitable[list[str]]]] = {
    "backup-codes": _backup_codes,
    "device-confirm": _device_code,
    "totp-enrol": _otpauth_link,
    "totp-enrol-error": _otpauth_link,
    "password-forgot": _back_to_the_sign_in,
    "password-forgot-sent": _back_to_the_plain_sign_in,
    "sign-out": _stay_signed_in,
}
