"""The console's key page: the signing keys with their state and dates, and the form that
rotates: stage a new key (it signs once every JWKS cache has seen it) or, in an
emergency, make it sign at once."""

from __future__ import annotations

from ... import i18n
from ...i18n import N_
from ...keys import service
from ...keys.lifecycle import describe
from ...settings import SIGNING_ALGS
from ...storage import keys as key_store
from .base import Answer, ConsoleError, Moved, Shown, Visit

DONE = {
    "staged": N_("A new key is published; it starts signing once every cache has seen it."),
    "now": N_("A new key signs from now on."),
}
_STATES = {
    "next": N_("staged"),
    "active": N_("signing"),
    "retired": N_("retired (still published)"),
    "removed": N_("removed"),
}


async def listing(visit: Visit) -> Answer:
    """``/admin/keys``."""
    settings = visit.services.settings
    keys = await visit.read(key_store.list_keys)
    rows = [_row(describe(key, settings)) for key in keys]
    return Shown("admin/keys.html", {"section": "keys", "keys": rows, "algs": SIGNING_ALGS, "done": visit.done(DONE)})


async def rotate(visit: Visit) -> Answer:
    """Stage a new key of the chosen algorithm, or with ``now`` make it sign at once."""
    alg = visit.field("alg", 20)
    if alg not in SIGNING_ALGS:
        raise ConsoleError(i18n.gettext("Choose an algorithm: one of %(algs)s.") % {"algs": ", ".join(SIGNING_ALGS)})
    now = bool(visit.form.get("now"))
    services = visit.services
    await service.rotate(
        services.sessionmaker,
        services.wrappers,
        alg=alg,
        bits=services.settings.rsa_key_bits,
        now=now,
        actor=visit.actor,
    )
    return Moved(f"/admin/keys?done={'now' if now else 'staged'}")


def _row(described: dict[str, object]) -> dict[str, object]:
    dates = ("created_at", "activated_at", "retired_at", "activates_at", "published_until")
    row = {name: _date(described.get(name)) for name in dates}
    state = str(described["state"])
    return {**row, "kid": described["kid"], "alg": described["alg"], "state": _STATES.get(state, state)}


def _date(value: object) -> str:
    """An ISO 8601 time as the pages show it (``describe`` gives them as strings)."""
    if not isinstance(value, str):
        return "—"
    return value[:16].replace("T", " ") + " UTC"
