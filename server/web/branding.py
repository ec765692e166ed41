"""The operator's branding on the pages: what the templates show, and the three files it
adds, each at a fixed path under the issuer and answered from memory.

- ``/static/brand.css``: the accent colours as ostiary.css's custom properties, so the
  pages' CSP stays ``style-src 'self'`` (no inline style).
- ``/static/brand/logo``: ``OSTIARY_BRAND_LOGO``. An SVG is shown only as an ``<img>``,
  where it runs no script; opened by itself, its own CSP keeps it from running any or
  loading anything, and ``sandbox`` gives it an origin of its own.
- ``/static/brand/custom.css``: ``OSTIARY_BRAND_STYLESHEET``, linked after the others.

The pages link each with ``?v=`` and its content's digest, so a changed file shows at once;
the files are cached for a day and revalidated by ETag.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..brand import COLORS_PATH, LOGO_PATH, STYLESHEET_PATH, Asset, Palette, version
from ..settings import Settings

_CACHE = "public, max-age=86400"
_SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
_Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Brand:
    """The branding as the page templates use it (``brand``)."""

    name: str
    #: the logo's path, versioned; None without one
    logo: str | None
    #: the stylesheets to link after ostiary.css (and admin.css), in order
    stylesheets: tuple[str, ...]

    @classmethod
    def of(cls, settings: Settings) -> Brand:
        palette = Palette.of(settings.brand_color, settings.brand_color_dark)
        logo, custom = settings.brand_logo, settings.brand_stylesheet
        sheets = [f"{COLORS_PATH}?v={version(palette.css().encode())}"] if palette is not None else []
        sheets += [f"{STYLESHEET_PATH}?v={custom.version}"] if custom is not None else []
        logo_path = f"{LOGO_PATH}?v={logo.version}" if logo is not None else None
        return cls(name=settings.brand_name, logo=logo_path, stylesheets=tuple(sheets))


def routes(settings: Settings) -> list[BaseRoute]:
    """The routes of the files the settings configure; none for those they do not (404)."""
    found: list[BaseRoute] = []
    palette = Palette.of(settings.brand_color, settings.brand_color_dark)
    if palette is not None:
        css = palette.css().encode()
        found.append(Route(COLORS_PATH, _serve(css, "text/css; charset=utf-8"), methods=["GET", "HEAD"]))
    if settings.brand_logo is not None:
        found.append(Route(LOGO_PATH, _serve_asset(settings.brand_logo), methods=["GET", "HEAD"]))
    if settings.brand_stylesheet is not None:
        found.append(Route(STYLESHEET_PATH, _serve_asset(settings.brand_stylesheet), methods=["GET", "HEAD"]))
    return found


def _serve_asset(asset: Asset) -> _Endpoint:
    extra = {"Content-Security-Policy": _SVG_CSP} if asset.content_type == "image/svg+xml" else {}
    return _serve(asset.content, asset.content_type, extra)


def _serve(content: bytes, content_type: str, extra: dict[str, str] | None = None) -> _Endpoint:
    etag = f'"{version(content)}"'
    headers = {"Cache-Control": _CACHE, "ETag": etag, "X-Content-Type-Options": "nosniff", **(extra or {})}

    async def endpoint(request: Request) -> Response:
        if etag in (tag.strip() for tag in request.headers.get("if-none-match", "").split(",")):
            return Response(status_code=304, headers=headers)
        return Response(content, headers=headers, media_type=content_type)

    return endpoint
