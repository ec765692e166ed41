"""Server-rendered pages: Jinja2 templates, cookies, CSRF tokens and page security headers.

Pages work without JavaScript, and the CSP allows none. Every page that takes input has a
CSRF token (double-submit: an HMAC of the browser cookie); every page is ``no-store``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..authn.secrets import CsrfTokens, new_token
from ..settings import Settings

TEMPLATES = Path(__file__).parent / "templates"

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class Pages:
    def __init__(self, settings: Settings, csrf: CsrfTokens) -> None:
        self.settings = settings
        self.csrf = csrf
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
        self.env.globals["password_min_length"] = settings.password_min_length
        prefix = "__Host-" if settings.secure_cookies else ""
        self.session_cookie = prefix + "ostiary_session"
        self.browser_cookie = prefix + "ostiary_browser"
        self.device_cookie = prefix + "ostiary_device"

    def browser_token(self, request: Request) -> tuple[str, bool]:
        """The browser's random binding token; (token, True) when it was just made."""
        existing = request.cookies.get(self.browser_cookie)
        if existing and 20 <= len(existing) <= 128:
            return existing, False
        return new_token(), True

    def session_token(self, request: Request) -> str | None:
        return request.cookies.get(self.session_cookie)

    def render(
        self, template: str, context: dict[str, Any], *, browser: str, new_browser: bool, status: int = 200
    ) -> Response:
        html = self.env.get_template(template).render(
            **context, csrf_token=self.csrf.token_for(browser), issuer=self.settings.issuer
        )
        response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
        if new_browser:
            self._set(response, self.browser_cookie, browser, max_age=None)
        return response

    def redirect(self, location: str, *, status: int = 303) -> Response:
        return RedirectResponse(location, status_code=status, headers={"Cache-Control": "no-store"})

    def error(self, title: str, message: str, status: int = 400) -> Response:
        html = self.env.get_template("error.html").render(title=title, message=message, issuer=self.settings.issuer)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def set_session(self, response: Response, token: str) -> None:
        self._set(response, self.session_cookie, token, max_age=self.settings.session_ttl)

    def set_browser(self, response: Response, token: str) -> None:
        self._set(response, self.browser_cookie, token, max_age=None)

    def set_device(self, response: Response, value: str) -> None:
        """The known-device cookie (a year): this browser signed in as this user before."""
        self._set(response, self.device_cookie, value, max_age=365 * 86400)

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(
            self.session_cookie, path="/", secure=self.settings.secure_cookies, httponly=True, samesite="lax"
        )

    def _set(self, response: Response, name: str, value: str, *, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.settings.secure_cookies,
            httponly=True,
            samesite="lax",
        )
