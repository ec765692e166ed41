"""The back-channel logout queue (``server.storage.logout_notices``), on both databases.

A session remembers each client given a code in it; ending the session queues one notice
per such client that registered a back-channel logout URI, in the ending's transaction.
Senders in several processes claim due notices under a lease and never hold the same one
at once; a notice is deleted once done, so the queue holds only what is pending.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from server.authn import sessions
from server.clients.service import register_client
from server.storage import logout_notices, sessions as session_store
from server.storage.base import utcnow
from server.storage.models import LogoutNotice
from server.users.service import create_user
from tests.helpers import Db

pytestmark = pytest.mark.anyio

LEASE = timedelta(minutes=2)


async def client(db: Db, name: str, uri: str | None) -> str:
    stored, _secret = await db(
        lambda s: register_client(
            s,
            name=name,
            grant_types=["authorization_code"],
            scopes=["openid"],
            redirect_uris=["https://rp.example.com/cb"],
            backchannel_logout_uri=uri,
        )
    )
    return stored.client_id


async def signed_in(db: Db, username: str, *client_ids: str) -> sessions.StartedSession:
    user = await db(lambda s: create_user(s, username=username, email=None, name=None, password_hash="x"))
    started = await db(lambda s: sessions.start(s, user_id=user.id, amr=["pwd"], acr="1", ttl=3600, replaces=None))
    for client_id in client_ids:
        for _twice in range(2):  # a second code in the session remembers the client once
            await db(lambda s, c=client_id: logout_notices.remember_client(s, started.session.sid, c))
    return started


async def count(db: Db) -> int:
    return int(await db(lambda s: s.execute(select(func.count()).select_from(LogoutNotice)).scalar_one()))


async def test_ending_a_session_queues_a_notice_for_each_client_that_asked(db: Db) -> None:
    told = await client(db, "Told", "https://told.example.com/logout")
    untold = await client(db, "Untold", None)
    started = await signed_in(db, "alice", told, untold)

    names = await db(lambda s: logout_notices.signed_in_clients(s, started.session.sid))
    assert [(app.name, app.notified) for app in names] == [("Told", True), ("Untold", False)]

    await db(lambda s: sessions.end(s, started.token))
    (notice,) = await db(lambda s: logout_notices.claim_due(s, limit=10, lease=LEASE))
    assert (notice.client_id, notice.sid, notice.uri, notice.attempts) == (
        told,
        started.session.sid,
        "https://told.example.com/logout",
        1,
    )
    await db(lambda s: sessions.end(s, started.token))
    assert await count(db) == 1, "a session ends once"


async def test_ending_every_session_of_a_user_queues_one_notice_per_session(db: Db) -> None:
    told = await client(db, "Told", "https://told.example.com/logout")
    first = await signed_in(db, "alice", told)
    user_id = first.session.user_id
    second = await db(lambda s: sessions.start(s, user_id=user_id, amr=["pwd"], acr="1", ttl=3600, replaces=None))
    await db(lambda s: logout_notices.remember_client(s, second.session.sid, told))

    assert await db(lambda s: session_store.end_user_sessions(s, user_id, "signed_out_everywhere")) == 2
    due = await db(lambda s: logout_notices.claim_due(s, limit=10, lease=LEASE))
    assert sorted(notice.sid for notice in due) == sorted([first.session.sid, second.session.sid])
    assert len({notice.jti for notice in due}) == 2


async def test_a_claimed_notice_is_not_due_again_until_its_lease_ends(db: Db) -> None:
    told = await client(db, "Told", "https://told.example.com/logout")
    started = await signed_in(db, "alice", told)
    await db(lambda s: sessions.end(s, started.token))
    (notice,) = await db(lambda s: logout_notices.claim_due(s, limit=10, lease=LEASE))
    assert await db(lambda s: logout_notices.claim_due(s, limit=10, lease=LEASE)) == []

    await db(lambda s: logout_notices.retry_later(s, notice.id, utcnow() - timedelta(seconds=1), "HTTP 500"))
    (again,) = await db(lambda s: logout_notices.claim_due(s, limit=10, lease=LEASE))
    assert (again.id, again.jti, again.attempts) == (notice.id, notice.jti, 2)
    assert await db(logout_notices.backlog) == (1, notice.created_at)

    await db(lambda s: logout_notices.done(s, notice.id))
    assert await count(db) == 0


async def test_concurrent_senders_never_claim_the_same_notice(db: Db) -> None:
    told = await client(db, "Told", "https://told.example.com/logout")
    for index in range(12):
        started = await signed_in(db, f"user{index}", told)
        await db(lambda s, token=started.token: sessions.end(s, token))

    claims = await asyncio.gather(
        *(db(lambda s: logout_notices.claim_due(s, limit=5, lease=LEASE)) for _sender in range(4))
    )
    ids = [notice.id for batch in claims for notice in batch]
    assert len(ids) == len(set(ids)) == 12


async def test_a_disabled_client_s_notice_is_claimed_without_a_uri(db: Db) -> None:
    from server.clients.service import set_disabled

    told = await client(db, "Told", "https://told.example.com/logout")
    started = await signed_in(db, "alice", told)
    await db(lambda s: sessions.end(s, started.token))
    await db(lambda s: set_disabled(s, told, True, actor="cli"))
    (notice,) = await db(lambda s: logout_notices.claim_due(s, limit=10, lease=LEASE))
    assert notice.uri is None
