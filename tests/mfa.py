"""An authenticator app and account-page steps, for the second-factor tests."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from html import unescape

import httpx
import pyotp

from tests.oidc import PASSWORD, Browser, forms_of

_SECRET = re.compile(r'<code class="secret" id="totp-secret">([A-Z2-7 ]+)</code>')
_CODE = re.compile(r"<li><code>([a-z2-7-]{19})</code></li>")


@dataclass
class Authenticator:
    """An authenticator app: gives the code of a time step the server has not seen yet
    (the server takes each step once, within one step of now), waiting when it must."""

    secret: str
    last_step: int = -1

    async def code(self, lasting: float = 10) -> str:
        """The code of the earliest step not given out yet that the server takes for at
        least ``lasting`` more seconds: the step before now while that much of this step is
        left, else now or the next (both still pass if the server's clock moves on meanwhile).
        Taking the earliest leaves three steps to give out before a test must wait."""
        self.last_step = await self._next_step(lasting)
        return pyotp.TOTP(self.secret).at(self.last_step * 30)

    async def unspent(self, lasting: float = 10) -> str:
        """The code :meth:`code` would give next, not counted as given out: a right code for a
        request the server is to refuse unchecked (if it spent it, the next code() fails)."""
        return pyotp.TOTP(self.secret).at(await self._next_step(lasting) * 30)

    async def _next_step(self, lasting: float) -> int:
        while True:
            now = time.time()
            step = int(now // 30)
            # the server at step S takes S - 1 to S + 1: step s until the end of step s + 1
            for candidate in range(max(self.last_step + 1, step - 1), step + 2):
                if (candidate + 2) * 30 - now >= lasting:
                    return candidate
            # every step up to now + 1 is given out: the next one passes once now reaches last_step
            await asyncio.sleep(max(self.last_step * 30 - now, 0) + 0.05)

    def replay(self) -> str:
        """The code of the last step given out (the server has used it)."""
        return pyotp.TOTP(self.secret).at(self.last_step * 30)

    def wrong(self) -> str:
        """A 6-digit code no step near now has."""
        near = {pyotp.TOTP(self.secret).at(time.time() + k * 30) for k in range(-3, 4)}
        return next(c for c in (f"{n:06d}" for n in range(1000)) if c not in near)


@dataclass
class Enrolled:
    app: Authenticator
    backup_codes: list[str] = field(default_factory=list)


async def sign_in_to_account(browser: Browser, username: str, password: str = PASSWORD) -> httpx.Response:
    """Open /account, signing in with the password when asked; returns the page reached."""
    page = await browser.http.get("/account")
    if 'name="password"' in page.text and "/login" in page.text:
        page = await browser.sign_in(page, username, password)
        assert page.status_code == 303, page.text
        page = await browser.http.get(page.headers["location"])
    return page


async def enrol(browser: Browser, username: str, password: str = PASSWORD) -> Enrolled:
    """Turn TOTP on from the account page; returns the app and the backup codes shown."""
    page = await sign_in_to_account(browser, username, password)
    assert 'id="enrol-form"' in page.text, page.text
    page = await submit_form(browser, page, "/account/totp/start")
    secret = secret_of(page.text)
    app = Authenticator(secret)
    page = await submit_form(browser, page, "/account/totp/confirm", code=await app.code())
    assert page.status_code == 200, page.text
    codes = _CODE.findall(page.text)
    assert len(codes) == 10, page.text
    return Enrolled(app, codes)


def secret_of(html: str) -> str:
    match = _SECRET.search(html)
    assert match, html
    return unescape(match.group(1)).replace(" ", "")


async def submit_form(browser: Browser, page: httpx.Response, action: str, **values: str) -> httpx.Response:
    """Submit the page's form posting to ``action`` with ``values`` filled in."""
    (form,) = [f for f in forms_of(page.text) if f.action == action]
    return await browser.http.post(action, data={**form.fields, **values})


async def change_password_at_account(browser: Browser, new: str, username: str = "alice") -> httpx.Response:
    """``username`` signs in to /account with PASSWORD and changes it to ``new``."""
    page = await sign_in_to_account(browser, username)
    return await submit_form(
        browser, page, "/account/password", current_password=PASSWORD, new_password=new, confirm_password=new
    )
