"""Server-rendered pages: Jinja2 templates, cookies, CSRF tokens and page security headers.

Pages work without JavaScript, and the CSP allows none. Every page that takes input has a
CSRF token (double-submit: an HMAC of the browser cookie); every page is ``no-store``.

Forms post to our own origin only (CSP ``form-action``, which ``default-src`` does not
cover). A page of a sign-in also allows the origin of the redirect URI the sign-in ends
at: Chromium applies ``form-action`` to the redirect that follows a form's POST, and the
last form of a sign-in is answered with a 303 to the client.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .. import i18n
from ..authn.secrets import AddressDigests, CsrfTokens, new_token
from ..settings import Settings
from ..templating import CompiledTemplates
from .branding import Brand

TEMPLATES = Path(__file__).parent / "templates"
_COMPILED = CompiledTemplates()

#: scripts and fetches of our own origin only: the passkey ceremonies (static/passkeys.js)
_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def page_headers(form_action: str = "'self'", image_origin: str | None = None) -> dict[str, str]:
    csp = _CSP.replace("img-src 'self' data:", f"img-src 'self' data: {image_origin}") if image_origin else _CSP
    return {
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Content-Security-Policy": f"{csp}; form-action {form_action}",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }


PAGE_HEADERS = page_headers()
#: the form_post page's one script, allowed by its hash; no character of it is escaped by
#: the template, so the hash holds for what the browser reads
_AUTO_SUBMIT = "document.forms[0].submit()"
_AUTO_SUBMIT_HASH = "'sha256-" + base64.b64encode(hashlib.sha256(_AUTO_SUBMIT.encode()).digest()).decode() + "'"
#: that script and no other, nothing fetched
_FORM_POST_CSP = _CSP.replace("script-src 'self'; connect-src 'self'", f"script-src {_AUTO_SUBMIT_HASH}")

# What a CSP source expression can hold (CSP3 §2.3.1): nothing that could end the directive.
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")


def image_origin(uri: str | None) -> str | None:
    """The origin a client's logo (``logo_uri``) may be loaded from, as a CSP source: an
    http(s) origin only. None for no logo, or one CSP cannot name safely (an IPv6 literal,
    a bare scheme): such a logo is not shown rather than the policy widened to a scheme."""
    if not uri:
        return None
    origin = csp_origin(uri)
    return origin if origin is not None and origin.startswith(("https://", "http://")) else None


def csp_origin(uri: str) -> str | None:
    """``uri``'s origin as a CSP source expression: ``https://host[:port]`` for a web
    address, the bare scheme (``com.example.app:``) for a native app's private-use scheme
    (RFC 8252 §7.1); None when it cannot be written as one (an IPv6 literal host, which
    CSP's grammar has no room for)."""
    try:
        parts = urlsplit(uri)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        return None
    if not _SCHEME.fullmatch(scheme):
        return None
    if scheme not in ("http", "https"):
        return f"{scheme}:"
    if host is None or not _HOST.fullmatch(host):
        return None
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def _image_sources(context: dict[str, Any]) -> str | None:
    """The origins that may serve the page's images beside our own: a client's logo (the
    consent page's ``client_logo``) or several (the account page's ``logos``)."""
    logos = [context.get("client_logo"), *context.get("logos", ())]
    origins = sorted({origin for logo in logos if isinstance(logo, str) and (origin := image_origin(logo))})
    return " ".join(origins) or None


class Pages:
    def __init__(self, settings: Settings, csrf: CsrfTokens) -> None:
        self.settings = settings
        self.csrf = csrf
        #: keyed digests of client addresses (the pending sign-ins of one address are capped)
        self.origins = AddressDigests(csrf.subkey("interaction-origin"))
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), bytecode_cache=_COMPILED
        )
        i18n.install(self.env)
        self.env.globals["password_min_length"] = settings.password_min_length
        self.env.globals["signup"] = settings.signup
        self.env.globals["brand"] = Brand.of(settings)
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
        self,
        template: str,
        context: dict[str, Any],
        *,
        browser: str,
        new_browser: bool,
        status: int = 200,
        client_redirect: str | None = None,
    ) -> Response:
        """The page, with a CSRF token for ``browser``; its forms may lead to our own origin
        and, on a page of a sign-in or sign-out, to the origin of ``client_redirect`` (the
        registered URI where it ends)."""
        html = self.env.get_template(template).render(
            **context, csrf_token=self.csrf.token_for(browser), issuer=self.settings.issuer
        )
        origin = csp_origin(client_redirect) if client_redirect else None
        image = _image_sources(context)
        headers = page_headers(f"'self' {origin}" if origin else "'self'", image) if origin or image else PAGE_HEADERS
        response = HTMLResponse(html, status_code=status, headers=headers)
        if new_browser:
            self._set(response, self.browser_cookie, browser, max_age=None)
        return response

    def plain(self, template: str, context: dict[str, Any], *, status: int = 200) -> Response:
        """A page with no form: no CSRF token, no cookie."""
        html = self.env.get_template(template).render(**context, issuer=self.settings.issuer)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def form_post(self, action: str, fields: Sequence[tuple[str, str]]) -> Response:
        """The authorization response as a form that posts itself to ``action`` (the
        client's redirect URI). Its CSP lets that one script run and that form go to the
        client's origin, and nothing else; a button in ``<noscript>`` does without the script."""
        html = self.env.get_template("form_post.html").render(
            action=action, fields=fields, script=_AUTO_SUBMIT, issuer=self.settings.issuer
        )
        origin = csp_origin(action) or f"{urlsplit(action).scheme}:"
        headers = {
            **PAGE_HEADERS,
            "Content-Security-Policy": f"{_FORM_POST_CSP}; form-action {origin}",
            # no-referrer would make the post's Origin header "null" (Fetch §3.1), which
            # clients that check Origin refuse; this page's URL holds nothing to hide
            "Referrer-Policy": "origin",
        }
        return HTMLResponse(html, headers=headers)

    def redirect(self, location: str, *, status: int = 303) -> Response:
        return RedirectResponse(location, status_code=status, headers={"Cache-Control": "no-store"})

    def error(self, title: str, message: str, status: int = 400) -> Response:
        return self.plain("error.html", {"title": title, "message": message}, status=status)

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
