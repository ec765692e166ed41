"""``ostiary users create | set-password | reset-mfa | update | disable | enable | delete | unlock``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from ..bootstrap import open_database
from ..mfa import service as mfa_service
from ..settings import Settings
from ..storage import Session, transactions, users as user_store
from ..storage.engine import create_sessionmaker
from ..storage.users import StoredUser
from ..users import admin
from ..users.breached import BreachedPasswords
from ..users.errors import UserError
from ..users.passwords import Passwords
from ..users.service import (
    change_password,
    check_new_password,
    check_new_password_sync,
    create_user,
    validate_new_user,
)
from .database import in_transaction

#: who the audit rows of the administration commands name
ACTOR = "cli"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("users", help="user accounts")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a user")
    create.add_argument("--username", required=True)
    create.add_argument("--email")
    create.add_argument("--name", help="display name")
    create.add_argument("--email-verified", action="store_true", help="the address is known to be the user's")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input (else: prompt)"
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=run_create)
    set_password = actions.add_parser(
        "set-password", help="set a user's password; ends their token families and browser sessions"
    )
    set_password.add_argument("--username", required=True)
    set_password.add_argument("--password-stdin", action="store_true", help="read it from standard input")
    set_password.set_defaults(run=run_set_password)
    reset_mfa = actions.add_parser(
        "reset-mfa", help="remove a user's second factor and backup codes (a lost device); audited"
    )
    reset_mfa.add_argument("user", metavar="USER", help="username")
    reset_mfa.set_defaults(run=run_reset_mfa)
    _add_admin_parsers(actions)


def _add_admin_parsers(actions: Any) -> None:
    update = actions.add_parser("update", help="change a user's username, e-mail address, name or verified flag")
    update.add_argument("user", metavar="USER", help="username")
    update.add_argument("--username", help="a new username")
    update.add_argument("--email", help="a new address ('' removes it); unverified unless --email-verified")
    update.add_argument("--name", help="display name ('' removes it)")
    update.add_argument(
        "--email-verified", action=argparse.BooleanOptionalAction, help="the address is (or is not) known to be theirs"
    )
    update.add_argument("--json", action="store_true", help="print JSON")
    update.set_defaults(run=run_update)
    for action, text, run in (
        ("disable", "refuse every sign-in, refresh and token of the user; ends their sessions", run_disable),
        ("enable", "undo disable", run_enable),
        ("delete", "delete a user with their sessions, tokens and second factors", run_delete),
        ("unlock", "clear the user's failed sign-in counters (a lockout)", run_unlock),
    ):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("user", metavar="USER", help="username")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(run=run)


def run_create(settings: Settings, args: argparse.Namespace) -> int:
    username, email, name = validate_new_user(args.username, args.email, args.name)
    password = _read_password(args.password_stdin)
    passwords = Passwords(settings)
    check_new_password_sync(passwords, BreachedPasswords(settings), password, username=username, email=email)
    password_hash = passwords.hash(password)
    user = asyncio.run(_create(settings, username, email, name, password_hash, args.email_verified))
    if args.json:
        print(json.dumps({"sub": user.sub, "username": user.username, "email": user.email}, indent=2))
    else:
        print(f"created user {user.username} (sub {user.sub})")
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise UserError("password", "the two entries differ")
    else:
        raise UserError("--password-stdin", "standard input is not a terminal: pass the password with --password-stdin")
    if not password:
        raise UserError("password", "must not be empty")
    return password


async def _create(
    settings: Settings, username: str, email: str | None, name: str | None, password_hash: str, verified: bool
) -> StoredUser:
    async with open_database(settings) as engine:
        return await transactions.run(
            create_sessionmaker(engine),
            lambda s: create_user(
                s, username=username, email=email, name=name, password_hash=password_hash, email_verified=verified
            ),
        )


def run_set_password(settings: Settings, args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin)
    families = asyncio.run(_set_password(settings, args.username, password))
    print(f"password changed for {args.username}; {families} token families ended")
    return 0


async def _set_password(settings: Settings, username: str, password: str) -> int:
    passwords = Passwords(settings)
    async with open_database(settings) as engine:
        sessionmaker = create_sessionmaker(engine)
        user = await transactions.run(sessionmaker, lambda s: user_store.get_user_by_username(s, username))
        if user is None:
            raise UserError("--username", f"no user named {username!r}")
        await check_new_password(
            passwords, BreachedPasswords(settings), password, username=user.username, email=user.email
        )
        password_hash = await passwords.hash_async(password)
        return await transactions.run(sessionmaker, lambda s: change_password(s, user, password_hash, actor="admin"))


def run_reset_mfa(settings: Settings, args: argparse.Namespace) -> int:
    had = asyncio.run(_reset_mfa(settings, args.user))
    if had:
        print(f"second factor removed for {args.user}; they sign in with their password and may set up a new one")
    else:
        print(f"{args.user} had no second factor; nothing to remove")
    return 0


async def _reset_mfa(settings: Settings, username: str) -> bool:

    def reset(db: Session) -> bool:
        user = user_store.get_user_by_username(db, username)
        if user is None:
            raise UserError("USER", f"no user named {username!r}")
        return mfa_service.reset(db, user, actor="admin")

    async with open_database(settings) as engine:
        return await transactions.run(create_sessionmaker(engine), reset)


def _describe(user: StoredUser) -> dict[str, Any]:
    return {
        "sub": user.sub,
        "username": user.username,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "disabled": user.disabled_at is not None,
    }


def run_update(settings: Settings, args: argparse.Namespace) -> int:
    changes = admin.ProfileChanges(
        username=args.username, email=args.email, name=args.name, email_verified=args.email_verified
    )
    user = in_transaction(settings, lambda db: admin.update(db, args.user, changes, actor=ACTOR))
    if args.json:
        print(json.dumps(_describe(user), indent=2))
    else:
        print(f"user {user.username} updated (sub {user.sub})")
    return 0


def run_disable(settings: Settings, args: argparse.Namespace) -> int:
    return _set_disabled(settings, args, True)


def run_enable(settings: Settings, args: argparse.Namespace) -> int:
    return _set_disabled(settings, args, False)


def _set_disabled(settings: Settings, args: argparse.Namespace, disabled: bool) -> int:
    user, changed = in_transaction(settings, lambda db: admin.set_disabled(db, args.user, disabled, actor=ACTOR))
    state = "disabled" if disabled else "enabled"
    if args.json:
        print(json.dumps({**_describe(user), "changed": changed}, indent=2))
    elif changed:
        print(f"user {user.username} {state}")
    else:
        print(f"user {user.username} was already {state}")
    return 0


def run_delete(settings: Settings, args: argparse.Namespace) -> int:
    user = in_transaction(settings, lambda db: admin.delete(db, args.user, actor=ACTOR))
    if args.json:
        print(json.dumps({"sub": user.sub, "username": user.username, "deleted": True}, indent=2))
    else:
        print(f"user {user.username} deleted (sub {user.sub}); their sessions and tokens ended")
    return 0


def run_unlock(settings: Settings, args: argparse.Namespace) -> int:
    user = in_transaction(settings, lambda db: admin.unlock(db, args.user, actor=ACTOR))
    if args.json:
        print(json.dumps({"sub": user.sub, "username": user.username, "unlocked": True}, indent=2))
    else:
        print(f"user {user.username} unlocked: failed sign-ins forgotten")
    return 0
