"""``ostiary users create | list | show | set-password | reset-mfa | require-password-change |
send-reset-link | update | disable | enable | delete | unlock``.

Every change goes through :mod:`server.users.admin`, the service layer the admin API and
the console use too, and its audit row names the actor ``cli``. Each command takes
``--json``; an unknown user or a bad value ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from ..authn.lockout import Lockout
from ..bootstrap import open_database
from ..settings import Settings
from ..storage import Session, transactions, users as user_store
from ..storage.engine import create_sessionmaker
from ..storage.users import StoredUser
from ..users import admin
from ..users.breached import BreachedPasswords
from ..users.errors import UnknownUser, UserError
from ..users.passwords import Passwords
from ..users.service import (
    change_password,
    check_new_password,
    check_new_password_sync,
    validate_new_user,
)
from . import grants as grant_commands, sessions as session_commands
from .database import in_transaction

#: who the audit rows of the administration commands name
ACTOR = "cli"


def add_parser(commands: Any) -> None:
    """``ostiary users`` and its actions."""
    parser = commands.add_parser("users", help="user accounts")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a user")
    create.add_argument("--username", required=True)
    create.add_argument("--email")
    create.add_argument("--name", help="display name")
    create.add_argument("--email-verified", action="store_true", help="the address is known to be the user's")
    create.add_argument("--admin", action="store_true", help="give the user the admin role (the admin console)")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input (else: prompt)"
    )
    _json_option(create)
    create.set_defaults(run=run_create)
    set_password = actions.add_parser(
        "set-password", help="set a user's password; ends their token families and browser sessions"
    )
    set_password.add_argument("--username", required=True)
    set_password.add_argument("--password-stdin", action="store_true", help="read it from standard input")
    _json_option(set_password)
    set_password.set_defaults(run=run_set_password)
    _add_listing_parsers(actions)
    _add_admin_parsers(actions)


def _json_option(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` every action takes."""
    parser.add_argument("--json", action="store_true", help="print JSON")


def _add_listing_parsers(actions: Any) -> None:
    """``users list`` (cursor paging, search) and ``users show``."""
    listing = actions.add_parser("list", help="user accounts in id order, a page at a time")
    listing.add_argument("--query", help="only users whose username or e-mail contains this (any case)")
    listing.add_argument("--after", type=_count, help="the page after this user id (the last id of the previous page)")
    listing.add_argument(
        "--limit", type=_page_size, default=50, help=f"at most this many (1 to {admin.MAX_PAGE}, default 50)"
    )
    _json_option(listing)
    listing.set_defaults(run=run_list)
    show = actions.add_parser("show", help="one user: profile, second factor, lockout, sessions and grants")
    show.add_argument("user", metavar="USER", help="username")
    _json_option(show)
    show.set_defaults(run=run_show)


def _count(raw: str) -> int:
    """A user id for ``--after``; argparse reports anything else against the option."""
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"must be a user id (a number), got {raw!r}")
    return int(raw)


def _page_size(raw: str) -> int:
    """A page size for ``--limit``, within what :func:`admin.list_users` gives."""
    if not raw.isdigit() or not 1 <= int(raw) <= admin.MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to {admin.MAX_PAGE}, got {raw!r}")
    return int(raw)


def _add_admin_parsers(actions: Any) -> None:
    """The actions on one account, each through :mod:`server.users.admin`."""
    update = actions.add_parser(
        "update", help="change a user's username, e-mail address, name, verified flag or admin role"
    )
    update.add_argument("user", metavar="USER", help="username")
    update.add_argument("--username", help="a new username")
    update.add_argument("--email", help="a new address ('' removes it); unverified unless --email-verified")
    update.add_argument("--name", help="display name ('' removes it)")
    update.add_argument(
        "--email-verified", action=argparse.BooleanOptionalAction, help="the address is (or is not) known to be theirs"
    )
    update.add_argument("--admin", action=argparse.BooleanOptionalAction, help="give (or take) the admin role")
    _json_option(update)
    update.set_defaults(run=run_update)
    for action, text, run in (
        ("disable", "refuse every sign-in, refresh and token of the user; ends their sessions", run_disable),
        ("enable", "undo disable", run_enable),
        ("delete", "delete a user with their sessions, tokens and second factors", run_delete),
        ("unlock", "clear the user's failed sign-in counters (a lockout)", run_unlock),
        ("reset-mfa", "remove a user's second factor and backup codes (a lost device); audited", run_reset_mfa),
        ("require-password-change", "make the user choose a new password at their next sign-in", run_require_change),
        ("send-reset-link", "mail the user a password-reset link (as 'forgot password' would)", run_send_reset_link),
    ):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("user", metavar="USER", help="username")
        _json_option(parser)
        parser.set_defaults(run=run)


def run_create(settings: Settings, args: argparse.Namespace) -> int:
    """Check and hash the password outside the transaction (argon2 takes a while), then store."""
    username, email, name = validate_new_user(args.username, args.email, args.name)
    password = _read_password(args.password_stdin)
    passwords = Passwords(settings)
    check_new_password_sync(passwords, BreachedPasswords(settings), password, username=username, email=email)
    password_hash = passwords.hash(password)

    def create(db: Session) -> StoredUser:
        return admin.create(
            db,
            username=username,
            email=email,
            name=name,
            password_hash=password_hash,
            email_verified=args.email_verified,
            is_admin=args.admin,
            actor=ACTOR,
        )

    user = in_transaction(settings, create)
    if args.json:
        print(json.dumps(describe(user), indent=2))
    else:
        print(f"created {'administrator' if user.is_admin else 'user'} {user.username} (sub {user.sub})")
    return 0


def _read_password(from_stdin: bool) -> str:
    """The password from stdin (``--password-stdin``) or typed twice at a terminal."""
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


def run_set_password(settings: Settings, args: argparse.Namespace) -> int:
    """Set the password; every session and token family of the user ends."""
    password = _read_password(args.password_stdin)
    user, families = asyncio.run(_set_password(settings, args.username, password))
    if args.json:
        print(json.dumps({"sub": user.sub, "username": user.username, "families_ended": families}, indent=2))
    else:
        print(f"password changed for {user.username}; {families} token families ended")
    return 0


async def _set_password(settings: Settings, username: str, password: str) -> tuple[StoredUser, int]:
    """Hash outside the transaction (argon2 takes a while), then store it in a short one."""
    passwords = Passwords(settings)
    async with open_database(settings) as engine:
        sessionmaker = create_sessionmaker(engine)
        user = await transactions.run(sessionmaker, lambda s: user_store.get_user_by_username(s, username))
        if user is None:
            raise UnknownUser("--username", f"no user named {username!r}")
        await check_new_password(
            passwords, BreachedPasswords(settings), password, username=user.username, email=user.email
        )
        password_hash = await passwords.hash_async(password)
        families = await transactions.run(sessionmaker, lambda s: change_password(s, user, password_hash, actor=ACTOR))
        return user, families


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    """One page of users; the text form says how to ask for the next one."""
    found = in_transaction(
        settings, lambda db: admin.list_users(db, query=args.query, after=args.after, limit=args.limit)
    )
    if args.json:
        print(json.dumps([describe(user) for user in found], indent=2))
        return 0
    if not found:
        print("no users match")
    for user in found:
        flags = [flag for flag, on in (("admin", user.is_admin), ("disabled", user.disabled_at is not None)) if on]
        print(f"{user.id:>6}  {user.username}  {user.email or '-'}  {' '.join(flags)}".rstrip())
    if len(found) == args.limit:
        print(f"(more may follow: --after {found[-1].id})")
    return 0


def run_show(settings: Settings, args: argparse.Namespace) -> int:
    """The overview of one account, as the console shows it."""
    lockout = Lockout(settings.lockout_threshold, settings.lockout_window_seconds)
    seen = in_transaction(settings, lambda db: admin.overview(db, args.user, lockout))
    if args.json:
        print(json.dumps(_overview_json(seen), indent=2))
        return 0
    user = seen.user
    for label, value in (
        ("username", user.username),
        ("sub", user.sub),
        ("e-mail", f"{user.email} ({'verified' if user.email_verified else 'not verified'})" if user.email else "-"),
        ("name", user.name or "-"),
        ("admin", _yes(user.is_admin)),
        ("disabled", _yes(user.disabled_at is not None)),
        ("must change password", _yes(user.must_change_password)),
        ("second factor", _yes(seen.mfa_enrolled)),
        ("locked", ", ".join(seen.locked_factors) or "no"),
    ):
        print(f"{label + ':':<22}{value}")
    print(f"sessions ({len(seen.sessions)}):")
    for session in seen.sessions:
        print(f"  {session_commands.line(session)}")
    print(f"grants ({len(seen.grants)}):")
    for grant in seen.grants:
        print(f"  {grant_commands.line(grant)}")
    return 0


def _yes(value: bool) -> str:
    """A flag as the text form of ``users show`` prints it."""
    return "yes" if value else "no"


def _overview_json(seen: admin.UserOverview) -> dict[str, Any]:
    """The overview as ``users show --json`` prints it: the user's fields and the rest."""
    return {
        **describe(seen.user),
        "mfa_enrolled": seen.mfa_enrolled,
        "locked_factors": list(seen.locked_factors),
        "sessions": [admin.describe_session(session) for session in seen.sessions],
        "grants": [admin.describe_grant(grant) for grant in seen.grants],
    }


def run_reset_mfa(settings: Settings, args: argparse.Namespace) -> int:
    """Remove the user's second factor (a lost device)."""
    user, had = in_transaction(settings, lambda db: admin.reset_mfa(db, args.user, actor=ACTOR))
    if args.json:
        print(json.dumps({"sub": user.sub, "username": user.username, "had_second_factor": had}, indent=2))
    elif had:
        print(f"second factor removed for {user.username}; they sign in with their password and may set up a new one")
    else:
        print(f"{user.username} had no second factor; nothing to remove")
    return 0


def run_require_change(settings: Settings, args: argparse.Namespace) -> int:
    """Flag the user to choose a new password at the next sign-in."""
    user, changed = in_transaction(settings, lambda db: admin.require_password_change(db, args.user, actor=ACTOR))
    if args.json:
        print(json.dumps({**describe(user), "changed": changed}, indent=2))
    elif changed:
        print(f"{user.username} must choose a new password at their next sign-in")
    else:
        print(f"{user.username} was already required to choose a new password")
    return 0


def run_send_reset_link(settings: Settings, args: argparse.Namespace) -> int:
    """Queue a password-reset mail for the user."""
    user = in_transaction(settings, lambda db: admin.send_reset_link(db, args.user, actor=ACTOR))
    if args.json:
        print(json.dumps({"sub": user.sub, "username": user.username, "email": user.email, "queued": True}, indent=2))
    else:
        print(f"a password-reset link will be mailed to {user.email}")
    return 0


def run_update(settings: Settings, args: argparse.Namespace) -> int:
    """Change the profile fields given, and the admin role with ``--admin``/``--no-admin``."""
    changes = admin.ProfileChanges(
        username=args.username,
        email=args.email,
        name=args.name,
        email_verified=args.email_verified,
        is_admin=args.admin,
    )
    user = in_transaction(settings, lambda db: admin.update(db, args.user, changes, actor=ACTOR))
    if args.json:
        print(json.dumps(describe(user), indent=2))
    else:
        print(f"user {user.username} updated (sub {user.sub})")
    return 0


def run_disable(settings: Settings, args: argparse.Namespace) -> int:
    """Disable the account (its sessions end)."""
    return _set_disabled(settings, args, True)


def run_enable(settings: Settings, args: argparse.Namespace) -> int:
    """Enable the account again."""
    return _set_disabled(settings, args, False)


def _set_disabled(settings: Settings, args: argparse.Namespace, disabled: bool) -> int:
    """Disable or enable, saying whether anything changed."""
    user, changed = in_transaction(settings, lambda db: admin.set_disabled(db, args.user, disabled, actor=ACTOR))
    state = "disabled" if disabled else "enabled"
    if args.json:
        print(json.dumps({**describe(user), "changed": changed}, indent=2))
    elif changed:
        print(f"user {user.username} {state}")
    else:
        print(f"user {user.username} was already {state}")
    return 0


def run_delete(settings: Settings, args: argparse.Namespace) -> int:
    """Delete the account with everything it owns."""
    user = in_transaction(settings, lambda db: admin.delete(db, args.user, actor=ACTOR))
    if args.json:
        print(json.dumps({"sub": user.sub, "username": user.username, "deleted": True}, indent=2))
    else:
        print(f"user {user.username} deleted (sub {user.sub}); their sessions and tokens ended")
    return 0


def run_unlock(settings: Settings, args: argparse.Namespace) -> int:
    """Forget the user's failed sign-ins."""
    user = in_transaction(settings, lambda db: admin.unlock(db, args.user, actor=ACTOR))
    if args.json:
        print(json.dumps({"sub": user.sub, "username": user.username, "unlocked": True}, indent=2))
    else:
        print(f"user {user.username} unlocked: failed sign-ins forgotten")
    return 0


def describe(user: StoredUser) -> dict[str, Any]:
    """A user as every ``--json`` of these commands shows it (``id`` is the paging cursor)."""
    return {"id": user.id, **admin.describe_user(user)}
