"""``ostiary grants revoke``: end a user's authorizations (their token families)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..bootstrap import open_database
from ..settings import Settings
from ..storage import Session, audit, grants as grant_store, transactions, users as user_store
from ..storage.engine import create_sessionmaker
from ..users.errors import UserError


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("grants", help="authorizations (refresh-token families)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    revoke = actions.add_parser("revoke", help="revoke a user's grants: every token issued under them stops working")
    revoke.add_argument("--user", required=True, help="username")
    revoke.add_argument("--client", help="only this client's grants")
    revoke.set_defaults(run=run_revoke)


def run_revoke(settings: Settings, args: argparse.Namespace) -> int:
    count = asyncio.run(_revoke(settings, args.user, args.client))
    print(f"revoked {count} grant(s)")
    return 0


async def _revoke(settings: Settings, username: str, client_id: str | None) -> int:
    async with open_database(settings) as engine:
        return await transactions.run(create_sessionmaker(engine), lambda db: _revoke_in(db, username, client_id))


def _revoke_in(db: Session, username: str, client_id: str | None) -> int:
    user = user_store.get_user_by_username(db, username)
    if user is None:
        raise UserError("--user", f"no user named {username!r}")
    count = grant_store.revoke_for_user(db, user.id, "revoked_by_admin", client_id=client_id)
    audit.record(db, "grants.revoked", actor="admin", user=user.sub, client=client_id, details={"count": count})
    return count
