"""The look an operator gives the pages and mails: a name, a logo, an accent colour for light
and for dark mode, and an extra stylesheet (``OSTIARY_BRAND_*``).

The casts here parse and check those settings at startup, each raising ``ValueError`` with
a message for the operator (the settings name the variable). A colour is refused when text
in it, or white (light mode) or dark (dark mode) button text on it, would fall below WCAG
2.1 AA's 4.5:1 against the pages' backgrounds; the contrast is WCAG's, from relative
luminance (WCAG 2.1, "contrast ratio" and "relative luminance"). Files are read once, here,
and served from memory.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

#: WCAG 2.1 AA, success criterion 1.4.3: normal text
AA_CONTRAST = 4.5
#: the backgrounds the accent colour sits on (links, the brand line on the card, the admin
#: bar on the page): ostiary.css's ``--card`` and ``--bg``, light and dark
LIGHT_BACKGROUNDS = ("#ffffff", "#f3f5f9")
DARK_BACKGROUNDS = ("#1a2030", "#121621")
#: the text of a primary button, light and dark mode (ostiary.css's ``--accent-ink``): a
#: colour that passes against the backgrounds passes against its button text too
LIGHT_BUTTON_INK = "#ffffff"
DARK_BUTTON_INK = "#10151f"
#: ostiary.css's own accents, used where an operator sets only one mode's colour
DEFAULT_LIGHT = "#2b59c3"
DEFAULT_DARK = "#8fb0ff"

#: where the pages (and mail) find the brand's files, under the issuer
COLORS_PATH = "/static/brand.css"
LOGO_PATH = "/static/brand/logo"
STYLESHEET_PATH = "/static/brand/custom.css"
#: the logo types mail clients show (not SVG, nor WebP in every one)
MAIL_IMAGE_TYPES = ("image/png", "image/jpeg")

MAX_LOGO_BYTES = 256 * 1024
MAX_STYLESHEET_BYTES = 256 * 1024
_SVG = "{http://www.w3.org/2000/svg}svg"
_COLOR = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})")


@dataclass(frozen=True)
class Asset:
    """A file read at startup: its bytes and media type, served from a fixed path."""

    path: Path
    content_type: str
    content: bytes = field(repr=False)

    @property
    def version(self) -> str:
        return version(self.content)


def version(content: bytes) -> str:
    """Short and changing with the content: the pages link a file with ``?v=`` it, so a
    new file is fetched at once though the old one may be cached; and its ETag."""
    return hashlib.sha256(content).hexdigest()[:16]


# Casts.


def name(raw: str) -> str:
    value = raw.strip()
    if not 1 <= len(value) <= 64 or not value.isprintable():
        raise ValueError(f"must be 1 to 64 printable characters, got {raw!r}")
    return value


def logo(raw: str) -> Asset:
    """A PNG, JPEG, WebP or SVG file of at most ``MAX_LOGO_BYTES``, told by its content."""
    path = Path(raw.strip())
    content = _read(path, MAX_LOGO_BYTES)
    content_type = _image_type(content)
    if content_type is None:
        raise ValueError(f"{str(path)!r} is not a PNG, JPEG, WebP or SVG image")
    return Asset(path, content_type, content)


def stylesheet(raw: str) -> Asset:
    """A UTF-8 CSS file of at most ``MAX_STYLESHEET_BYTES``."""
    path = Path(raw.strip())
    content = _read(path, MAX_STYLESHEET_BYTES)
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not UTF-8 text") from None
    return Asset(path, "text/css; charset=utf-8", content)


def light_color(raw: str) -> str:
    """The light-mode accent: AA against the light backgrounds (and so with white text)."""
    return _checked(raw, LIGHT_BACKGROUNDS, "light", "darker")


def dark_color(raw: str) -> str:
    """The dark-mode accent: AA against the dark backgrounds (and so with dark text)."""
    return _checked(raw, DARK_BACKGROUNDS, "dark", "lighter")


def _read(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as file:
            content = file.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if not content:
        raise ValueError(f"{str(path)!r} is empty")
    if len(content) > limit:
        raise ValueError(f"{str(path)!r} is larger than {limit // 1024} KiB")
    return content


def _image_type(content: bytes) -> str | None:
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return "image/svg+xml" if _is_svg(content) else None


def _is_svg(content: bytes) -> bool:
    """An SVG document without a DTD (so without entities to expand)."""
    if b"<!DOCTYPE" in content or b"<!ENTITY" in content:
        return False
    try:
        # the operator's own file, and with no DTD there is no entity to expand or fetch
        root = ElementTree.fromstring(content)  # noqa: S314
    except ElementTree.ParseError:
        return False
    return root.tag == _SVG


def _checked(raw: str, backgrounds: tuple[str, ...], mode: str, advice: str) -> str:
    value = raw.strip().lower()
    if not _COLOR.fullmatch(value):
        raise ValueError(f"must be a colour as #rrggbb, got {raw!r}")
    if len(value) == 4:
        value = "#" + "".join(digit * 2 for digit in value[1:])
    for background in backgrounds:
        ratio = contrast(value, background)
        if ratio < AA_CONTRAST:
            raise ValueError(
                f"{value} on the {mode}-mode background {background} has a contrast of {ratio:.2f}:1, below "
                f"WCAG AA's {AA_CONTRAST}:1: choose a {advice} colour"
            )
    return value


# Colour arithmetic (WCAG 2.1's definitions).


def _channels(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def relative_luminance(color: str) -> float:
    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(channel) for channel in _channels(color))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: str, second: str) -> float:
    """WCAG's contrast ratio of two ``#rrggbb`` colours, from 1 to 21."""
    high, low = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def mix(color: str, other: str, amount: float) -> str:
    """``color`` moved ``amount`` (0 to 1) of the way to ``other``."""
    pairs = zip(_channels(color), _channels(other), strict=True)
    return "#" + "".join(f"{round(a + (b - a) * amount):02x}" for a, b in pairs)


def dark_from_light(color: str) -> str:
    """A dark-mode accent for a light-mode one: the colour lightened, towards white, just
    enough to pass against the dark backgrounds (white itself always does)."""
    for step in range(21):
        candidate = mix(color, "#ffffff", step / 20)
        if all(contrast(candidate, background) >= AA_CONTRAST for background in DARK_BACKGROUNDS):
            return candidate
    return "#ffffff"  # pragma: no cover - the last step is white, which passes


@dataclass(frozen=True)
class Palette:
    """The accent colours of both modes, and the hover shades derived from them: darker in
    light mode, lighter in dark mode, so each moves away from its button text."""

    light: str
    dark: str

    @classmethod
    def of(cls, light: str | None, dark: str | None) -> Palette | None:
        """None when neither mode has a colour of its own (ostiary.css's apply)."""
        if light is None and dark is None:
            return None
        if dark is None:
            dark = dark_from_light(light or DEFAULT_LIGHT)
        return cls(light or DEFAULT_LIGHT, dark)

    def css(self) -> str:
        """The custom properties ostiary.css reads, for both colour schemes."""
        light_hover, dark_hover = mix(self.light, "#000000", 0.15), mix(self.dark, "#ffffff", 0.2)
        return (
            "/* OSTIARY_BRAND_COLOR and OSTIARY_BRAND_COLOR_DARK, over ostiary.css */\n"
            f":root {{ --accent: {self.light}; --accent-hover: {light_hover}; --accent-ink: {LIGHT_BUTTON_INK}; }}\n"
            "@media (prefers-color-scheme: dark) {\n"
            f"  :root {{ --accent: {self.dark}; --accent-hover: {dark_hover}; --accent-ink: {DARK_BUTTON_INK}; }}\n"
            "}\n"
        )
