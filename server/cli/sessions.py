"""``ostiary sessions list|end``: a user's browser sessions, and ending them.

Ending a session signs that browser out and ends the refresh-token families bound to it
(issued without ``offline_access``); families with ``offline_access`` stay.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..settings import Settings
from ..storage.sessions import StoredSession
from ..users import admin
from .database import in_transaction

ACTOR = "cli"


def add_parser(commands: Any) -> None:
    """``ostiary sessions`` and its actions."""
    parser = commands.add_parser("sessions", help="users' browser sessions")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="a user's live sessions, newest first")
    listing.add_argument("user", metavar="USER", help="username")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)

    end = actions.add_parser("end", help="sign a user out: one session (SID) or all of them (--all)")
    end.add_argument("user", metavar="USER", help="username")
    which = end.add_mutually_exclusive_group(required=True)
    which.add_argument("--sid", help="the session's id, as `ostiary sessions list` shows it")
    which.add_argument("--all", action="store_true", help="every live session of the user")
    end.add_argument("--json", action="store_true", help="print JSON")
    end.set_defaults(run=run_end)


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    """The user's live browser sessions, newest first."""
    user, live = in_transaction(settings, lambda db: admin.sessions(db, args.user))
    if args.json:
        print(json.dumps([admin.describe_session(session) for session in live], indent=2))
        return 0
    if not live:
        print(f"{user.username} has no live session")
    for session in live:
        print(line(session))
    return 0


def line(session: StoredSession) -> str:
    """One session on one line, as ``sessions list`` and ``users show`` print it."""
    return f"{session.sid}  signed in {session.auth_time:%Y-%m-%d %H:%M} UTC  {session.acr}"


def run_end(settings: Settings, args: argparse.Namespace) -> int:
    """End one session (``--sid``) or all of them (``--all``)."""
    if args.all:
        user, ended = in_transaction(settings, lambda db: admin.end_sessions(db, args.user, actor=ACTOR))
    else:
        user = in_transaction(settings, lambda db: admin.end_session(db, args.user, args.sid, actor=ACTOR))
        ended = 1
    if args.json:
        print(json.dumps({"username": user.username, "ended": ended}))
    else:
        print(f"{ended} session(s) of {user.username} ended, with the tokens bound to them")
    return 0
