"""Each process keeps its key ring in step with the database, and moves the lifecycle on.

Every ``OSTIARY_KEYS_POLL_INTERVAL`` seconds: read the key set (one small query); if a step
of the lifecycle is due, apply it under the key lock (whichever process gets there first
does it, the others then find nothing due); if the set changed, rebuild the ring. So every
process signs with a new key within one poll interval of its activation, and the staging
delay accounts for that.

Key material that stops decrypting (a corrupt row, a wrong secret) stops the process with
a clear message rather than serving with keys it cannot trust.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from collections.abc import Callable

import anyio

from ..observe import metrics
from ..settings import Settings
from ..storage import AsyncSession, async_sessionmaker, keys as key_store, transactions
from ..storage.base import utcnow
from ..storage.keys import StoredKey
from . import service
from .errors import KeyMaterialError
from .holder import KeyRingHolder
from .lifecycle import next_rotation, plan
from .material import new_key
from .ring import KeyRing, build_keyring, fingerprint
from .wrapping import KeyWrappers

log = logging.getLogger("ostiary.keys")


async def refresh_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    wrappers: KeyWrappers,
    settings: Settings,
    holder: KeyRingHolder,
    on_change: Callable[[KeyRing], None],
) -> None:
    stored = await transactions.run(sessionmaker, key_store.list_keys)
    due = plan(stored, utcnow(), settings)
    if due:
        # New keys are made in a worker thread first: generation must not block the loop.
        prepared = {
            step.alg: await anyio.to_thread.run_sync(
                functools.partial(new_key, wrappers.current, alg=step.alg, rsa_bits=settings.rsa_key_bits, state="next")
            )
            for step in due
            if step.action == "stage"
        }
        steps = await transactions.run(
            sessionmaker, functools.partial(service.advance, wrappers=wrappers, settings=settings, prepared=prepared)
        )
        if steps:
            log.info("key lifecycle: %s", ", ".join(f"{s.action} {s.kid or s.alg}" for s in steps))
        stored = await transactions.run(sessionmaker, key_store.list_keys)
    _observe(stored, settings)
    if fingerprint(stored) != holder.current.fingerprint:
        ring = build_keyring(stored, wrappers)
        holder.current = ring
        on_change(ring)
        log.info("key ring updated: signing with %s", ", ".join(signer.kid for signer in ring.signing.values()))


def _observe(stored: list[StoredKey], settings: Settings) -> None:
    """The active keys' age and next rotation, for the metrics."""
    for key in stored:
        if key.state == "active":
            metrics.observe_signing_key(key.alg, key.activated_at, next_rotation(key, settings))


async def watch(
    sessionmaker: async_sessionmaker[AsyncSession],
    wrappers: KeyWrappers,
    settings: Settings,
    holder: KeyRingHolder,
    on_change: Callable[[KeyRing], None],
) -> None:
    while True:
        await asyncio.sleep(settings.keys_poll_interval)
        try:
            await refresh_once(sessionmaker, wrappers, settings, holder, on_change)
        except KeyMaterialError as exc:
            log.critical("stopping: %s", exc)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        except Exception:  # the database may be down: keep the current ring and try again
            log.warning("could not refresh the key ring; retrying", exc_info=True)
