"""``ostiary audit list``: the audit trail, newest first, filtered by user, client, kind
and time, a page at a time (``--before ID``: the events older than the last one shown)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from typing import Any

from ..settings import Settings, parse_duration
from ..storage import Session, audit, users as user_store
from ..storage.audit import EventFilter, StoredEvent
from ..storage.base import utcnow
from ..users.errors import UnknownUser
from .database import in_transaction


def add_parser(commands: Any) -> None:
    """``ostiary audit list`` and its filters."""
    parser = commands.add_parser("audit", help="the audit trail of security events")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="audit events, newest first")
    listing.add_argument("--user", help="only events about this user (username)")
    listing.add_argument("--client", help="only events about this client (client id)")
    listing.add_argument("--type", dest="kind", help="only this kind, or the kinds under it (login: login.failed, ...)")
    listing.add_argument(
        "--since",
        type=_moment,
        help="only events from this time on: a time ago (90s, 15m, 2h, 30d) or an ISO 8601 time",
    )
    listing.add_argument(
        "--until",
        metavar="WHEN",
        type=_moment,
        help="only events before this time: a time ago (2h, 30d) or an ISO 8601 time such as "
        "2026-01-31T12:00:00Z (UTC when it has no offset)",
    )
    listing.add_argument(
        "--before",
        metavar="ID",
        type=_event_id,
        help="only events older than this id: the next page after the last event shown",
    )
    listing.add_argument("--limit", type=_limit, default=100, help="at most this many events (default 100)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(run=run_list)


def _moment(raw: str) -> datetime:
    """A time ago (a duration, counted back from now) or a point in time (ISO 8601; UTC when
    it names no offset)."""
    try:
        ago = timedelta(seconds=parse_duration(raw))
    except ValueError as exc:
        problem = str(exc)
    else:
        try:
            return utcnow() - ago
        except OverflowError:
            raise argparse.ArgumentTypeError(f"{raw!r} reaches back further than time does") from None
    try:
        return audit.moment(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{problem}; or an ISO 8601 time such as 2026-01-31T12:00:00Z") from None


def _event_id(raw: str) -> int:
    """A positive event id for ``--before``."""
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be an event id (a positive number), got {raw!r}")
    return int(raw)


def _limit(raw: str) -> int:
    """How many events at most, for ``--limit``."""
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to 10000, got {raw!r}")
    return int(raw)


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    """The matching events, newest first: one line each, or one JSON object per line."""
    found = in_transaction(settings, lambda db: _events(db, args))
    if args.json:
        for event in found:
            print(json.dumps(event.as_json(), separators=(",", ":")))
        return 0
    if not found:
        print("no audit events match")
    for event in found:
        print(_line(event))
    return 0


def _events(db: Session, args: argparse.Namespace) -> list[StoredEvent]:
    """Read the events the options ask for; an unknown ``--user`` is one error line."""
    user_sub = None
    if args.user is not None:
        user = user_store.get_user_by_username(db, args.user)
        if user is None:
            raise UnknownUser("--user", f"no user named {args.user!r}")
        user_sub = user.sub
    where = EventFilter(
        user_sub=user_sub,
        client_id=args.client,
        kind=args.kind,
        since=args.since,
        until=args.until,
        before_id=args.before,
    )
    return audit.events(db, where, limit=args.limit)


def _line(event: StoredEvent) -> str:
    """One event as the text form prints it: time, kind, id, who, and the details."""
    parts = [f"{event.occurred_at:%Y-%m-%d %H:%M:%S}Z", event.kind, f"id={event.id}"]
    for label, value in (("actor", event.actor), ("user", event.user_sub), ("client", event.client_id)):
        if value:
            parts.append(f"{label}={value}")
    if event.subject:
        parts.append(f"subject={event.subject}")
    if event.details:
        parts.append(json.dumps(event.details, separators=(",", ":"), sort_keys=True))
    return "  ".join(parts)
