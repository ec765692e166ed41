"""Refresh-token families against a model, driven by Hypothesis (RFC 9700 §4.14.2, RFC 7009, RFC 7662).

A state machine plays random sequences of refreshes (with each family's newest token or
any older one), revocations, expiries, lapsed grace windows and new code flows against
Ostiary over real HTTP, and after every step checks the server against a small model:

- an unused, unexpired token of a live family refreshes (200) and is consumed; the new
  token joins the family one generation later and becomes its head;
- a consumed token revokes its family and fails ``invalid_grant``, unless grace is on, it
  is one generation behind the head, it was consumed (by a refresh) within the window: then
  a new token replaces the head: it joins the head's generation, and the unused, unexpired
  tokens of that generation are consumed (superseded: presenting one is reuse, window or
  not), so a family never has two usable chains;
- an expired token, or any token of a revoked family, fails ``invalid_grant`` and revokes
  nothing;
- ``/revoke`` with any refresh token of a family revokes the family;
- introspection says ``active`` exactly for unused, unexpired tokens of live families,
  and access tokens are active exactly while their family is.

Hypothesis state machines are synchronous and the server runs in the test's event loop,
so the machine runs in a worker thread and reaches the async helpers through
``anyio.from_thread.run``.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.storage.engine import make_engine
from tests.flows import test_refresh_tokens as refresh_tests
from tests.flows.test_refresh_tokens import Offline

pytestmark = pytest.mark.anyio

offline = refresh_tests.offline
graceful = refresh_tests.graceful

T = TypeVar("T")

MACHINE_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    database=None,  # a failure is reproduced from the printed steps, not from a local example store
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: new code flows while fewer families than this are live, and at most MAX_FAMILIES in all
LIVE_FAMILIES = 2
MAX_FAMILIES = 6
#: the client's clock and the server's are read at slightly different instants
CLOCK_SLACK = 0.05
INDICES = st.integers(min_value=0, max_value=31)


@dataclass
class Token:
    refresh: str
    access: str
    generation: int
    consumed: bool = False
    expired: bool = False
    #: consumed by a grace replacement, never refreshed: it has no grace of its own
    superseded: bool = False
    #: client clock (monotonic) before sending and after receiving the request that consumed it
    consumed_between: tuple[float, float] = (math.inf, math.inf)

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.refresh.encode()).digest()


@dataclass
class Family:
    tokens: list[Token]
    head: int = 1
    revoked: bool = False

    @property
    def newest(self) -> Token:
        return self.tokens[-1]

    def active(self, token: Token) -> bool:
        return not (self.revoked or token.consumed or token.expired)


class Outcome(enum.Enum):
    ROTATE = "rotate"  # 200, the presented token consumed, the head advanced
    GRACE = "grace"  # 200, minted from a consumed token, replacing the head
    REUSE = "reuse"  # 400 invalid_grant, the family revoked
    ENDED = "ended"  # 400 invalid_grant, nothing changes


class RefreshFamilies(RuleBasedStateMachine):
    def __init__(self, offline: Offline, engine: AsyncEngine, grace_seconds: float) -> None:
        super().__init__()
        self.offline = offline
        self.engine = engine
        self.grace_seconds = grace_seconds
        self.families: list[Family] = []

    # -- bridging to the event loop ------------------------------------------------------

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return anyio.from_thread.run(functools.partial(fn, *args, **kwargs))

    def sql(self, statement: str, **params: Any) -> list[Any]:
        async def execute() -> list[Any]:
            async with self.engine.begin() as connection:
                result = await connection.execute(text(statement), params)
                return list(result.all())

        return self.call(execute)

    def family(self, index: int) -> Family:
        return self.families[index % len(self.families)]

    @property
    def live(self) -> list[Family]:
        return [f for f in self.families if not f.revoked]

    def live_family(self, index: int) -> Family:
        """A family not yet revoked when there is one: where a refresh can still tell something."""
        live = self.live or self.families
        return live[index % len(live)]

    # -- the model -----------------------------------------------------------------------

    def outcomes(self, family: Family, token: Token, sent: float, received: float) -> set[Outcome]:
        """What the server may answer when ``token`` is presented between ``sent`` and ``received``."""
        if family.revoked or (token.expired and not token.consumed):
            return {Outcome.ENDED}
        if not token.consumed:
            return {Outcome.ROTATE}
        if not self.grace_seconds or token.superseded or token.generation != family.head - 1:
            return {Outcome.REUSE}
        consumed_sent, consumed_received = token.consumed_between
        shortest = sent - consumed_received - CLOCK_SLACK
        longest = received - consumed_sent + CLOCK_SLACK
        if longest <= self.grace_seconds:
            return {Outcome.GRACE}
        if shortest > self.grace_seconds:
            return {Outcome.REUSE}
        return {Outcome.GRACE, Outcome.REUSE}  # the window may have lapsed meanwhile

    # -- rules ---------------------------------------------------------------------------

    @initialize()
    def first_family(self) -> None:
        self.start_family()

    @precondition(lambda self: len(self.live) < LIVE_FAMILIES and len(self.families) < MAX_FAMILIES)
    @rule()
    def start_family(self) -> None:
        tokens = self.call(self.offline.tokens)
        self.families.append(Family([Token(tokens["refresh_token"], tokens["access_token"], 1)]))

    @rule(which=INDICES)
    def refresh_newest(self, which: int) -> None:
        family = self.live_family(which)
        self.present(family, family.newest)

    @rule(which=INDICES, index=INDICES)
    def refresh_older(self, which: int, index: int) -> None:
        family = self.family(which)
        self.present(family, family.tokens[index % len(family.tokens)])

    @rule(which=INDICES, index=INDICES, window_lapsed=st.booleans())
    def replay_predecessor(self, which: int, index: int, window_lapsed: bool) -> None:
        """A consumed token one generation behind the head: grace inside the window, else reuse."""
        family = self.live_family(which)
        behind = [t for t in family.tokens if t.consumed and t.generation == family.head - 1]
        if not behind:
            return
        token = behind[index % len(behind)]
        if window_lapsed and self.grace_seconds:
            # Move the consumption an hour back rather than wait for the window to pass.
            self.update_token("consumed_at", datetime.now(UTC) - timedelta(hours=1), token)
            token.consumed_between = (-math.inf, -math.inf)
        self.present(family, token)

    @precondition(lambda self: self.grace_seconds > 0)
    @rule(which=INDICES, index=INDICES)
    def refresh_superseded(self, which: int, index: int) -> None:
        """A token a grace replacement superseded (the other tab's, or the lost response's): reuse."""
        family = self.live_family(which)
        superseded = [t for t in family.tokens if t.superseded]
        if superseded:
            self.present(family, superseded[index % len(superseded)])

    @rule(which=INDICES, index=INDICES)
    def revoke(self, which: int, index: int) -> None:
        """RFC 7009 with any refresh token of the family, used or not: the family ends."""
        family = self.live_family(which)
        token = family.tokens[index % len(family.tokens)]
        response = self.call(
            self.offline.http.post,
            "/revoke",
            data={"token": token.refresh, "token_type_hint": "refresh_token"},
            auth=self.offline.auth,
        )
        assert response.status_code == 200, response.text
        family.revoked = True

    @rule(which=INDICES, index=INDICES)
    def expire(self, which: int, index: int) -> None:
        """Idle expiry of an unused token (a consumed one has ended already)."""
        unused = [t for t in self.live_family(which).tokens if not t.consumed and not t.expired]
        if not unused:
            return
        token = unused[index % len(unused)]
        self.update_token("expires_at", datetime.now(UTC) - timedelta(minutes=1), token)
        token.expired = True

    def update_token(self, column: str, value: datetime, token: Token) -> None:
        rows = self.sql(
            f"UPDATE refresh_tokens SET {column} = :value WHERE token_digest = :digest RETURNING generation",
            value=value,
            digest=token.digest,
        )
        assert [r[0] for r in rows] == [token.generation]

    def present(self, family: Family, token: Token) -> None:
        sent = time.monotonic()
        response = self.call(self.offline.refresh, token.refresh)
        received = time.monotonic()
        expected = self.outcomes(family, token, sent, received)
        if response.status_code == 200:
            assert expected & {Outcome.ROTATE, Outcome.GRACE}, f"{expected}, got 200"
            body = response.json()
            if not token.consumed:
                token.consumed = True
                token.consumed_between = (sent, received)
                family.head = token.generation + 1
            else:  # grace: the new token replaces the head's
                for other in family.tokens:
                    if other.generation == family.head and not (other.consumed or other.expired):
                        other.consumed = other.superseded = True
            assert body["refresh_token"] not in {t.refresh for t in family.tokens}
            family.tokens.append(Token(body["refresh_token"], body["access_token"], token.generation + 1))
            return
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_grant"
        assert expected & {Outcome.REUSE, Outcome.ENDED}, f"{expected}, got {response.text}"
        if Outcome.REUSE in expected:
            family.revoked = True
            newest = self.call(self.offline.refresh, family.newest.refresh)
            assert newest.status_code == 400 and newest.json()["error"] == "invalid_grant", newest.text
            assert self.call(self.offline.introspect, family.newest.access) == {"active": False}

    # -- what the server must agree with after every step ---------------------------------

    @invariant()
    def introspection_agrees(self) -> None:
        for family in self.families:
            for token in family.tokens:
                seen = self.call(self.offline.introspect, token.refresh)
                assert seen["active"] is family.active(token), (token, family)
                if seen["active"]:
                    assert seen["token_type"] == "refresh_token"
                    assert seen["client_id"] == self.offline.rp.client_id
            access = self.call(self.offline.introspect, family.newest.access)
            assert access["active"] is not family.revoked

    @invariant()
    def storage_agrees(self) -> None:
        """The stored families match the model: generations, consumption, heads, revocation."""
        rows = self.sql(
            "SELECT r.token_digest, r.generation, r.consumed_at IS NOT NULL, g.head_generation,"
            " g.revoked_at IS NOT NULL FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id",
        )
        stored = {bytes(r[0]): (r[1], bool(r[2]), r[3], bool(r[4])) for r in rows}
        for family in self.families:
            for token in family.tokens:
                if token.expired and token.digest not in stored:
                    continue  # the server's periodic cleanup deletes expired tokens whenever it runs
                assert stored[token.digest] == (token.generation, token.consumed, family.head, family.revoked)


async def drive(offline: Offline, grace_seconds: float) -> None:
    """Run the machine in a worker thread; its steps call back into this event loop, where the server runs."""
    engine = make_engine(offline.signin.live.settings.database_url)

    def run() -> None:
        run_state_machine_as_test(lambda: RefreshFamilies(offline, engine, grace_seconds), settings=MACHINE_SETTINGS)

    try:
        await anyio.to_thread.run_sync(run)
    finally:
        await engine.dispose()


async def test_families_without_grace_follow_the_model(offline: Offline) -> None:
    await drive(offline, grace_seconds=0)


async def test_families_with_grace_follow_the_model(graceful: Offline) -> None:
    settings_ = graceful.signin.live.settings
    assert (settings_.refresh_reuse_grace_seconds, settings_.refresh_reuse_grace_count) == (2, 0)
    await drive(graceful, grace_seconds=settings_.refresh_reuse_grace_seconds)
