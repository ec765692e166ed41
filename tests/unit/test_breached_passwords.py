"""The breached-password check against Have I Been Pwned's range API (k-anonymity).

A local range server stands in for the service: it answers ``GET /range/{prefix}`` with
the SHA-1 suffixes it knows under that prefix, padded with zero-count entries as the real
service pads for ``Add-Padding: true``, and records what it was sent. Every behaviour is
checked on the async call (the web pages) and on the sync one (the command line).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import anyio
import httpx
import pytest

from server.settings import Settings
from server.users.breached import BreachedPasswords
from tests.hibp import BREACHED, CLEAN, RangeServer, closed_port_url, sha1_hex

pytestmark = pytest.mark.anyio

Check = Callable[[BreachedPasswords, str], Awaitable[bool]]


@pytest.fixture(params=["async", "sync"])
def is_breached(request: pytest.FixtureRequest) -> Check:
    """The check as the web pages call it (async) and as the command line does (sync)."""
    if request.param == "async":
        return lambda checker, password: checker.is_breached(password)
    return lambda checker, password: anyio.to_thread.run_sync(checker.is_breached_sync, password)


@pytest.fixture
def hibp() -> Iterator[RangeServer]:
    with RangeServer(listed={BREACHED: 52_579}) as server:
        yield server


def checker(url: str, timeout: int = 2) -> BreachedPasswords:
    return BreachedPasswords(Settings(hibp_url=url, hibp_timeout=timeout))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ostiary.passwords" and r.levelno == logging.WARNING]


async def test_a_password_listed_with_a_count_is_breached(hibp: RangeServer, is_breached: Check) -> None:
    assert await is_breached(checker(hibp.url), BREACHED) is True


async def test_a_password_not_listed_is_not_breached(hibp: RangeServer, is_breached: Check) -> None:
    assert await is_breached(checker(hibp.url), CLEAN) is False
    assert len(hibp.requests) == 1  # it was asked, and said no


async def test_a_padding_entry_for_the_suffix_is_not_a_breach(is_breached: Check) -> None:
    with RangeServer(listed={CLEAN: 0}) as padded:
        assert await is_breached(checker(padded.url), CLEAN) is False
        assert len(padded.requests) == 1
        # The answer did hold the suffix, as a zero-count line.
        assert f"{sha1_hex(CLEAN)[5:]}:0" in padded.answer(sha1_hex(CLEAN)[:5]).decode()


async def test_only_the_five_character_prefix_leaves_the_server(hibp: RangeServer, is_breached: Check) -> None:
    digest = sha1_hex(BREACHED)
    await is_breached(checker(hibp.url), BREACHED)
    (received,) = hibp.requests
    assert received.request_line.startswith("GET ")
    assert received.path == f"/range/{digest[:5]}"
    sent = received.text()
    for secret in (BREACHED, digest, digest.lower(), digest[5:], digest[5:].lower()):
        assert secret not in sent


async def test_padding_is_asked_for(hibp: RangeServer, is_breached: Check) -> None:
    await is_breached(checker(hibp.url), CLEAN)
    (received,) = hibp.requests
    assert received.headers["add-padding"] == "true"


async def test_a_service_that_is_down_accepts_the_password_with_a_warning(
    is_breached: Check, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ostiary.passwords")
    assert await is_breached(checker(closed_port_url()), BREACHED) is False
    (warning,) = warnings_of(caplog)
    assert "password accepted" in warning
    assert BREACHED not in caplog.text
    assert sha1_hex(BREACHED)[:5] not in caplog.text


async def test_an_error_answer_accepts_the_password_with_a_warning(
    is_breached: Check, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ostiary.passwords")
    with RangeServer(listed={BREACHED: 10}, status=503) as failing:
        assert await is_breached(checker(failing.url), BREACHED) is False
        assert len(failing.requests) == 1
    assert len(warnings_of(caplog)) == 1
    assert BREACHED not in caplog.text


async def test_a_slow_service_is_given_up_on_at_the_timeout(
    is_breached: Check, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ostiary.passwords")
    with RangeServer(listed={BREACHED: 10}, delay=10) as slow:
        started = time.monotonic()
        assert await is_breached(checker(slow.url, timeout=1), BREACHED) is False
        elapsed = time.monotonic() - started
        assert len(slow.requests) == 1
    assert 0.9 <= elapsed < 3
    assert len(warnings_of(caplog)) == 1


async def test_an_empty_url_turns_the_check_off(
    is_breached: Check, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[object] = []

    def record(self: object, request: object, **kwargs: object) -> None:
        sent.append(request)
        raise AssertionError("the check is off: nothing may be sent")

    monkeypatch.setattr(httpx.Client, "send", record)
    monkeypatch.setattr(httpx.AsyncClient, "send", record)
    caplog.set_level(logging.WARNING, logger="ostiary.passwords")
    off = checker("")
    assert not off.enabled
    assert await is_breached(off, BREACHED) is False
    assert sent == []
    assert warnings_of(caplog) == []
