"""The refresh grace window never forks a family (RFC 9700 §4.14.2).

With ``OSTIARY_REFRESH_REUSE_GRACE_SECONDS`` set, the head's predecessor presented again
inside the window (a lost response, or several tabs refreshing at once) gets a new token
that *replaces* the head: whatever the burst, a family has one usable chain, and once the
window has passed every other token the burst handed out is reuse (the family is revoked,
the user alerted once). Against ``ostiary serve`` on each database; on PostgreSQL with two
workers, so the burst really races.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from pathlib import Path

import httpx

from tests.e2e.process import serving, sign_in
from tests.e2e.test_refresh_concurrency import CONCURRENCY, _prepare as prepare, _rows as rows
from tests.helpers import TestDatabase, make_settings

GRACE_SECONDS = 2
ENV = {"OSTIARY_REFRESH_REUSE_GRACE_SECONDS": str(GRACE_SECONDS)}


async def burst(base: str, tokens: list[str], auth: tuple[str, str]) -> list[httpx.Response]:
    """One refresh per entry of ``tokens``, all at once, each on its own connection."""
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=len(tokens))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        return await asyncio.gather(
            *(http.post("/token", data={"grant_type": "refresh_token", "refresh_token": t}, auth=auth) for t in tokens)
        )


def refresh(base: str, token: str, auth: tuple[str, str]) -> httpx.Response:
    return httpx.post(base + "/token", data={"grant_type": "refresh_token", "refresh_token": token}, auth=auth)


def usable_tokens(url: str) -> list[bytes]:
    """Digests of the unused, unexpired refresh tokens of live families."""
    found = asyncio.run(
        rows(
            url,
            "SELECT r.token_digest FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id"
            " WHERE r.consumed_at IS NULL AND g.revoked_at IS NULL",
        )
    )
    return [bytes(row[0]) for row in found]  # type: ignore[arg-type]


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def workers(database: TestDatabase) -> tuple[str, ...]:
    return ("--workers", "2") if database.kind == "postgresql" else ()


def past_the_window(started: float) -> None:
    time.sleep(max(0.0, started + GRACE_SECONDS + 0.5 - time.monotonic()))


def test_a_burst_inside_the_window_leaves_one_chain_and_every_other_token_is_reuse(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(database, tmp_path)
    client = prepare(settings, tmp_path, **ENV)
    auth = (client["client_id"], client["client_secret"])
    with serving(settings, tmp_path, *workers(database), **ENV) as (base, log):
        first = sign_in(base, client, "alice", "openid offline_access")["refresh_token"]
        started = time.monotonic()
        responses = asyncio.run(burst(base, [first] * CONCURRENCY, auth))
        # Inside the window every copy is answered (one rotation, then replacements)...
        assert [r.status_code for r in responses] == [200] * CONCURRENCY, [r.text for r in responses]
        issued = [r.json()["refresh_token"] for r in responses]
        assert len(set(issued)) == CONCURRENCY
        # ...but only the last replacement is usable: one chain.
        (live,) = usable_tokens(database.url)
        (survivor,) = [token for token in issued if digest(token) == live]
        past_the_window(started)
        assert refresh(base, survivor, auth).status_code == 200
        others = [token for token in issued if token != survivor]
        random.shuffle(others)
        for token in others:
            answer = refresh(base, token, auth)
            assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    assert asyncio.run(rows(database.url, "SELECT revoked_reason FROM grants")) == [("refresh_token_reuse",)]
    assert asyncio.run(rows(database.url, "SELECT count(*) FROM audit_events WHERE kind = 'refresh_token.reuse'")) == [
        (1,)
    ]
    alerts = "SELECT count(*) FROM mail_outbox WHERE template = 'refresh_token_reuse'"
    assert asyncio.run(rows(database.url, alerts)) == [(1,)]
    assert not any("Traceback" in line for line in log)


def test_rotations_of_the_head_racing_replays_of_its_predecessor_leave_at_most_one_chain(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(database, tmp_path)
    client = prepare(settings, tmp_path, **ENV)
    auth = (client["client_id"], client["client_secret"])
    with serving(settings, tmp_path, *workers(database), **ENV) as (base, log):
        predecessor = sign_in(base, client, "alice", "openid offline_access")["refresh_token"]
        started = time.monotonic()
        head = refresh(base, predecessor, auth).json()["refresh_token"]
        presented = [predecessor, head] * (CONCURRENCY // 2)
        responses = asyncio.run(burst(base, presented, auth))
        assert {r.status_code for r in responses} <= {200, 400}, [r.text for r in responses]
        assert len(usable_tokens(database.url)) <= 1
        issued = [r.json()["refresh_token"] for r in responses if r.status_code == 200]
        past_the_window(started)
        answers = [refresh(base, token, auth).status_code for token in random.sample(issued, len(issued))]
    revoked = asyncio.run(rows(database.url, "SELECT revoked_reason FROM grants WHERE revoked_at IS NOT NULL"))
    # Exactly one chain lived on, or the family was revoked as reuse.
    assert answers.count(200) <= 1
    assert revoked == [("refresh_token_reuse",)] or answers == [200], (answers, revoked)
    assert not any("Traceback" in line for line in log)
