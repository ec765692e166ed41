"""The language of each page: chosen once per request, before the endpoint runs
(``server/i18n.py`` says in what order), and kept for the rest of a sign-in when the
authorization request named it in ``ui_locales``.

Pure ASGI, and nothing at all for the protocol endpoints, which show no page.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import i18n

#: endpoints that answer JSON to programs: no page, no mail in a reader's language
_NO_PAGES = frozenset({"/token", "/introspect", "/revoke", "/userinfo", "/par", "/device/authorize", "/register"})


class LocaleMiddleware:
    def __init__(self, app: ASGIApp, *, default: str, secure: bool) -> None:
        self.app = app
        self.default = default
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _NO_PAGES or path.startswith("/admin/api/"):
            await self.app(scope, receive, send)
            return
        accept_language = cookie = None
        for name, value in scope["headers"]:
            if name == b"accept-language":
                accept_language = value.decode("latin-1")
            elif name == b"cookie":
                cookie = _cookie(value.decode("latin-1"))
        asked = _ui_locales(scope) if path == "/authorize" else None
        locale = i18n.choose(ui_locales=asked, cookie=cookie, accept_language=accept_language, default=self.default)
        remember = asked is not None and locale != cookie and i18n.match(locale) in _matches(asked)
        with i18n.using(locale):
            await self.app(scope, receive, self._remembering(send, locale) if remember else send)

    def _remembering(self, send: Send, locale: str) -> Send:
        """``send``, adding the cookie that keeps ``locale`` for the rest of the sign-in."""
        attributes = "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if self.secure else "")
        header = (b"set-cookie", f"{i18n.COOKIE}={locale}{attributes}".encode("latin-1"))

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        return sending


def _ui_locales(scope: Scope) -> str | None:
    query = scope.get("query_string", b"")
    if b"ui_locales" not in query:
        return None
    values = parse_qs(query.decode("latin-1")).get("ui_locales")
    return values[0][:200] if values else None


def _matches(asked: str) -> set[str | None]:
    return {i18n.match(tag) for tag in asked.split()[:16]}


def _cookie(header: str) -> str | None:
    try:
        jar = SimpleCookie(header)
    except Exception:  # a malformed Cookie header: as if there were none
        return None
    morsel = jar.get(i18n.COOKIE)
    return morsel.value[:16] if morsel is not None else None
