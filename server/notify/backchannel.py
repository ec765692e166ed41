"""OpenID Connect Back-Channel Logout 1.0: the logout token, and the sender that posts it.

Ending a browser session queues a notice per client that signed in through it
(:mod:`server.storage.logout_notices`, in the ending's own transaction), so a user's logout
never waits on a client. A sender in every server process claims due notices with a lease,
signs each as a ``logout+jwt`` (§2.4) with the current key, and posts it as
``logout_token`` (§2.5). A 2xx answer ends the notice; anything else (an error status, a
timeout, a refused connection) is retried with backoff (30 s, 1 min, 2 min ... at most an
hour apart) for a day, and the notice is given up then. Each attempt carries the same
``jti``, so a client that took an earlier attempt whose answer was lost recognises it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import timedelta
from typing import Any

import httpx

from ..keys.errors import KeyMaterialError
from ..keys.holder import KeyRingHolder
from ..observe import metrics
from ..storage import AsyncSession, async_sessionmaker, audit, logout_notices, transactions
from ..storage.base import utcnow
from ..storage.leases import backoff
from ..storage.logout_notices import DueNotice

log = logging.getLogger("ostiary.backchannel")

#: the ``events`` member of a logout token (§2.4)
EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: how long a logout token is valid: long enough for clock skew, short enough not to matter
TOKEN_TTL = 120
BATCH = 20
LEASE = timedelta(minutes=2)
#: the whole of one post, connection to answer: a client that trickles its answer is cut
#: off there, so no client holds the others' notices up for longer
TIMEOUT = 5.0
GIVE_UP_AFTER = timedelta(days=1)


def logout_token(keys: KeyRingHolder, issuer: str, notice: DueNotice) -> str:
    """The signed logout token for ``notice``: ``sub`` and ``sid`` both (§2.4 allows
    either; both let the client end one session or all of the user's), never a ``nonce``."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": notice.client_id,
        "iat": now,
        "exp": now + TOKEN_TTL,
        "jti": notice.jti,
        "sub": notice.sub,
        "events": {EVENT: {}},
    }
    if notice.sid is not None:
        claims["sid"] = notice.sid
    try:
        signer = keys.current.signer(notice.id_token_alg or "RS256")
    except KeyMaterialError:  # the client's algorithm has no active key now: RS256 always has
        signer = keys.current.signer("RS256")
    return signer.sign(claims, typ="logout+jwt")


class LogoutNotifier:
    def __init__(
        self,
        issuer: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        keys: KeyRingHolder,
        *,
        interval: float,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        """``interval``: seconds between looks at the queue; a session ended in this
        process wakes the sender at once (:meth:`wake`)."""
        self.issuer = issuer
        self.sessionmaker = sessionmaker
        self.keys = keys
        self.interval = interval
        self._http = http
        self._wake = asyncio.Event()
        #: notices of the current batch not yet done, handed back if the sender stops
        self._claimed: set[int] = set()

    @property
    def http(self) -> httpx.AsyncClient:
        """Made for the first notice to post, not at start: a client's TLS context parses the
        whole CA bundle, and most servers have no client to tell."""
        if self._http is None:
            # no proxy from the environment: the notices go straight to the clients
            self._http = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, trust_env=False)
        return self._http

    def wake(self) -> None:
        """Look at the queue now (a session just ended here)."""
        self._wake.set()

    async def run(self) -> None:
        """Forever: deliver what is due, then wait for the interval or a wake-up."""
        try:
            await asyncio.sleep(random.uniform(0, self.interval))  # noqa: S311  (spreading load)
            while True:
                self._wake.clear()
                try:
                    while await self.deliver_due() == BATCH:
                        pass
                except Exception:  # a database that is down must not end the sender
                    log.warning("back-channel logout: delivery failed; retrying", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
        except asyncio.CancelledError:
            await self._hand_back()
            raise
        finally:
            if self._http is not None:
                await self._http.aclose()

    async def _hand_back(self) -> None:
        """The server is stopping: notices claimed and not done are due again at once, for
        another process (or this one's successor) rather than after their lease."""
        claimed, self._claimed = list(self._claimed), set()
        with contextlib.suppress(Exception):
            await asyncio.shield(transactions.run(self.sessionmaker, lambda db: logout_notices.release(db, claimed)))

    async def deliver_due(self) -> int:
        """Deliver one batch of due notices, side by side; returns how many were claimed."""
        batch = await transactions.run(
            self.sessionmaker, lambda db: logout_notices.claim_due(db, limit=BATCH, lease=LEASE)
        )
        self._claimed = {notice.id for notice in batch}
        await asyncio.gather(*(self._deliver(notice) for notice in batch))
        return len(batch)

    async def _deliver(self, notice: DueNotice) -> None:
        """Post one notice and record the outcome; a notice whose outcome cannot be recorded
        (the database gone for a moment) is left to its lease."""
        try:
            if notice.uri is None:  # the client is gone or stopped asking: nobody to tell
                await transactions.run(self.sessionmaker, lambda db: logout_notices.done(db, notice.id))
            else:
                await self._attempt(notice, notice.uri)
        except Exception:
            log.warning("back-channel logout to client %s: not recorded", notice.client_id, exc_info=True)
        self._claimed.discard(notice.id)

    async def _attempt(self, notice: DueNotice, uri: str) -> None:
        try:
            error = await self._post(uri, logout_token(self.keys, self.issuer, notice))
        except KeyMaterialError as exc:  # no key at all: the server is not ready; try again later
            error = f"not signed: {exc}"
        if error is None:
            metrics.LOGOUT_NOTICES.labels("delivered").inc()
            await transactions.run(self.sessionmaker, lambda db: logout_notices.done(db, notice.id))
        elif utcnow() - notice.created_at >= GIVE_UP_AFTER:
            metrics.LOGOUT_NOTICES.labels("abandoned").inc()
            log.warning("back-channel logout to client %s given up: %s", notice.client_id, error)
            await transactions.run(self.sessionmaker, lambda db: self._abandon(db, notice, error))
        else:
            metrics.LOGOUT_NOTICES.labels("failed").inc()
            at = utcnow() + backoff(notice.attempts)
            log.info("back-channel logout to client %s failed (%s); next attempt at %s", notice.client_id, error, at)
            await transactions.run(self.sessionmaker, lambda db: logout_notices.retry_later(db, notice.id, at, error))

    async def _post(self, uri: str, token: str) -> str | None:
        """None when the client took the token, else what went wrong. Only the status is
        read, never the body, and the whole exchange ends within :data:`TIMEOUT`."""
        try:
            async with asyncio.timeout(TIMEOUT):
                request = self.http.stream("POST", uri, data={"logout_token": token})
                async with request as response:
                    status = response.status_code
        except TimeoutError:
            return f"no answer within {TIMEOUT:g} s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if 200 <= status < 300 else f"HTTP {status}"

    @staticmethod
    def _abandon(db: Any, notice: DueNotice, error: str) -> None:
        logout_notices.done(db, notice.id)
        audit.record(
            db,
            "logout_notice.abandoned",
            actor="server",
            user=notice.sub,
            client=notice.client_id,
            details={"sid": notice.sid, "attempts": notice.attempts, "error": error[:200]},
        )
