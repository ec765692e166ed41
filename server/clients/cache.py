"""A small per-process cache of client snapshots.

Looking a client up costs three database round trips, on the token endpoint's hottest
path; caching it for a few seconds saves them on nearly every request. A changed or
disabled client is therefore seen by every process within ``OSTIARY_CLIENT_CACHE_TTL``
seconds (0 turns the cache off). Unknown client ids are not cached, so random ids cannot
fill the memory, and the cache is bounded anyway.

The snapshots it hands out are the clients as the protocol endpoints see them: ``view``
applies what a profile turns on (:func:`server.clients.fapi2.profile_view`) once per load.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ..storage.clients import StoredClient

_MAX_ENTRIES = 10_000


def _as_stored(client: StoredClient) -> StoredClient:
    return client


class ClientCache:
    def __init__(self, ttl: float, view: Callable[[StoredClient], StoredClient] = _as_stored) -> None:
        self.ttl = ttl
        self.view = view
        self._entries: dict[str, tuple[float, StoredClient]] = {}

    def get(self, client_id: str, load: Callable[[], StoredClient | None]) -> StoredClient | None:
        """The cached snapshot, or ``load()`` (synchronous, inside a database session)."""
        cached = self._fresh(client_id)
        return cached if cached is not None else self._keep(client_id, self._seen(load()))

    async def aget(self, client_id: str, load: Callable[[], Awaitable[StoredClient | None]]) -> StoredClient | None:
        """The cached snapshot, or ``await load()``."""
        cached = self._fresh(client_id)
        return cached if cached is not None else self._keep(client_id, self._seen(await load()))

    def forget(self, client_id: str) -> None:
        """Drop the snapshot of a client this process just changed (other processes see the
        change within the TTL)."""
        self._entries.pop(client_id, None)

    def _seen(self, client: StoredClient | None) -> StoredClient | None:
        return self.view(client) if client is not None else None

    def _fresh(self, client_id: str) -> StoredClient | None:
        entry = self._entries.get(client_id)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    def _keep(self, client_id: str, client: StoredClient | None) -> StoredClient | None:
        if self.ttl <= 0:
            return client
        if client is None:
            self._entries.pop(client_id, None)
            return None
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[client_id] = (time.monotonic() + self.ttl, client)
        return client
