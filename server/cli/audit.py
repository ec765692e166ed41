"""``ostiary audit list``: the audit trail, newest first, filtered by user, client, kind
and time."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from ..settings import Settings, parse_duration
from ..storage import Session, audit, users as user_store
from ..storage.audit import EventFilter, StoredEvent
from ..storage.base import utcnow
from ..users.errors import UserError
from .database import in_transaction


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("audit", help="the audit trail of security events")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="audit events, newest first")
    listing.add_argument("--user", help="only events about this user (username)")
    listing.add_argument("--client", help="only events about this client (client id)")
    listing.add_argument("--type", dest="kind", help="only this kind, or the kinds under it (login: login.failed, ...)")
    listing.add_argument("--since", type=_since, help="only events this recent: 90s, 15m, 2h, 30d")
    listing.add_argument("--limit", type=_limit, default=100, help="at most this many events (default 100)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(run=run_list)


def _since(raw: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(raw))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to 10000, got {raw!r}")
    return int(raw)


def run_list(settings: Settings, args: argparse.Namespace) -> int:
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
    user_sub = None
    if args.user is not None:
        user = user_store.get_user_by_username(db, args.user)
        if user is None:
            raise UserError("--user", f"no user named {args.user!r}")
        user_sub = user.sub
    since = utcnow() - args.since if args.since is not None else None
    where = EventFilter(user_sub=user_sub, client_id=args.client, kind=args.kind, since=since)
    return audit.events(db, where, limit=args.limit)


def _line(event: StoredEvent) -> str:
    parts = [f"{event.occurred_at:%Y-%m-%d %H:%M:%S}Z", event.kind]
    for label, value in (("actor", event.actor), ("user", event.user_sub), ("client", event.client_id)):
        if value:
            parts.append(f"{label}={value}")
    if event.subject:
        parts.append(f"subject={event.subject}")
    if event.details:
        parts.append(json.dumps(event.details, separators=(",", ":"), sort_keys=True))
    return "  ".join(parts)
