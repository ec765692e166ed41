"""The key lifecycle's timing and decisions, as pure functions of the key set and the time.

    next ──(staging delay)──> active ──(rotation)──> retired ──(hold)──> removed
                                 └────────────── revoke: removed at once ──────┘

* **Publish first, sign later.** A ``next`` key is in ``/jwks`` for the *staging delay*
  before it signs: the JWKS ``max-age`` (the longest any honest cache keeps the old set),
  plus two key-poll intervals (how late a server process may be to publish it). So every
  resource server that honours ``Cache-Control`` has it before the first token it signs.
* **Keep until expired.** A ``retired`` key stays published for the *hold*: the longest
  token lifetime it may have signed, plus the same margin.
* Automatic rotation (``OSTIARY_KEYS_ROTATE_EVERY``) stages the next key one staging delay
  before the active key reaches that age, so the switch happens on schedule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..settings import Settings
from ..storage.keys import StoredKey


def staging_delay(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.jwks_max_age + 2 * settings.keys_poll_interval)


def hold(settings: Settings) -> timedelta:
    longest = max(settings.access_token_ttl, settings.id_token_ttl)
    return timedelta(seconds=longest + 2 * settings.keys_poll_interval)


def activates_at(key: StoredKey, settings: Settings) -> datetime:
    return key.created_at + staging_delay(settings)


def published_until(key: StoredKey, settings: Settings) -> datetime | None:
    """Until when a key must stay in ``/jwks`` (None: as long as it is next or active)."""
    if key.state == "retired" and key.retired_at is not None:
        return key.retired_at + hold(settings)
    if key.state == "removed":
        return key.removed_at
    return None


@dataclass(frozen=True)
class Step:
    action: str  # "stage", "activate", "remove"
    alg: str
    kid: str | None = None


def plan(keys: Iterable[StoredKey], now: datetime, settings: Settings) -> list[Step]:
    """What is due now, for every algorithm that has keys. Applying a plan twice is harmless:
    each step is a conditional update that only the first applier changes anything with."""
    steps: list[Step] = []
    by_alg: dict[str, list[StoredKey]] = {}
    for key in keys:
        by_alg.setdefault(key.alg, []).append(key)
    for alg, group in sorted(by_alg.items()):
        active = [k for k in group if k.state == "active"]
        staged = sorted((k for k in group if k.state == "next"), key=lambda k: k.created_at)
        if staged and activates_at(staged[0], settings) <= now:
            steps.append(Step("activate", alg, staged[0].kid))
        elif not staged and active and _rotation_due(active[0], now, settings):
            steps.append(Step("stage", alg))
        for key in group:
            until = published_until(key, settings)
            if key.state == "retired" and until is not None and until <= now:
                steps.append(Step("remove", alg, key.kid))
    return steps


def next_rotation(active: StoredKey, settings: Settings) -> datetime | None:
    """When the active key is due to be replaced (None: no schedule)."""
    if settings.keys_rotate_every <= 0 or active.activated_at is None:
        return None
    return active.activated_at + timedelta(seconds=settings.keys_rotate_every)


def _rotation_due(active: StoredKey, now: datetime, settings: Settings) -> bool:
    due = next_rotation(active, settings)
    return due is not None and due - staging_delay(settings) <= now


def describe(key: StoredKey, settings: Settings) -> dict[str, Any]:
    """A key as ``ostiary keys list --json`` and the admin API show it: its state and dates
    (never key material)."""
    until = published_until(key, settings)
    described: dict[str, Any] = {
        "kid": key.kid,
        "alg": key.alg,
        "state": key.state,
        "created_at": key.created_at.isoformat(),
        "activated_at": key.activated_at.isoformat() if key.activated_at else None,
        "retired_at": key.retired_at.isoformat() if key.retired_at else None,
        "removed_at": key.removed_at.isoformat() if key.removed_at else None,
        "published_until": until.isoformat() if until else None,
    }
    if key.state == "next":
        described["activates_at"] = activates_at(key, settings).isoformat()
    return described
