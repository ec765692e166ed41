"""What the admin service layer reads and changes, on every database.

``list_users`` pages by a cursor (the last id seen) in id order and searches usernames and
e-mail addresses case-insensitively, with ``%`` and ``_`` matching only themselves;
``list_live_for_user`` gives a user's grants that still work, newest first, and no other
user's; the audit trail pages backwards by ``before_id`` and is bounded by ``until``. And
the services over them: the admin role, a required password change, a reset link, ending
one grant, and the overview with the lockout state.
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from server.authn import sessions
from server.authn.lockout import FACTOR_PASSWORD, Lockout
from server.storage import (
    Session,
    audit,
    failures,
    grants as grant_store,
    users as user_store,
)
from server.storage.audit import EventFilter
from server.storage.base import utcnow
from server.storage.models import AuditEvent, MailOutbox
from server.storage.users import StoredUser
from server.users import admin
from server.users.errors import LastAdministrator, UnknownUser, UserError
from server.users.reset import LOOKUP_TEMPLATE
from tests.helpers import Db

pytestmark = pytest.mark.anyio


async def make_user(db: Db, username: str, email: str | None = None) -> StoredUser:
    """Stored as is (no validation): the search must cope with whatever the table holds."""
    return await db(
        lambda s: user_store.insert_user(
            s, sub=secrets.token_urlsafe(12), username=username, email=email, name=None, password_hash="x"
        )
    )


async def names(db: Db, *, query: str | None = None, after: int | None = None, limit: int = 100) -> list[str]:
    found = await db(lambda s: admin.list_users(s, query=query, after=after, limit=limit))
    return [user.username for user in found]


# -- list_users --------------------------------------------------------------------------


async def test_users_page_by_cursor_in_id_order(db: Db) -> None:
    created = [await make_user(db, f"user{n}") for n in range(5)]
    pages: list[list[StoredUser]] = []
    after: int | None = None
    while True:
        page = await db(lambda s, after=after: user_store.list_users(s, query=None, after=after, limit=2))
        if not page:
            break
        pages.append(page)
        after = page[-1].id
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [user.id for page in pages for user in page] == [user.id for user in created]
    ids = [user.id for user in created]
    assert ids == sorted(ids)

    # a user deleted between two pages neither shifts nor repeats the next page
    await db(lambda s: user_store.delete_user(s, created[2].id))
    assert await names(db, after=created[1].id, limit=2) == ["user3", "user4"]


async def test_users_search_matches_username_or_email_in_any_case(db: Db) -> None:
    await make_user(db, "Alice", "alice@Example.org")
    await make_user(db, "bob", "Robert@corp.example")
    await make_user(db, "carol", None)
    assert await names(db, query="ALI") == ["Alice"]
    assert await names(db, query="rob") == ["bob"]  # by the e-mail address
    assert await names(db, query="EXAMPLE") == ["Alice", "bob"]
    assert await names(db, query=" carol ") == ["carol"]
    assert await names(db, query="") == ["Alice", "bob", "carol"]
    assert await names(db, query="nobody") == []
    assert await names(db, query="example", limit=1) == ["Alice"]
    first = (await db(lambda s: user_store.list_users(s, query="example", after=None, limit=1)))[0]
    assert await names(db, query="example", after=first.id) == ["bob"]


async def test_users_search_takes_like_wildcards_literally(db: Db) -> None:
    await make_user(db, "a_b", "plain@example.com")
    await make_user(db, "axb", "x%y@example.com")
    await make_user(db, "xy", "xzy@example.com")
    await make_user(db, "back\\slash", "z@example.com")
    assert await names(db, query="_") == ["a_b"]
    assert await names(db, query="a_b") == ["a_b"]
    assert await names(db, query="%") == ["axb"]
    assert await names(db, query="x%y") == ["axb"]
    assert await names(db, query="\\") == ["back\\slash"]


async def test_list_users_refuses_a_bad_page(db: Db) -> None:
    for limit in (0, admin.MAX_PAGE + 1):
        with pytest.raises(UserError):
            await names(db, limit=limit)
    with pytest.raises(UserError):
        await names(db, after=-1)


async def test_a_user_is_found_by_sub_or_not_at_all(db: Db) -> None:
    alice = await make_user(db, "alice")
    assert (await db(lambda s: admin.find_by_sub(s, alice.sub))).id == alice.id
    with pytest.raises(UnknownUser) as unknown:
        await db(lambda s: admin.find_by_sub(s, "no-such-sub"))
    assert unknown.value.field == "USER"
    with pytest.raises(UnknownUser):
        await db(lambda s: admin.find(s, "nobody"))


# -- grants ------------------------------------------------------------------------------


async def grant(
    db: Db, user_id: int, *, client_id: str = "app", sid: str | None = None, ttl: timedelta = timedelta(days=30)
) -> str:
    grant_id = secrets.token_urlsafe(16)
    scope = "openid" if sid else "openid offline_access"
    await db(
        lambda s: grant_store.insert_grant(
            s,
            grant_id=grant_id,
            client_id=client_id,
            user_id=user_id,
            scope=scope,
            session_sid=sid,
            expires_at=utcnow() + ttl,
        )
    )
    time.sleep(0.005)  # distinct creation times, for the order
    return grant_id


async def test_live_grants_of_a_user_newest_first(db: Db) -> None:
    alice, bob = await make_user(db, "alice"), await make_user(db, "bob")
    started = await db(lambda s: sessions.start(s, user_id=alice.id, amr=["pwd"], acr="1", ttl=3600, replaces=None))
    offline = await grant(db, alice.id, client_id="mail")
    revoked = await grant(db, alice.id)
    await db(lambda s: grant_store.revoke(s, revoked, "test"))
    await grant(db, alice.id, ttl=timedelta(seconds=-1))  # past its end
    await grant(db, bob.id)
    bound = await grant(db, alice.id, sid=started.session.sid)

    live = await db(lambda s: grant_store.list_live_for_user(s, alice.id))
    assert [g.grant_id for g in live] == [bound, offline]
    assert live[0].session_sid == started.session.sid and live[0].scope == "openid"
    assert live[1].session_sid is None and live[1].client_id == "mail"
    assert live[0].created_at > live[1].created_at
    assert live[0].expires_at is not None and live[0].expires_at <= started.session.expires_at

    assert await db(lambda s: grant_store.get_live_for_user(s, alice.id, offline)) == live[1]
    assert await db(lambda s: grant_store.get_live_for_user(s, alice.id, revoked)) is None


async def test_an_admin_ends_one_grant_of_that_user_only(db: Db) -> None:
    alice, bob = await make_user(db, "alice"), await make_user(db, "bob")
    mine, other = await grant(db, alice.id), await grant(db, alice.id, client_id="other")
    bobs = await grant(db, bob.id)

    with pytest.raises(UserError) as refused:
        await db(lambda s: admin.end_grant(s, "alice", bobs, actor="cli"))
    assert refused.value.field == "GRANT"
    await db(lambda s: admin.end_grant(s, "alice", mine, actor="cli"))
    with pytest.raises(UserError):  # not live any more
        await db(lambda s: admin.end_grant(s, "alice", mine, actor="cli"))

    _, left = await db(lambda s: admin.grants(s, "alice"))
    assert [g.grant_id for g in left] == [other]
    assert [g.grant_id for g in await db(lambda s: grant_store.list_live_for_user(s, bob.id))] == [bobs]
    rows = await db(lambda s: audit.events(s, EventFilter(kind="grant.revoked"), limit=10))
    assert [(e.actor, e.user_sub, e.client_id, e.subject) for e in rows] == [("cli", alice.sub, "app", mine)]

    _, ended = await db(lambda s: admin.end_grants(s, "alice", actor="user:someone"))
    assert ended == 1
    (row,) = await db(lambda s: audit.events(s, EventFilter(kind="grants.revoked"), limit=10))
    assert row.actor == "user:someone" and row.details == {"count": 1}


# -- audit paging ------------------------------------------------------------------------


async def seed_events(db: Db, ages_in_minutes: list[int]) -> list[int]:
    """One ``test.event`` per age, written oldest first; their ids, in that order."""
    now = utcnow()

    def write(s: Session) -> list[int]:
        ids = []
        for age in sorted(ages_in_minutes, reverse=True):
            values = {"occurred_at": now - timedelta(minutes=age), "kind": "test.event", "subject": str(age)}
            ids.append(s.execute(insert(AuditEvent).values(details={}, **values).returning(AuditEvent.id)).scalar_one())
        return ids

    return await db(write)


async def subjects(db: Db, where: EventFilter, limit: int = 100) -> list[str | None]:
    return [event.subject for event in await db(lambda s: audit.events(s, where, limit=limit))]


async def test_audit_pages_backwards_by_id(db: Db) -> None:
    ids = await seed_events(db, [50, 40, 30, 20, 10])
    seen: list[str | None] = []
    before: int | None = None
    while True:
        where = EventFilter(kind="test", before_id=before)
        page = await db(lambda s, where=where: audit.events(s, where, limit=2))
        if not page:
            break
        seen += [event.subject for event in page]
        before = page[-1].id
    assert seen == ["10", "20", "30", "40", "50"]
    assert await subjects(db, EventFilter(before_id=ids[2])) == ["40", "50"]
    assert await subjects(db, EventFilter(before_id=ids[0])) == []


async def test_audit_until_bounds_the_time_alone_or_with_since(db: Db) -> None:
    await seed_events(db, [50, 40, 30, 20, 10])
    now = utcnow()
    assert await subjects(db, EventFilter(until=now - timedelta(minutes=25))) == ["30", "40", "50"]
    window = EventFilter(since=now - timedelta(minutes=45), until=now - timedelta(minutes=15))
    assert await subjects(db, window) == ["20", "30", "40"]
    assert await subjects(db, EventFilter(until=now - timedelta(hours=1))) == []
    later = EventFilter(until=now - timedelta(minutes=25), before_id=None)
    assert await subjects(db, later, limit=1) == ["30"]


# -- the services ------------------------------------------------------------------------


async def test_the_admin_role_is_given_and_taken_and_audited(db: Db) -> None:
    await make_user(db, "alice")
    await make_user(db, "bob")
    made = await db(lambda s: admin.update(s, "alice", admin.ProfileChanges(is_admin=True), actor="cli"))
    assert made.is_admin is True
    with pytest.raises(LastAdministrator):
        await db(lambda s: admin.update(s, "alice", admin.ProfileChanges(is_admin=False), actor="cli"))
    with pytest.raises(LastAdministrator):
        await db(lambda s: admin.set_disabled(s, "alice", True, actor="cli"))
    with pytest.raises(LastAdministrator):
        await db(lambda s: admin.delete(s, "alice", actor="cli"))
    await db(lambda s: admin.update(s, "bob", admin.ProfileChanges(is_admin=True), actor="cli"))
    taken = await db(lambda s: admin.update(s, "alice", admin.ProfileChanges(is_admin=False), actor="cli"))
    assert taken.is_admin is False
    assert not admin.ProfileChanges(is_admin=False).empty()
    rows = await db(lambda s: audit.events(s, EventFilter(kind="user.updated"), limit=10))
    assert [row.details for row in rows] == [
        {"changed": ["is_admin"], "admin": False},
        {"changed": ["is_admin"], "admin": True},
        {"changed": ["is_admin"], "admin": True},
    ]
    unchanged = await db(lambda s: admin.update(s, "alice", admin.ProfileChanges(name="Alice"), actor="cli"))
    again = await db(lambda s: admin.update(s, "alice", admin.ProfileChanges(name="Alice"), actor="cli"))
    assert unchanged.name == again.name == "Alice"
    assert len(await db(lambda s: audit.events(s, EventFilter(kind="user.updated"), limit=10))) == 4  # no no-op row


async def test_a_password_change_is_required_once(db: Db) -> None:
    await make_user(db, "alice")
    user, changed = await db(lambda s: admin.require_password_change(s, "alice", actor="cli"))
    assert changed and user.must_change_password
    user, changed = await db(lambda s: admin.require_password_change(s, "alice", actor="cli"))
    assert not changed and user.must_change_password
    rows = await db(lambda s: audit.events(s, EventFilter(kind="user.password_change_required"), limit=10))
    assert [(row.actor, row.user_sub) for row in rows] == [("cli", user.sub)]


async def test_a_reset_link_is_queued_for_an_enabled_user_with_an_address(db: Db) -> None:
    alice = await make_user(db, "alice", "alice@example.com")
    await make_user(db, "nomail")
    await db(lambda s: admin.send_reset_link(s, "alice", actor="cli"))
    queued = await db(lambda s: s.execute(select(MailOutbox.recipient, MailOutbox.template)).all())
    assert [tuple(row) for row in queued] == [("alice@example.com", LOOKUP_TEMPLATE)]
    with pytest.raises(UserError, match="no e-mail"):
        await db(lambda s: admin.send_reset_link(s, "nomail", actor="cli"))
    await db(lambda s: admin.set_disabled(s, "alice", True, actor="cli"))
    with pytest.raises(UserError, match="disabled"):
        await db(lambda s: admin.send_reset_link(s, "alice", actor="cli"))
    rows = await db(lambda s: audit.events(s, EventFilter(kind="user.reset_link_sent"), limit=10))
    assert [(row.actor, row.user_sub) for row in rows] == [("cli", alice.sub)]


async def test_the_overview_shows_the_lockout_and_what_is_live(db: Db) -> None:
    alice = await make_user(db, "alice")
    started = await db(lambda s: sessions.start(s, user_id=alice.id, amr=["pwd"], acr="1", ttl=3600, replaces=None))
    granted = await grant(db, alice.id, sid=started.session.sid)
    lockout = Lockout(threshold=2, window_seconds=600)

    seen = await db(lambda s: admin.overview(s, "alice", lockout))
    assert seen.locked_factors == () and seen.mfa_enrolled is False
    assert [s.sid for s in seen.sessions] == [started.session.sid]
    assert [g.grant_id for g in seen.grants] == [granted]

    for _ in range(2):
        await db(lambda s: failures.record(s, alice.id, FACTOR_PASSWORD, None))
    assert (await db(lambda s: admin.overview(s, "alice", lockout))).locked_factors == (FACTOR_PASSWORD,)
    await db(lambda s: admin.unlock(s, "alice", actor="cli"))
    assert (await db(lambda s: admin.overview(s, "alice", lockout))).locked_factors == ()
