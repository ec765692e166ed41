"""TOTP codes (``server.mfa.totp``) and backup codes (``server.mfa.backup``), checked against
pyotp as an independent authenticator app, at explicit times."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from server.mfa import backup, totp
from server.mfa.service import Enrolment

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
#: the middle of a 30-second step, so that the step is not in doubt
STEP = 56_666_666
NOW = STEP * 30 + 15.5
#: two adjacent steps whose codes are the same for SECRET (found by search)
TWIN_STEP = 473_598
TWIN_CODE = "519179"


def code_at(step: int, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).at(step * 30)


# The time step.


def test_steps_are_thirty_seconds_from_the_epoch() -> None:
    assert totp.current_step(STEP * 30) == STEP
    assert totp.current_step(STEP * 30 + 29.999) == STEP
    assert totp.current_step(STEP * 30 - 0.001) == STEP - 1
    assert totp.current_step(0) == 0


# Matching a code.


def test_the_code_of_the_current_step_matches_that_step() -> None:
    assert totp.matching_step(SECRET, code_at(STEP), now=NOW) == STEP


@pytest.mark.parametrize("offset", [-1, 1])
def test_a_code_one_step_away_matches_with_its_own_step(offset: int) -> None:
    assert code_at(STEP + offset) != code_at(STEP)  # the test would prove nothing otherwise

    assert totp.matching_step(SECRET, code_at(STEP + offset), now=NOW) == STEP + offset


@pytest.mark.parametrize("offset", [-2, 2, -3, 3, -20])
def test_a_code_further_away_is_refused(offset: int) -> None:
    far = code_at(STEP + offset)
    assert far not in {code_at(STEP + k) for k in (-1, 0, 1)}

    assert totp.matching_step(SECRET, far, now=NOW) is None


def test_the_window_follows_now() -> None:
    code = code_at(STEP + 2)

    assert totp.matching_step(SECRET, code, now=NOW) is None
    assert totp.matching_step(SECRET, code, now=NOW + 30) == STEP + 2
    assert totp.matching_step(SECRET, code, now=NOW + 60) == STEP + 2
    assert totp.matching_step(SECRET, code, now=NOW + 90) == STEP + 2
    assert totp.matching_step(SECRET, code, now=NOW + 120) is None


def test_a_code_of_two_steps_gives_the_later_one() -> None:
    # Giving the earlier step would let the replay guard accept the same code twice.
    assert code_at(TWIN_STEP - 1) == code_at(TWIN_STEP) == TWIN_CODE

    assert totp.matching_step(SECRET, TWIN_CODE, now=(TWIN_STEP - 1) * 30 + 15) == TWIN_STEP
    assert totp.matching_step(SECRET, TWIN_CODE, now=TWIN_STEP * 30 + 15) == TWIN_STEP


def test_a_code_of_another_secret_is_refused() -> None:
    other = pyotp.random_base32(32)
    code = code_at(STEP, other)
    assert code not in {code_at(STEP + k) for k in (-1, 0, 1)}

    assert totp.matching_step(SECRET, code, now=NOW) is None


def test_without_now_the_clock_is_used() -> None:
    assert totp.matching_step(SECRET, pyotp.TOTP(SECRET).now()) is not None


# What the user typed.


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("123456", "123456"),
        ("123 456", "123456"),
        (" 123456 ", "123456"),
        ("1 2 3 4 5 6", "123456"),
        ("000000", "000000"),
        ("123456\n", "123456"),
    ],
)
def test_a_code_is_normalised_to_its_six_digits(typed: str, expected: str) -> None:
    assert totp.normalise(typed) == expected


@pytest.mark.parametrize(
    "typed",
    ["", "      ", "12345", "1234567", "12345a", "abcdef", "123-456", "+12345", "١٢٣٤٥٦", "１２３４５６", "12345²"],
)
def test_anything_else_is_not_a_code(typed: str) -> None:
    assert totp.normalise(typed) is None


# Secrets, and how they are shown.


def test_a_secret_is_160_bits_in_base32() -> None:
    secret = totp.new_secret()

    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert len(base64.b32decode(secret)) == 20
    assert totp.new_secret() != secret


def test_the_provisioning_uri_names_the_issuer_and_the_account() -> None:
    uri = totp.provisioning_uri(SECRET, "alice@example.com", "Example Corp")

    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert unquote(parts.path) == "/Example Corp:alice@example.com"
    assert query["secret"] == [SECRET]
    assert query["issuer"] == ["Example Corp"]
    # What an authenticator app reads from it.
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.secret, parsed.name, parsed.issuer) == (SECRET, "alice@example.com", "Example Corp")
    assert (parsed.digits, parsed.interval) == (6, 30)


def test_the_qr_code_is_inline_svg_with_a_title() -> None:
    svg = totp.qr_svg(totp.provisioning_uri(SECRET, "alice", "Ostiary"))

    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    assert re.search(r"<title>[^<]+</title>", svg)
    assert "<script" not in svg


def test_the_qr_code_depends_on_the_uri() -> None:
    assert totp.qr_svg("otpauth://totp/a?secret=" + SECRET) != totp.qr_svg("otpauth://totp/b?secret=" + SECRET)


def test_an_enrolment_keeps_its_secret_out_of_its_repr() -> None:
    """An enrolment that ends up in a log line or a traceback does not carry the secret."""
    uri = totp.provisioning_uri(SECRET, "alice", "Ostiary")
    enrolment = Enrolment(secret=SECRET, uri=uri, qr_svg=totp.qr_svg(uri))
    assert SECRET not in repr(enrolment) and SECRET not in str(enrolment)


def test_a_secret_is_grouped_by_four_for_typing() -> None:
    grouped = totp.grouped(SECRET)

    assert grouped == "JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP"
    assert grouped.replace(" ", "") == SECRET


# Backup codes.

BACKUP_FORMAT = re.compile(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}")


def test_ten_distinct_backup_codes_in_groups_of_four() -> None:
    codes = backup.new_codes()

    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert BACKUP_FORMAT.fullmatch(code), code
        assert len(base64.b32decode(code.replace("-", "").upper())) == 10  # 80 bits
    assert set(backup.new_codes()).isdisjoint(codes)


def test_a_backup_code_is_normalised_however_it_was_typed() -> None:
    code = "abcd-efgh-ijkl-mn23"

    assert backup.normalise(code) == "abcdefghijklmn23"
    for typed in ("ABCD-EFGH-IJKL-MN23", "abcdefghijklmn23", "abcd efgh ijkl mn23", " AbCd-EfGh ijkl mn23\t"):
        assert backup.normalise(typed) == "abcdefghijklmn23", typed


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "abcd-efgh-ijkl-mno",  # 15 characters
        "abcd-efgh-ijkl-mnop-q",  # 17
        "abcd-efgh-ijkl-mn01",  # 0 and 1 are not base32
        "abcd-efgh-ijkl-mn8a",
        "abcd_efgh_ijkl_mnop",
        "123456",
    ],
)
def test_anything_else_is_not_a_backup_code(typed: str) -> None:
    assert backup.normalise(typed) is None


def test_the_digest_is_the_same_for_every_spelling_of_a_code() -> None:
    code = backup.new_codes(1)[0]
    spellings = [code, code.upper(), code.replace("-", ""), code.replace("-", " "), f"  {code.upper()}  "]

    digests = {backup.digest(spelling) for spelling in spellings}

    assert len(digests) == 1
    (digest,) = digests
    assert len(digest) == 32
    assert code.encode() not in digest and code.replace("-", "").encode() not in digest


def test_different_codes_have_different_digests() -> None:
    codes = backup.new_codes()

    assert len({backup.digest(code) for code in codes}) == 10


@pytest.mark.parametrize("garbage", ["", "not a backup code", "abcd-efgh-ijkl-mn01", "123456"])
def test_the_digest_of_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(ValueError, match="not a backup code"):
        backup.digest(garbage)
