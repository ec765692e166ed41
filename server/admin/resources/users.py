"""``/users``: accounts addressed by ``sub``, with their browser sessions and grants.

Every change goes through :mod:`server.users.admin` (the services the CLI and the console
use too) in one transaction, names ``call.actor`` in its audit row, and answers the
account as it is afterwards. Passwords are checked (policy, breached list) and hashed
before the transaction opens: argon2 and the breached-password look-up must not hold a
database connection. Giving or taking the admin role needs the full ``ostiary:admin``
scope, so a token for ``ostiary:admin:users`` cannot make an administrator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...authn.lockout import Lockout
from ...storage import IntegrityError, Session
from ...storage.row_locks import lock_user
from ...storage.users import StoredUser
from ...users import admin
from ...users.admin import ProfileChanges
from ...users.errors import UnknownUser, UserError
from ...users.service import check_new_password, validate_new_user
from ..calls import Call, Reply, version_of
from ..errors import Conflict, invalid

AREA = "users"
#: where a created account is found (the ``Location`` of a 201)
BASE = "/admin/api/v1/users"

_CREATE = {
    "username": "string",
    "email": "string?",
    "name": "string?",
    "email_verified": "boolean",
    "password": "string",
    "admin": "boolean",
    "require_password_change": "boolean",
}
_PATCH = {"username": "string", "email": "string?", "name": "string?", "email_verified": "boolean", "admin": "boolean"}


def detail(db: Session, username: str, lockout: Lockout) -> dict[str, Any]:
    """One account as GET, PATCH and the actions answer it (its ETag is this document's
    version): the summary, whether a second factor is enrolled, and the lockout counters
    (``password``, ``otp``) refusing sign-ins now."""
    seen = admin.standing(db, username, lockout)
    return {
        **admin.describe_user(seen.user),
        "second_factor": {"enrolled": seen.mfa_enrolled},
        "locked": list(seen.locked_factors),
    }


# -- the collection ---------------------------------------------------------------------------


async def list_users(call: Call) -> Reply:
    """``?q=`` (part of the username or e-mail address, any case) ``&limit=&cursor=``."""
    page = call.page()
    query = call.query.get("q") or None

    def work(db: Session) -> list[StoredUser]:
        return admin.list_users(db, query=query, after=page.position, limit=page.limit)

    found = await call.read(work)
    return Reply.listing([admin.describe_user(user) for user in found], page, found[-1].id if found else None)


async def create(call: Call) -> Reply:
    """A new account. Without ``password`` it cannot sign in with one until the user follows
    a reset link (``send-reset-link``); ``require_password_change`` makes the user choose a
    new one at the first sign-in."""
    body = call.body(_CREATE, required=("username",))
    if body.get("admin"):
        call.principal.require_full("granting the admin role")
    username, email, name = validate_new_user(body["username"], body.get("email"), body.get("name"))
    verified = bool(body.get("email_verified"))
    if verified and email is None:
        raise invalid("email_verified", "the user has no e-mail address")
    password_hash = await _hashed(call, body.get("password"), username, email)
    lockout = call.services.lockout

    def work(db: Session) -> dict[str, Any]:
        user = admin.create(
            db,
            username=username,
            email=email,
            name=name,
            password_hash=password_hash,
            email_verified=verified,
            is_admin=bool(body.get("admin")),
            must_change_password=bool(body.get("require_password_change")),
            actor=call.actor,
        )
        return detail(db, user.username, lockout)

    document = await _unique(call, work)
    reply = _answer(document, 201)
    reply.headers["Location"] = f"{BASE}/{document['sub']}"
    return reply


async def _hashed(call: Call, password: str | None, username: str, email: str | None) -> str | None:
    """The hash of a new account's password, once the policy and the breached list pass it."""
    if password is None:
        return None
    services = call.services
    await check_new_password(services.passwords, services.breached, password, username=username, email=email)
    return await services.passwords.hash_async(password)


# -- one account ------------------------------------------------------------------------------


def _username(db: Session, call: Call) -> str:
    return admin.find_by_sub(db, call.params["sub"]).username


def _changeable(db: Session, call: Call) -> str:
    """The username of the account the path names, for a change: an administrator's account
    is changed only with the full ``ostiary:admin`` scope (else a token for
    ``ostiary:admin:users`` could take one over: a new e-mail address, a reset link, the
    second factor reset). ``If-Match``, when given, must name its current version."""
    lock_user(db, call.params["sub"])
    user = admin.find_by_sub(db, call.params["sub"])
    if user.is_admin:
        call.principal.require_full("changing an administrator's account")
    call.check_version(lambda: stable(detail(db, user.username, call.services.lockout)))
    return user.username


def stable(document: dict[str, Any]) -> dict[str, Any]:
    """What an account's version (ETag) covers: all but the lockout counters, which anyone's
    failed sign-ins change, so that they cannot make an administrator's update fail."""
    return {name: value for name, value in document.items() if name != "locked"}


def _answer(document: dict[str, Any], status: int = 200) -> Reply:
    return Reply(document, status, version_of(stable(document)))


async def get_user(call: Call) -> Reply:
    lockout = call.services.lockout
    return _answer(await call.read(lambda db: detail(db, _username(db, call), lockout)))


async def update(call: Call) -> Reply:
    """A JSON merge patch of ``username``, ``email``, ``name``, ``email_verified``, ``admin``
    (null removes the e-mail address or the name). ``If-Match`` (optional) must name the
    current ETag; an empty patch changes nothing."""
    body = call.body(_PATCH)
    if "admin" in body:
        call.principal.require_full("giving or taking the admin role")
    changes = ProfileChanges(
        username=body.get("username"),
        email=_removable(body, "email"),
        name=_removable(body, "name"),
        email_verified=body.get("email_verified"),
        is_admin=body.get("admin"),
    )
    lockout = call.services.lockout

    def work(db: Session) -> dict[str, Any]:
        username = _changeable(db, call)
        if changes.empty():
            return detail(db, username, lockout)
        user = admin.update(db, username, changes, actor=call.actor)
        return detail(db, user.username, lockout)

    return _answer(await _unique(call, work))


async def _unique(call: Call, work: Callable[[Session], dict[str, Any]]) -> dict[str, Any]:
    """``work``, which checked that the username and address are free; another request that
    took one of them between that check and the write loses here, as 409 rather than 500."""
    try:
        return await call.run(work)
    except IntegrityError:
        raise Conflict("another account took that username or e-mail address at the same moment") from None


def _removable(body: dict[str, Any], name: str) -> str | None:
    """A field's new value; JSON null (removing it) is the services' empty string."""
    if name not in body:
        return None
    value: str | None = body[name]
    return "" if value is None else value


async def delete(call: Call) -> Reply:
    """The account and everything it owns: sessions, token families, second factors."""
    await call.run(lambda db: admin.delete(db, _changeable(db, call), actor=call.actor))
    return Reply(None)


# -- actions ----------------------------------------------------------------------------------


async def disable(call: Call) -> Reply:
    """Refuse the account every sign-in and token; its browser sessions end."""
    return await _action(call, lambda db, username: admin.set_disabled(db, username, True, actor=call.actor))


async def enable(call: Call) -> Reply:
    return await _action(call, lambda db, username: admin.set_disabled(db, username, False, actor=call.actor))


async def unlock(call: Call) -> Reply:
    """Forget the failed attempts counted against the account (password and second factor)."""
    return await _action(call, lambda db, username: admin.unlock(db, username, actor=call.actor))


async def reset_mfa(call: Call) -> Reply:
    """Remove the second factor and backup codes (a lost device)."""
    return await _action(call, lambda db, username: admin.reset_mfa(db, username, actor=call.actor))


async def require_password_change(call: Call) -> Reply:
    """The user chooses a new password at the next sign-in, before anything else."""
    return await _action(call, lambda db, username: admin.require_password_change(db, username, actor=call.actor))


async def _action(call: Call, change: Callable[[Session, str], object]) -> Reply:
    """Run ``change(db, username)`` on the account, then answer it as it is now."""
    lockout = call.services.lockout

    def work(db: Session) -> dict[str, Any]:
        username = _changeable(db, call)
        change(db, username)
        return detail(db, username, lockout)

    return _answer(await call.run(work))


async def send_reset_link(call: Call) -> Reply:
    """Queue a reset-link mail, as "forgot password" would; 409 for an account without an
    e-mail address or a disabled one (nothing to send, or nobody to send it to)."""

    def work(db: Session) -> None:
        username = _changeable(db, call)
        try:
            admin.send_reset_link(db, username, actor=call.actor)
        except UnknownUser:
            raise
        except UserError as error:
            raise Conflict(error.message) from None

    await call.run(work)
    return Reply({"queued": True}, 202)


# -- sessions and grants ----------------------------------------------------------------------


async def list_sessions(call: Call) -> Reply:
    """The live browser sessions, newest first (a handful: one page)."""
    _, found = await call.read(lambda db: admin.sessions(db, _username(db, call)))
    return Reply({"items": [admin.describe_session(session) for session in found], "next_cursor": None})


async def end_sessions(call: Call) -> Reply:
    """End every live session, and the token families bound to them: ``{"ended": n}``."""
    _, ended = await call.run(lambda db: admin.end_sessions(db, _changeable(db, call), actor=call.actor))
    return Reply({"ended": ended})


async def end_session(call: Call) -> Reply:
    sid = call.params["sid"]

    await call.run(lambda db: admin.end_session(db, _changeable(db, call), sid, actor=call.actor))
    return Reply(None)


async def list_grants(call: Call) -> Reply:
    """The live grants (token families), newest first."""
    _, found = await call.read(lambda db: admin.grants(db, _username(db, call)))
    return Reply({"items": [admin.describe_grant(grant) for grant in found], "next_cursor": None})


async def end_grants(call: Call) -> Reply:
    """Revoke every grant, or with ``?client=`` those of one client: ``{"revoked": n}``."""
    client_id = call.query.get("client") or None

    def work(db: Session) -> int:
        _, count = admin.end_grants(db, _changeable(db, call), actor=call.actor, client_id=client_id)
        return count

    return Reply({"revoked": await call.run(work)})


async def end_grant(call: Call) -> Reply:
    grant_id = call.params["grant_id"]

    await call.run(lambda db: admin.end_grant(db, _changeable(db, call), grant_id, actor=call.actor))
    return Reply(None)


ROUTES = [
    ("/users", "GET", AREA, list_users),
    ("/users", "POST", AREA, create),
    ("/users/{sub}", "GET", AREA, get_user),
    ("/users/{sub}", "PATCH", AREA, update),
    ("/users/{sub}", "DELETE", AREA, delete),
    ("/users/{sub}/disable", "POST", AREA, disable),
    ("/users/{sub}/enable", "POST", AREA, enable),
    ("/users/{sub}/unlock", "POST", AREA, unlock),
    ("/users/{sub}/reset-mfa", "POST", AREA, reset_mfa),
    ("/users/{sub}/require-password-change", "POST", AREA, require_password_change),
    ("/users/{sub}/send-reset-link", "POST", AREA, send_reset_link),
    ("/users/{sub}/sessions", "GET", AREA, list_sessions),
    ("/users/{sub}/sessions", "DELETE", AREA, end_sessions),
    ("/users/{sub}/sessions/{sid}", "DELETE", AREA, end_session),
    ("/users/{sub}/grants", "GET", AREA, list_grants),
    ("/users/{sub}/grants", "DELETE", AREA, end_grants),
    ("/users/{sub}/grants/{grant_id}", "DELETE", AREA, end_grant),
]
