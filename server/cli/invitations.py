"""``ostiary invitations create | list | revoke``: sign-up invitation links
(``OSTIARY_SIGNUP=invite``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..settings import Settings
from ..storage import signups
from ..users import signup
from ..users.errors import UserError
from ..users.invitations import describe
from .database import in_transaction
from .options import duration

#: who the audit rows of these commands name
ACTOR = "cli"


def add_parser(commands: Any) -> None:
    invitations = commands.add_parser("invitations", help="sign-up invitation links (OSTIARY_SIGNUP=invite)")
    actions = invitations.add_subparsers(dest="invitation_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="a new invitation link, printed once")
    create.add_argument("--email", help="the only address it may sign up (default: any)")
    create.add_argument(
        "--expires-in", metavar="DURATION", help="seconds, or 15m, 12h, 30d (default: OSTIARY_INVITATION_TTL)"
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="the live invitations (never their links), newest first")
    listing.add_argument("--all", action="store_true", help="the used, revoked and expired ones too")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)
    revoke = actions.add_parser("revoke", help="an invitation stops working")
    revoke.add_argument("invitation_id", metavar="ID", type=int)
    revoke.set_defaults(run=run_revoke)


def run_create(settings: Settings, args: argparse.Namespace) -> int:
    expires_in = duration("--expires-in", args.expires_in) if args.expires_in is not None else None
    if expires_in == 0:
        raise UserError("--expires-in", "must be 1 second or more")
    invited = in_transaction(
        settings, lambda db: signup.invite(db, settings, email=args.email, expires_in=expires_in, actor=ACTOR)
    )
    if args.json:
        print(json.dumps({**describe(invited.invitation), "link": invited.link}))
        return 0
    print(f"id:      {invited.invitation.id}")
    print(f"link:    {invited.link}")
    print(f"expires: {invited.invitation.expires_at.isoformat()}")
    print("The link is shown only this once. Whoever opens it may create one account.")
    if settings.signup != "invite":
        print(f"Note: OSTIARY_SIGNUP is {settings.signup!r} here, not 'invite'.")
    return 0


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    found = in_transaction(settings, lambda db: signups.list_invitations(db, include_dead=args.all))
    if args.json:
        print(json.dumps([describe(invitation) for invitation in found], indent=2))
        return 0
    if not found:
        print("no invitations")
    for invitation in found:
        shown = describe(invitation)
        print(f"{shown['id']}  {shown['state']}  email={shown['email'] or '(any)'}  expires={shown['expires_at']}")
    return 0


def run_revoke(settings: Settings, args: argparse.Namespace) -> int:
    revoked = in_transaction(settings, lambda db: signup.revoke_invitation(db, args.invitation_id, actor=ACTOR))
    if not revoked:
        raise UserError("ID", f"no live invitation {args.invitation_id}")
    print(f"invitation {args.invitation_id} revoked")
    return 0
