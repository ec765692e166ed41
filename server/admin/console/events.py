"""The audit log as the console shows it: ``/admin/audit`` with its filters and paging,
and the rows other pages show (recent events, an account's events)."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from ...storage import audit
from ...storage.audit import EventFilter, StoredEvent
from .base import Answer, Shown, Visit, cursor, when

#: events on one page of the audit log
PAGE = 50


async def browse(visit: Visit) -> Answer:
    """``/admin/audit?user=&client=&type=&before=``: newest first; ``before`` is the id of
    the last event of the previous page (ids grow in the order written)."""
    filters = {"user": visit.arg("user"), "client": visit.arg("client"), "type": visit.arg("type", 100)}
    before = cursor(visit.arg("before", 20))
    where = EventFilter(
        user_sub=filters["user"] or None,
        client_id=filters["client"] or None,
        kind=filters["type"] or None,
        before_id=before,
    )
    found = await visit.read(lambda db: audit.events(db, where, limit=PAGE + 1))
    shown = found[:PAGE]
    more = len(found) > PAGE
    chosen = {name: value for name, value in filters.items() if value}
    context = {
        "section": "audit",
        "filters": filters,
        "events": event_rows(shown),
        "next_page": "/admin/audit?" + urlencode({**chosen, "before": shown[-1].id}) if more else None,
        "first_page": "/admin/audit?" + urlencode(chosen) if before is not None else None,
    }
    return Shown("admin/audit.html", context)


def event_rows(events: list[StoredEvent]) -> list[dict[str, object]]:
    return [_row(event) for event in events]


def _row(event: StoredEvent) -> dict[str, object]:
    return {
        "id": event.id,
        "when": when(event.occurred_at),
        "kind": event.kind,
        "actor": event.actor or "—",
        "user": event.user_sub,
        "user_link": f"/admin/users/{quote(event.user_sub, safe='')}" if event.user_sub else None,
        "client": event.client_id,
        "client_link": f"/admin/clients/{quote(event.client_id, safe='')}" if event.client_id else None,
        "subject": event.subject,
        "details": json.dumps(event.details, sort_keys=True, ensure_ascii=False) if event.details else "",
    }
