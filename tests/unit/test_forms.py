"""``parse_form``: only UTF-8 ``application/x-www-form-urlencoded`` without control characters; ``repeated``."""

from __future__ import annotations

import pytest

from server.web.forms import FormError, parse_form, repeated

FORM = "application/x-www-form-urlencoded"


# Content type.


@pytest.mark.parametrize(
    "content_type",
    [
        FORM,
        "Application/X-WWW-Form-URLEncoded",
        f"{FORM}; charset=utf-8",
        f"{FORM}; charset=UTF-8",
        f"{FORM};charset=utf8",
        f"{FORM}; charset = utf-8",
        f"  {FORM}  ",
    ],
)
def test_a_form_content_type_is_accepted(content_type: str) -> None:
    assert parse_form(b"grant_type=client_credentials", content_type) == [("grant_type", "client_credentials")]


@pytest.mark.parametrize(
    "content_type",
    [
        # RFC 9110 §8.3.1 lists these as equivalent to charset=utf-8: a parameter value
        # may be a quoted-string (RFC 9110 §5.6.6).
        f'{FORM}; charset="utf-8"',
        'Application/X-WWW-Form-URLEncoded;Charset="UTF-8"',
    ],
)
def test_a_quoted_utf8_charset_is_accepted(content_type: str) -> None:
    assert parse_form(b"grant_type=client_credentials", content_type) == [("grant_type", "client_credentials")]


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/json", "multipart/form-data; boundary=xyz", "text/plain", f"{FORM}x"],
)
def test_another_content_type_is_refused(content_type: str | None) -> None:
    with pytest.raises(FormError, match="x-www-form-urlencoded"):
        parse_form(b"grant_type=client_credentials", content_type)


@pytest.mark.parametrize("charset", ["latin-1", "iso-8859-1", "utf-16", "us-ascii"])
def test_a_charset_other_than_utf8_is_refused(charset: str) -> None:
    with pytest.raises(FormError, match="UTF-8"):
        parse_form(b"grant_type=client_credentials", f"{FORM}; charset={charset}")


def test_form_error_is_a_value_error() -> None:
    assert issubclass(FormError, ValueError)


# Decoding.


def test_pairs_keep_their_order_and_their_repeats() -> None:
    assert parse_form(b"scope=a&grant_type=x&scope=b", FORM) == [("scope", "a"), ("grant_type", "x"), ("scope", "b")]


def test_an_empty_body_is_an_empty_form() -> None:
    assert parse_form(b"", FORM) == []


def test_blank_values_are_kept() -> None:
    assert parse_form(b"a=&b=2&c", FORM) == [("a", ""), ("b", "2"), ("c", "")]


def test_plus_decodes_to_a_space_and_percent_2b_to_a_plus() -> None:
    assert parse_form(b"scope=openid+profile&secret=a%2Bb", FORM) == [("scope", "openid profile"), ("secret", "a+b")]


@pytest.mark.parametrize("body", [b"name=caf\xc3\xa9", b"name=caf%C3%A9", b"name=caf%c3%a9"])
def test_utf8_is_decoded_raw_or_percent_encoded(body: bytes) -> None:
    assert parse_form(body, FORM) == [("name", "café")]


@pytest.mark.parametrize(
    "body",
    [b"name=\xff", b"na\xe9me=x", b"name=%FF", b"name=caf%E9", b"%C3=x", b"name=%C3%28"],
    ids=["raw-value", "raw-key", "percent-ff", "percent-latin1", "percent-key", "percent-bad-continuation"],
)
def test_invalid_utf8_is_refused(body: bytes) -> None:
    with pytest.raises(FormError, match="UTF-8"):
        parse_form(body, FORM)


@pytest.mark.parametrize(
    "body",
    [
        b"name=a%00b",
        b"na%00me=x",
        b"name=a\x00b",
        b"name=%1F",
        b"%1F=x",
        b"name=%7F",
        b"%7Fname=x",
        b"name=line%0Abreak",
        b"name=tab%09bed",
    ],
)
def test_control_characters_are_refused_in_keys_and_values(body: bytes) -> None:
    with pytest.raises(FormError, match="control characters"):
        parse_form(body, FORM)


def test_printable_characters_next_to_the_control_range_are_kept() -> None:
    assert parse_form(b"a=%20%7E", FORM) == [("a", " ~")]


def test_a_hundred_fields_are_accepted() -> None:
    body = "&".join(f"f{i}=v" for i in range(100)).encode()

    assert len(parse_form(body, FORM)) == 100


def test_more_than_a_hundred_fields_are_refused() -> None:
    body = "&".join(f"f{i}=v" for i in range(101)).encode()

    with pytest.raises(FormError):
        parse_form(body, FORM)


# repeated().


def test_no_repeated_parameter_gives_none() -> None:
    assert repeated([("grant_type", "x"), ("scope", "a"), ("client_id", "c")]) is None


def test_the_first_parameter_given_twice_is_named() -> None:
    pairs = [("a", "1"), ("b", "1"), ("b", "2"), ("a", "2")]

    assert repeated(pairs) == "b"


def test_a_blank_repeat_still_counts() -> None:
    assert repeated([("scope", "a"), ("scope", "")]) == "scope"


def test_allowed_parameters_may_repeat() -> None:
    pairs = [("resource", "https://a.example"), ("resource", "https://b.example")]

    assert repeated(pairs, frozenset({"resource"})) is None


def test_allowed_parameters_do_not_hide_another_repeat() -> None:
    pairs = [("resource", "https://a"), ("resource", "https://b"), ("scope", "a"), ("scope", "b")]

    assert repeated(pairs, frozenset({"resource"})) == "scope"
