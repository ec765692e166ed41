"""``OSTIARY_BRAND_*``: the name, logo, colours and extra stylesheet, checked at startup
(every problem named by its variable), and what the page and mail templates make of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server import brand
from server.authn.secrets import CsrfTokens
from server.mail.messages import Messages
from server.settings import Settings, SettingsError
from server.signin.steps import account_name
from server.web.pages import Pages

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>'
CSS = Path(__file__).resolve().parents[2] / "server" / "web" / "static" / "ostiary.css"


def problems(environ: dict[str, str]) -> dict[str, str]:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    return dict(caught.value.problems)


def file(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


# The contrast arithmetic is WCAG's.


@pytest.mark.parametrize(
    ("first", "second", "ratio"),
    [
        ("#000000", "#ffffff", 21.0),
        ("#ffffff", "#ffffff", 1.0),
        ("#767676", "#ffffff", 4.54),  # the classic lightest grey that passes AA on white
        ("#777777", "#ffffff", 4.48),  # and the next one, which does not
        ("#2b59c3", "#ffffff", 6.33),
    ],
)
def test_contrast_is_wcags_ratio_of_relative_luminances(first: str, second: str, ratio: float) -> None:
    assert brand.contrast(first, second) == pytest.approx(ratio, abs=0.005)
    assert brand.contrast(second, first) == pytest.approx(ratio, abs=0.005)


def test_the_backgrounds_checked_are_the_stylesheets_own() -> None:
    light, dark = CSS.read_text(encoding="utf-8").split("@media (prefers-color-scheme: dark)", 1)

    def value(block: str, variable: str) -> str:
        match = re.search(rf"{variable}: (#[0-9a-f]{{6}});", block)
        assert match is not None, variable
        return match.group(1)

    assert (value(light, "--card"), value(light, "--bg")) == brand.LIGHT_BACKGROUNDS
    assert (value(dark, "--card"), value(dark, "--bg")) == brand.DARK_BACKGROUNDS
    assert (value(light, "--accent"), value(light, "--accent-ink")) == (brand.DEFAULT_LIGHT, brand.LIGHT_BUTTON_INK)
    assert (value(dark, "--accent"), value(dark, "--accent-ink")) == (brand.DEFAULT_DARK, brand.DARK_BUTTON_INK)
    # the built-in accents pass the check an operator's colour must pass
    assert brand.light_color(brand.DEFAULT_LIGHT) == brand.DEFAULT_LIGHT
    assert brand.dark_color(brand.DEFAULT_DARK) == brand.DEFAULT_DARK


# Valid values.


def test_no_branding_is_ostiarys_own() -> None:
    settings = Settings.from_env({})

    assert settings.brand_name == "Ostiary"
    assert settings.brand_logo is settings.brand_stylesheet is settings.brand_color is None
    assert settings.sender_address == "Ostiary <no-reply@127.0.0.1>"
    assert settings.authenticator_issuer == "Ostiary"
    assert brand.Palette.of(None, None) is None


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp"), (SVG, "image/svg+xml")],
)
def test_a_logo_is_typed_by_its_content(tmp_path: Path, content: bytes, content_type: str) -> None:
    settings = Settings.from_env({"OSTIARY_BRAND_LOGO": file(tmp_path, "logo.bin", content)})

    assert settings.brand_logo is not None
    assert settings.brand_logo.content_type == content_type
    assert settings.brand_logo.content == content


def test_the_brand_settings_are_read(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "OSTIARY_BRAND_NAME": " Acme: Cloud ",
            "OSTIARY_BRAND_COLOR": "#9D174D",
            "OSTIARY_BRAND_COLOR_DARK": "#fbcfe8",
            "OSTIARY_BRAND_STYLESHEET": file(tmp_path, "acme.css", b".brand { letter-spacing: 0; }"),
        }
    )

    assert settings.brand_name == "Acme: Cloud"
    assert (settings.brand_color, settings.brand_color_dark) == ("#9d174d", "#fbcfe8")
    assert settings.brand_stylesheet is not None
    assert settings.brand_stylesheet.content_type == "text/css; charset=utf-8"
    assert settings.sender_address == '"Acme: Cloud" <no-reply@127.0.0.1>'
    # authenticator apps split their label at a colon
    assert settings.authenticator_issuer == "Acme Cloud"
    assert Settings.from_env({"OSTIARY_TOTP_ISSUER": "Acme IT"}).authenticator_issuer == "Acme IT"


def test_a_short_colour_is_written_out() -> None:
    assert brand.light_color("#A00") == "#aa0000"


def test_a_dark_colour_is_derived_from_the_light_one_just_bright_enough() -> None:
    light = "#9d174d"
    dark = brand.dark_from_light(light)

    assert all(brand.contrast(dark, background) >= 4.5 for background in brand.DARK_BACKGROUNDS)
    assert brand.dark_color(dark) == dark
    # one step (5 %) less white would not pass: as close to the operator's colour as can be
    step_back = brand.mix(light, "#ffffff", _mixed(light, dark) - 0.05)
    assert min(brand.contrast(step_back, background) for background in brand.DARK_BACKGROUNDS) < 4.5
    assert brand.Palette.of(light, None) == brand.Palette(light, dark)
    assert brand.Palette.of(None, "#fbcfe8") == brand.Palette(brand.DEFAULT_LIGHT, "#fbcfe8")


def _mixed(light: str, dark: str) -> float:
    """How far towards white ``dark`` is from ``light`` (by the first channel that moved)."""
    for start, end in zip(brand._channels(light), brand._channels(dark), strict=True):
        if start != 255:
            return (end - start) / (255 - start)
    raise AssertionError("white")


def test_the_palette_sets_the_variables_of_both_schemes_with_hovers_away_from_the_button_text() -> None:
    css = brand.Palette("#9d174d", "#fbcfe8").css()
    light, dark = css.split("@media (prefers-color-scheme: dark)")

    assert "--accent: #9d174d;" in light and "--accent-ink: #ffffff;" in light
    assert "--accent: #fbcfe8;" in dark and "--accent-ink: #10151f;" in dark
    light_hover = re.search(r"--accent-hover: (#\w{6})", light)
    dark_hover = re.search(r"--accent-hover: (#\w{6})", dark)
    assert light_hover is not None and dark_hover is not None
    assert brand.contrast(light_hover.group(1), "#ffffff") > brand.contrast("#9d174d", "#ffffff")
    assert brand.contrast(dark_hover.group(1), "#10151f") > brand.contrast("#fbcfe8", "#10151f")


# Invalid values: each refused at startup, by the name of its variable.


def test_every_bad_brand_setting_is_reported_by_its_variable(tmp_path: Path) -> None:
    found = problems(
        {
            "OSTIARY_BRAND_NAME": "tab\there",
            "OSTIARY_BRAND_LOGO": str(tmp_path / "missing.png"),
            "OSTIARY_BRAND_COLOR": "#e11d48",  # 4.30:1 on the page background
            "OSTIARY_BRAND_COLOR_DARK": "#2b59c3",  # the light accent, too dark on dark
            "OSTIARY_BRAND_STYLESHEET": file(tmp_path, "latin1.css", "a { content: 'é' }".encode("latin-1")),
        }
    )

    assert set(found) == {
        "OSTIARY_BRAND_NAME",
        "OSTIARY_BRAND_LOGO",
        "OSTIARY_BRAND_COLOR",
        "OSTIARY_BRAND_COLOR_DARK",
        "OSTIARY_BRAND_STYLESHEET",
    }
    assert "printable" in found["OSTIARY_BRAND_NAME"]
    assert "cannot read" in found["OSTIARY_BRAND_LOGO"] and "missing.png" in found["OSTIARY_BRAND_LOGO"]
    assert "#e11d48 on the light-mode background #f3f5f9 has a contrast of 4.30:1" in found["OSTIARY_BRAND_COLOR"]
    assert "darker" in found["OSTIARY_BRAND_COLOR"]
    assert "dark-mode background #1a2030" in found["OSTIARY_BRAND_COLOR_DARK"]
    assert "lighter" in found["OSTIARY_BRAND_COLOR_DARK"]
    assert "not UTF-8" in found["OSTIARY_BRAND_STYLESHEET"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("blue", "must be a colour as #rrggbb"),
        ("#12345", "must be a colour as #rrggbb"),
        ("#ffffff", "contrast of 1.00:1"),  # white on the white card
        ("#5b8def", "contrast of 3.23:1"),
    ],
)
def test_a_light_colour_that_is_no_colour_or_too_pale_is_refused(raw: str, message: str) -> None:
    assert message in problems({"OSTIARY_BRAND_COLOR": raw})["OSTIARY_BRAND_COLOR"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("logo.gif", b"GIF89a" + b"\x00" * 16, "is not a PNG, JPEG, WebP or SVG image"),
        ("logo.svg", b"<html><body>not svg</body></html>", "is not a PNG, JPEG, WebP or SVG image"),
        ("logo.svg", b'<!DOCTYPE svg [<!ENTITY a "aaaa">]>' + SVG, "is not a PNG, JPEG, WebP or SVG image"),
        ("logo.png", PNG + b"\x00" * brand.MAX_LOGO_BYTES, "larger than 256 KiB"),
        ("logo.png", b"", "is empty"),
    ],
    ids=["gif", "html", "svg-with-dtd", "too-large", "empty"],
)
def test_a_logo_of_the_wrong_kind_is_refused(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    found = problems({"OSTIARY_BRAND_LOGO": file(tmp_path, name, content)})
    assert message in found["OSTIARY_BRAND_LOGO"]


def test_a_folder_is_no_logo_or_stylesheet(tmp_path: Path) -> None:
    found = problems({"OSTIARY_BRAND_LOGO": str(tmp_path), "OSTIARY_BRAND_STYLESHEET": str(tmp_path)})
    assert "cannot read" in found["OSTIARY_BRAND_LOGO"] and "cannot read" in found["OSTIARY_BRAND_STYLESHEET"]


def test_a_brand_name_is_at_most_64_characters() -> None:
    assert "1 to 64" in problems({"OSTIARY_BRAND_NAME": "x" * 65})["OSTIARY_BRAND_NAME"]


# The templates.


def branded(tmp_path: Path, logo: bytes = PNG) -> Settings:
    return Settings.from_env(
        {
            "OSTIARY_ISSUER": "https://id.acme.example",
            "OSTIARY_MAIL_BACKEND": "log",
            "OSTIARY_BRAND_NAME": "Acme <Cloud>",
            "OSTIARY_BRAND_LOGO": file(tmp_path, "logo", logo),
            "OSTIARY_BRAND_COLOR": "#9d174d",
            "OSTIARY_BRAND_STYLESHEET": file(tmp_path, "acme.css", b".brand { letter-spacing: 0; }"),
        }
    )


def test_the_admin_console_carries_the_brand_too(tmp_path: Path) -> None:
    settings = branded(tmp_path)
    pages = Pages(settings, CsrfTokens(b"k" * 32))

    html = pages.plain("admin/forbidden.html", {"user": None}).body.decode()

    assert "· Acme &lt;Cloud&gt; admin</title>" in html
    assert re.search(r'<img class="brand-logo" src="/static/brand/logo\?v=\w{16}"', html)
    assert re.search(r'<link rel="stylesheet" href="/static/brand.css\?v=\w{16}">', html)
    assert re.search(r'<link rel="stylesheet" href="/static/brand/custom.css\?v=\w{16}">', html)
    assert html.index("/static/admin.css") < html.index("/static/brand.css") < html.index("/static/brand/custom.css")
    assert "Secured by Acme &lt;Cloud&gt;" in html
    assert "Ostiary" not in html


def test_mail_carries_the_name_the_colour_and_a_raster_logo(tmp_path: Path) -> None:
    message = Messages(branded(tmp_path)).build(
        "alice@example.com", "password_changed", {"username": "alice"}, None, message_id="<1@id.acme.example>"
    )
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()

    assert message["From"] == '"Acme <Cloud>" <no-reply@id.acme.example>'
    assert "Acme &lt;Cloud&gt;" in html and "color: #9d174d" in html
    assert re.search(r'<img src="https://id\.acme\.example/static/brand/logo\?v=\w{16}"', html)
    assert "Ostiary" not in html


def test_an_svg_logo_stays_out_of_mail(tmp_path: Path) -> None:
    message = Messages(branded(tmp_path, logo=SVG)).build(
        "alice@example.com", "password_changed", {"username": "alice"}, None, message_id="<1@id.acme.example>"
    )
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    assert "<img" not in html_part.get_content()


def test_the_account_pages_are_named_for_the_brand(tmp_path: Path) -> None:
    assert account_name(Settings()) == "your Ostiary account"
    assert account_name(branded(tmp_path)) == "your Acme <Cloud> account"
