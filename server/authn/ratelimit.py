"""Per-address rate limits (login, password reset, and optionally the token endpoint):
fixed one-minute windows, answered with ``429`` and ``Retry-After`` beyond the limit.

The counters live in the database (one upsert per request) so every server process counts
together, or in Redis when ``OSTIARY_REDIS_URL`` is set (one pipelined INCR + EXPIRE),
which keeps that write off the database on a busy token endpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from ..storage import AsyncSession, async_sessionmaker, ratelimits, transactions
from .secrets import network_of

log = logging.getLogger("ostiary.ratelimit")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int = 0


ALLOWED = Decision(allowed=True)


class Counter(Protocol):
    async def hit(self, bucket: str, window_start: int) -> int: ...

    async def close(self) -> None: ...


class DatabaseCounter:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def hit(self, bucket: str, window_start: int) -> int:
        return await transactions.run(self.sessionmaker, lambda db: ratelimits.hit(db, bucket, window_start))

    async def close(self) -> None:
        """Nothing to close: the database engine belongs to the app."""


class RedisCounter:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis  # only deployments that configure Redis load it

        self.client = redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    async def hit(self, bucket: str, window_start: int) -> int:
        key = f"ostiary:rl:{bucket}:{window_start}"
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        return int(count)

    async def close(self) -> None:
        await self.client.aclose()


class RateLimiter:
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    async def close(self) -> None:
        await self.counter.close()

    async def check(self, endpoint: str, address: str | None, limit: int) -> Decision:
        """Count a request from ``address`` (an IPv6 address by its /64) to ``endpoint``;
        refuse it past ``limit`` a minute.
        A limit of 0 is off. If the counter store fails, the request is let through (a
        limiter must not turn an outage of Redis into an outage of sign-in) and logged."""
        if not address:
            return ALLOWED
        return await self.check_key(endpoint, network_of(address), limit)

    async def check_key(self, endpoint: str, key: str, limit: int) -> Decision:
        """The same, counting by ``key`` (a thing asked for, e.g. a code, whoever asks)."""
        if limit <= 0:
            return ALLOWED
        now = time.time()
        window_start = int(now // 60)
        try:
            hits = await self.counter.hit(f"{endpoint}|{key}", window_start)
        except Exception as error:
            log.warning("rate limit unavailable (%s); request let through", type(error).__name__)
            return ALLOWED
        if hits <= limit:
            return ALLOWED
        return Decision(allowed=False, retry_after=max(1, int((window_start + 1) * 60 - now) + 1))
