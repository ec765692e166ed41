"""A server-side web application that signs its users in with Ostiary (OpenID Connect).

The authorization code flow with PKCE (S256) and a client secret, through Authlib's
Starlette client: sign-in, the user's claims (from the ID token and ``/userinfo``), a refresh
with the refresh token, and RP-Initiated Logout 1.0 (``id_token_hint``,
``post_logout_redirect_uri``, ``state``). Tokens stay on the server; the browser holds a
random session id in a cookie.

    WEBAPP_CLIENT_ID=... WEBAPP_CLIENT_SECRET=... python examples/webapp/app.py \\
        [--issuer http://127.0.0.1:8000] [--port 8001]

``examples/webapp/run.sh`` registers the client and runs this in one command.
"""

from __future__ import annotations

import argparse
import html
import os
import secrets
import sys
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn
from authlib.integrations.starlette_client import OAuth, OAuthError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SCOPE = "openid profile email"
COOKIE = "example_webapp_session"  # not one of Ostiary's: cookies are shared by every port of a host


class MemorySessions:
    """Server-side sessions in this process's memory, behind a random id in a cookie
    (HttpOnly, SameSite=Lax; Secure over https). ``request.session`` is the session's dict.

    A handler that *replaces* ``scope["session"]`` gets a new id, the old one forgotten:
    the sign-in does, so an id planted before it is worth nothing afterwards. At most
    ``limit`` sessions are kept (the least recently used go first). One process only:
    several processes need a shared store (Redis, a database) instead.
    """

    def __init__(self, app: ASGIApp, limit: int = 10_000) -> None:
        self.app = app
        self.limit = limit
        self.store: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        old_id = Request(scope).cookies.get(COOKIE)
        session: dict[str, Any] = {}
        if old_id is not None and old_id in self.store:
            session = self.store[old_id]
            self.store.move_to_end(old_id)
        scope["session"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = self._save(scope, old_id)
                if cookie is not None:
                    message.setdefault("headers", []).append((b"set-cookie", cookie.encode("latin-1")))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _save(self, scope: Scope, old_id: str | None) -> str | None:
        """Store the session; the Set-Cookie header value when the id changed."""
        session: dict[str, Any] = scope["session"]
        kept = self.store.get(old_id) if old_id else None
        if session and kept is session:
            return None
        if old_id is not None:
            self.store.pop(old_id, None)
        secure = "; Secure" if scope["scheme"] == "https" else ""
        if not session:
            return f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax{secure}" if old_id else None
        new_id = secrets.token_urlsafe(32)
        self.store[new_id] = session
        while len(self.store) > self.limit:
            self.store.popitem(last=False)
        return f"{COOKIE}={new_id}; Path=/; HttpOnly; SameSite=Lax{secure}"


def page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="en"><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<link rel="stylesheet" href="/style.css"><main><h1>{html.escape(title)}</h1>{body}</main></html>',
        status_code=status,
    )


def claims_table(table_id: str, claims: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>" for name, value in claims.items()
    )
    return f'<table id="{table_id}">{rows}</table>'


def post_button(action: str, label: str, csrf: str) -> str:
    return (
        f'<form method="post" action="{action}"><input type="hidden" name="csrf" value="{html.escape(csrf)}">'
        f"<button>{html.escape(label)}</button></form>"
    )


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%H:%M:%S UTC")


STYLE = """body { font: 16px/1.5 system-ui, sans-serif; margin: 2rem; }
main { max-width: 48rem; } table { border-collapse: collapse; margin-bottom: 1rem; }
th, td { border: 1px solid #ccc; padding: .2rem .6rem; text-align: left; vertical-align: top; word-break: break-all; }
form { display: inline-block; margin-right: .5rem; } .error { color: #a00; }
"""


class WebApp:
    """The pages and actions of the application at ``url``. Redirect URIs are built from
    ``url``, never from the request's Host header, so they are the registered ones whatever
    name the browser used."""

    def __init__(self, ostiary: Any, url: str) -> None:
        self.ostiary = ostiary  # Authlib's client for Ostiary (a StarletteOAuth2App)
        self.url = url

    async def home(self, request: Request) -> Response:
        user = request.session.get("user")
        if user is None:
            return page("Example web app", '<p><a href="/login" id="sign-in">Sign in with Ostiary</a></p>')
        csrf = user["csrf"]
        notice = f'<p id="notice">{html.escape(user["notice"])}</p>' if user.get("notice") else ""
        body = (
            f"{notice}<h2>ID token</h2>{claims_table('id-token', user['id_token_claims'])}"
            f"<h2>/userinfo</h2>{claims_table('userinfo', user['userinfo'])}"
            f'<p id="access-token">Access token expires at {when(user["expires_at"])}; '
            f"refreshed {user['refreshes']} time(s).</p>"
            f"{post_button('/refresh', 'Refresh tokens', csrf)}{post_button('/logout', 'Sign out', csrf)}"
        )
        return page(f"Signed in as {user['userinfo'].get('preferred_username', user['sub'])}", body)

    async def login(self, request: Request) -> Response:
        redirect: Response = await self.ostiary.authorize_redirect(request, self.url + "/callback")
        return redirect

    async def callback(self, request: Request) -> Response:
        try:
            token = await self.ostiary.authorize_access_token(request)
            userinfo = dict(await self.ostiary.userinfo(token=token))
        except OAuthError as error:
            return failure(error)
        id_claims = dict(token["userinfo"])  # Authlib's name for the checked ID token's claims
        user = {"sub": id_claims["sub"], "csrf": secrets.token_urlsafe(32), "refreshes": 0}
        user.update(tokens_of(token), id_token_claims=id_claims, userinfo=userinfo)
        # A new session (and session id) for the signed-in user: nothing from before carries over.
        request.scope["session"] = {"user": user}
        return RedirectResponse("/", status_code=303)

    async def refresh(self, request: Request) -> Response:
        user = await signed_in_form(request)
        if user is None:
            return page("Not signed in", '<p><a href="/">Start again</a></p>', status=403)
        try:
            token = await self.ostiary.fetch_access_token(
                grant_type="refresh_token", refresh_token=user["refresh_token"]
            )
            id_claims = dict(await self.ostiary.parse_id_token(token, nonce=None))
            if id_claims["sub"] != user["sub"]:  # OpenID Connect Core §12.2: the same user
                raise OAuthError(error="invalid_id_token", description="The refreshed ID token names another user.")
            userinfo = dict(await self.ostiary.userinfo(token=token))
        except OAuthError as error:
            # invalid_grant: the family ended (a sign-out in this browser, reuse, revocation)
            request.session.clear()
            return failure(error)
        user.update(tokens_of(token), id_token_claims=id_claims, userinfo=userinfo, refreshes=user["refreshes"] + 1)
        user["notice"] = f"Tokens refreshed at {when(datetime.now(UTC).timestamp())}."
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        user = await signed_in_form(request)
        if user is None:
            return RedirectResponse("/", status_code=303)
        request.session.clear()
        # Ostiary ends its browser session, and with it the refresh tokens issued to it
        # (they were not asked for with offline_access), then sends the browser back here.
        redirect: Response = await self.ostiary.logout_redirect(
            request, post_logout_redirect_uri=self.url + "/signed-out", id_token_hint=user["id_token"]
        )
        return redirect

    async def signed_out(self, request: Request) -> Response:
        try:
            await self.ostiary.validate_logout_response(request)  # the state we sent
        except OAuthError as error:
            return failure(error)
        return page("Signed out", '<p id="signed-out">You are signed out.</p><p><a href="/">Home</a></p>')


async def signed_in_form(request: Request) -> dict[str, Any] | None:
    """The signed-in user of a POST that carries their CSRF token, else None."""
    user: dict[str, Any] | None = request.session.get("user")
    # parsed here: Starlette's request.form() needs python-multipart, which Ostiary does not install
    sent = parse_qs((await request.body()).decode("utf-8", "replace")).get("csrf", [""])[0]
    if user is None or not secrets.compare_digest(sent.encode(), user["csrf"].encode()):
        return None
    return user


async def style(request: Request) -> Response:
    return Response(STYLE, media_type="text/css")


def create_app(issuer: str, client_id: str, client_secret: str, url: str) -> Starlette:
    """The web application at ``url`` for one client registered at ``issuer``."""
    oauth = OAuth()
    oauth.register(
        "ostiary",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=issuer + "/.well-known/openid-configuration",
        # Authlib makes the code_verifier, keeps it in the session with state and nonce, and
        # checks the ID token (signature against jwks_uri, iss, aud, exp, nonce, at_hash).
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256"},
    )
    web = WebApp(oauth.create_client("ostiary"), url)
    app = Starlette(
        routes=[
            Route("/", web.home),
            Route("/login", web.login),
            Route("/callback", web.callback),
            Route("/refresh", web.refresh, methods=["POST"]),
            Route("/logout", web.logout, methods=["POST"]),
            Route("/signed-out", web.signed_out),
            Route("/style.css", style),
        ]
    )
    app.add_middleware(MemorySessions)
    app.add_middleware(SecurityHeaders, form_targets=["'self'", "{0.scheme}://{0.netloc}".format(urlsplit(issuer))])
    return app


def tokens_of(token: dict[str, Any]) -> dict[str, Any]:
    """What the session keeps of a token response. Access tokens are opaque to clients:
    their lifetime comes from ``expires_in`` (Authlib turns it into ``expires_at``)."""
    return {
        "access_token": token["access_token"],
        "refresh_token": token["refresh_token"],
        "id_token": token["id_token"],
        "expires_at": token["expires_at"],
    }


def failure(error: OAuthError) -> Response:
    message = f"{error.error}: {error.description}" if error.description else str(error.error)
    body = f'<p class="error" id="error">{html.escape(message)}</p><p><a href="/">Home</a></p>'
    return page("Sign-in failed", body, status=400)


class SecurityHeaders:
    """A strict Content-Security-Policy (no script at all; forms post here, and the sign-out
    form's redirect goes on to Ostiary, which ``form-action`` covers too) and friends."""

    def __init__(self, app: ASGIApp, form_targets: Iterable[str]) -> None:
        self.app = app
        policy = (
            "default-src 'none'; style-src 'self'; base-uri 'none'; frame-ancestors 'none'; "
            f"form-action {' '.join(form_targets)}"
        )
        self.headers = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-store"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend(self.headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--issuer", default=os.environ.get("OSTIARY_ISSUER", "http://127.0.0.1:8000"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--url", help="where browsers reach the app (default: http://HOST:PORT)")
    args = parser.parse_args(argv)
    url = (args.url or f"http://{args.host}:{args.port}").rstrip("/")
    client_id, client_secret = os.environ.get("WEBAPP_CLIENT_ID"), os.environ.get("WEBAPP_CLIENT_SECRET")
    if not client_id or not client_secret:
        sys.exit("set WEBAPP_CLIENT_ID and WEBAPP_CLIENT_SECRET (examples/webapp/run.sh registers a client)")
    print(f"Example web app on {url}/ (issuer {args.issuer})", flush=True)
    uvicorn.run(create_app(args.issuer.rstrip("/"), client_id, client_secret, url), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
