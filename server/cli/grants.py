"""``ostiary grants list | end | revoke``: a user's authorizations (token families).

Ending a grant makes every access and refresh token issued under it stop working. Every
change goes through :mod:`server.users.admin`, as the admin API's does, and its audit row
names the actor ``cli``. ``revoke --user`` is the older spelling of ``end USER --all``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..settings import Settings
from ..storage.grants import StoredGrant
from ..users import admin
from ..users.errors import UnknownUser, UserError
from .database import in_transaction

ACTOR = "cli"


def add_parser(commands: Any) -> None:
    """``ostiary grants`` and its actions."""
    parser = commands.add_parser("grants", help="authorizations (refresh-token families)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="a user's live grants, newest first")
    listing.add_argument("user", metavar="USER", help="username")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)

    end = actions.add_parser("end", help="end one grant of a user (--grant) or all of them (--all)")
    end.add_argument("user", metavar="USER", help="username")
    which = end.add_mutually_exclusive_group(required=True)
    which.add_argument("--grant", help="the grant's id, as `ostiary grants list` shows it")
    which.add_argument("--all", action="store_true", help="every grant of the user")
    end.add_argument("--client", help="with --all: only this client's grants")
    end.add_argument("--json", action="store_true", help="print JSON")
    end.set_defaults(run=run_end)

    revoke = actions.add_parser("revoke", help="revoke a user's grants: every token issued under them stops working")
    revoke.add_argument("--user", required=True, help="username")
    revoke.add_argument("--client", help="only this client's grants")
    revoke.set_defaults(run=run_revoke)


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    """The user's live grants, newest first."""
    user, live = in_transaction(settings, lambda db: admin.grants(db, args.user))
    if args.json:
        print(json.dumps([admin.describe_grant(grant) for grant in live], indent=2))
        return 0
    if not live:
        print(f"{user.username} has no live grant")
    for grant in live:
        print(line(grant))
    return 0


def run_end(settings: Settings, args: argparse.Namespace) -> int:
    """End one grant (``--grant``) or all of them (``--all``, perhaps of one ``--client``)."""
    if args.client is not None and not args.all:
        raise UserError("--client", "goes with --all (a single --grant names its client already)")
    if args.all:
        user, ended = in_transaction(
            settings, lambda db: admin.end_grants(db, args.user, actor=ACTOR, client_id=args.client)
        )
    else:
        user = in_transaction(settings, lambda db: admin.end_grant(db, args.user, args.grant, actor=ACTOR))
        ended = 1
    if args.json:
        print(json.dumps({"username": user.username, "ended": ended}))
    else:
        print(f"{ended} grant(s) of {user.username} ended: their tokens no longer work")
    return 0


def run_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """The older ``grants revoke --user``: ``grants end USER --all``, an unknown user named as ``--user``."""
    try:
        _, count = in_transaction(
            settings, lambda db: admin.end_grants(db, args.user, actor=ACTOR, client_id=args.client)
        )
    except UnknownUser as unknown:  # named by the option it came in, as this command always did
        raise UnknownUser("--user", unknown.message) from None
    print(f"revoked {count} grant(s)")
    return 0


def line(grant: StoredGrant) -> str:
    """One grant on one line, as ``grants list`` and ``users show`` print it."""
    bound = f"session {grant.session_sid}" if grant.session_sid else "offline"
    return f"{grant.grant_id}  client {grant.client_id}  {grant.created_at:%Y-%m-%d %H:%M} UTC  {bound}  {grant.scope}"
