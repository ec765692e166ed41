"""``ostiary clients registration-token create | list | revoke``: RFC 7591 initial access
tokens for dynamic registration (``OSTIARY_REGISTRATION=initial-token``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..clients import registration
from ..clients.errors import ClientRegistrationError
from ..settings import Settings
from ..storage.base import utcnow
from .database import in_transaction
from .options import duration

#: who the audit rows of these commands name
ACTOR = "cli"


def add_parser(actions: Any) -> None:
    tokens = actions.add_parser(
        "registration-token", help="initial access tokens for dynamic registration (OSTIARY_REGISTRATION=initial-token)"
    )
    token_actions = tokens.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    create = token_actions.add_parser("create", help="a new token, printed once")
    create.add_argument("--expires-in", metavar="DURATION", help="seconds, or 15m, 12h, 30d (default: never)")
    create.add_argument("--max-uses", type=int, metavar="N", help="registrations it allows (default: any number)")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=run_token_create)
    listing = token_actions.add_parser("list", help="the tokens (never their values) and their uses")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_token_list)
    revoke = token_actions.add_parser("revoke", help="refuse a token from now on; its clients stay")
    revoke.add_argument("token_id", metavar="ID")
    revoke.add_argument("--json", action="store_true", help="print JSON")
    revoke.set_defaults(run=run_token_revoke)


def run_token_create(settings: Settings, args: argparse.Namespace) -> int:
    expires_in = duration("--expires-in", args.expires_in) if args.expires_in is not None else None
    if expires_in == 0:
        raise ClientRegistrationError("--expires-in", "must be 1 second or more")
    token_id, token = in_transaction(
        settings,
        lambda db: registration.create_initial_token(db, expires_in=expires_in, max_uses=args.max_uses, actor=ACTOR),
    )
    if args.json:
        print(json.dumps({"id": token_id, "token": token, "expires_in": expires_in, "max_uses": args.max_uses}))
        return 0
    print(f"id:    {token_id}")
    print(f"token: {token}")
    print("The token is shown only this once. A client registers with it at /register as")
    print("'Authorization: Bearer <token>' while OSTIARY_REGISTRATION=initial-token.")
    if settings.registration != "initial-token":
        print(f"Note: OSTIARY_REGISTRATION is {settings.registration!r} here, not 'initial-token'.")
    return 0


def run_token_list(settings: Settings, args: argparse.Namespace) -> int:
    tokens = in_transaction(settings, registration.list_initial_tokens)
    now = utcnow()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": t.id,
                        "state": t.state(now),
                        "created_at": t.created_at.isoformat(),
                        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
                        "max_uses": t.max_uses,
                        "uses": t.uses,
                        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                    }
                    for t in tokens
                ],
                indent=2,
            )
        )
        return 0
    if not tokens:
        print("no registration tokens")
    for t in tokens:
        limit = f"/{t.max_uses}" if t.max_uses is not None else ""
        expires = t.expires_at.isoformat() if t.expires_at else "never"
        print(f"{t.id}  {t.state(now)}  uses={t.uses}{limit}  expires={expires}")
    return 0


def run_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    revoked = in_transaction(settings, lambda db: registration.revoke_initial_token(db, args.token_id, actor=ACTOR))
    if args.json:
        print(json.dumps({"id": args.token_id, "revoked": True, "changed": revoked}))
    elif revoked:
        print(f"registration token {args.token_id} revoked; the clients it registered stay")
    else:
        print(f"registration token {args.token_id} was already revoked")
    return 0
