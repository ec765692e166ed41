"""``/audit``: the audit trail, newest first, filtered by user, client, type and time,
paged by cursor."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ...storage import Session, audit
from ...storage.audit import EventFilter, StoredEvent
from ..calls import Call, Reply
from ..errors import Invalid

AREA = "audit"


async def list_events(call: Call) -> Reply:
    """``?user=<sub>&client=<id>&type=login&since=<RFC 3339>&until=<RFC 3339>&limit=&cursor=``."""
    query = call.query
    errors: list[tuple[str, str]] = []
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        try:
            times[name] = _time(query, name)
        except Invalid as refused:
            errors.extend(refused.errors)
    try:
        page = call.page()
    except Invalid as refused:
        errors = refused.errors + errors
    if errors:  # every field at fault at once
        raise Invalid(errors)
    where = EventFilter(
        user_sub=query.get("user") or None,
        client_id=query.get("client") or None,
        kind=query.get("type") or None,
        since=times["since"],
        until=times["until"],
        before_id=page.position,
    )

    def work(db: Session) -> list[StoredEvent]:
        return audit.events(db, where, limit=page.limit)

    found = await call.read(work)
    return Reply.listing([event.as_json() for event in found], page, found[-1].id if found else None)


def _time(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        return audit.moment(raw)
    except ValueError:
        raise Invalid([(name, "must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z")]) from None


ROUTES = [("/audit", "GET", AREA, list_events)]
