"""End to end: ``ostiary audit list``, run as a process over a trail the administration
commands wrote (and a few older events written into the database directly).

Newest first; ``--user`` (a username), ``--client``, ``--type`` (a kind and the kinds under
it) and ``--since`` narrow it, alone or together; ``--limit`` caps it; ``--json`` prints one
object per line. Admin changes name their actor (``admin`` for what ``create`` does, ``cli``
for the other commands) and the user or client they concern. Bad input gets one clear line
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from server.settings import Settings
from server.storage.engine import make_engine
from server.storage.models import AuditEvent, User
from tests.helpers import TestDatabase, make_settings, ostiary_command, ostiary_env
from tests.oidc import PASSWORD

FIELDS = {"id", "occurred_at", "kind", "actor", "user_sub", "client_id", "subject", "details"}
CHEAP_HASHING = {"OSTIARY_ARGON2_TIME_COST": "2", "OSTIARY_ARGON2_MEMORY_KIB": "19456"}
CAROL = "sub-carol"

Completed = subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class Trail:
    """What the ``trail`` fixture wrote, newest first in :data:`KINDS`."""

    settings: Settings
    tmp_path: Path
    alice: str  # her sub
    client_id: str


# The trail, newest first: what the commands wrote, then carol's older sign-ins (inserted
# directly, before the commands ran) as (minutes ago, kind, client).
OLDER = [
    (30, "login.failed", "other"),
    (90, "consent.granted", "legacy"),
    (180, "login.failed", "legacy"),
    (30 * 60, "login.succeeded", "legacy"),
]
BY_COMMANDS = ["grants.revoked", "session.ended", "client.disabled", "user.disabled", "client.created", "user.created"]
KINDS = [*BY_COMMANDS, *(kind for _, kind, _ in OLDER)]


def ostiary(settings: Settings, tmp_path: Path, *args: str, stdin: str | None = None) -> Completed:
    return subprocess.run(
        [*ostiary_command(), *args],
        input=stdin,
        env=ostiary_env(settings, **CHEAP_HASHING),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def succeeded(result: Completed) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def listed(trail: Trail, *filters: str) -> list[dict[str, Any]]:
    """``ostiary audit list --json`` with ``filters``: every line one JSON object."""
    out = succeeded(ostiary(trail.settings, trail.tmp_path, "audit", "list", "--json", *filters))
    events = [json.loads(line) for line in out.splitlines()]
    for event in events:
        assert set(event) == FIELDS, event
    return events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["kind"] for event in events]


async def _write_carols_past(url: str) -> None:
    now = datetime.now(UTC)
    engine = make_engine(url)
    try:
        async with engine.begin() as db:
            await db.execute(
                insert(User).values(sub=CAROL, username="carol", username_key="carol", created_at=now, updated_at=now)
            )
            for minutes, kind, client in reversed(OLDER):  # oldest first: ids in the order written
                await db.execute(
                    insert(AuditEvent).values(
                        occurred_at=now - timedelta(minutes=minutes),
                        kind=kind,
                        actor=CAROL,
                        user_sub=CAROL,
                        client_id=client,
                        details={"minutes_ago": minutes},
                    )
                )
    finally:
        await engine.dispose()


@pytest.fixture
def trail(database: TestDatabase, tmp_path: Path) -> Trail:
    settings = make_settings(database, tmp_path)
    asyncio.run(_write_carols_past(database.url))

    def run(*args: str, stdin: str | None = None) -> Any:
        return json.loads(succeeded(ostiary(settings, tmp_path, *args, stdin=stdin)))

    alice = run("users", "create", "--username", "alice", "--password-stdin", "--json", stdin=PASSWORD + "\n")["sub"]
    client_id = run("clients", "create", "--name", "reports", "--scope", "reports:read", "--json")["client_id"]
    run("users", "disable", "alice", "--json")
    run("clients", "disable", "--json", "--", client_id)
    run("sessions", "end", "alice", "--all", "--json")
    # `--client=ID` throughout: a generated client id may begin with "-".
    succeeded(ostiary(settings, tmp_path, "grants", "revoke", "--user", "alice", f"--client={client_id}"))
    return Trail(settings, tmp_path, alice, client_id)


def test_the_trail_newest_first_names_actor_user_and_client(trail: Trail) -> None:
    events = listed(trail)

    assert kinds(events) == KINDS
    ids = [event["id"] for event in events]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    concern = {event["kind"]: (event["actor"], event["user_sub"], event["client_id"]) for event in events[:6]}
    assert concern == {
        "user.created": ("admin", trail.alice, None),
        "client.created": ("admin", None, trail.client_id),
        "user.disabled": ("cli", trail.alice, None),
        "client.disabled": ("cli", None, trail.client_id),
        "session.ended": ("cli", trail.alice, None),
        "grants.revoked": ("admin", trail.alice, trail.client_id),
    }
    assert events[5]["details"] == {"username": "alice"}
    assert events[0]["details"] == {"count": 0}
    for event in events:
        occurred_at = datetime.fromisoformat(event["occurred_at"])
        assert occurred_at.utcoffset() == timedelta(0)
    ages = [datetime.now(UTC) - datetime.fromisoformat(event["occurred_at"]) for event in events[6:]]
    for age, (minutes, _, _) in zip(ages, OLDER, strict=True):
        assert timedelta(minutes=minutes) <= age < timedelta(minutes=minutes + 5)

    # Without --json: one line per event, in the same order.
    lines = succeeded(ostiary(trail.settings, trail.tmp_path, "audit", "list")).splitlines()

    assert len(lines) == len(KINDS)
    assert [line.split()[2] for line in lines] == KINDS
    assert "actor=admin" in lines[-5] and f"user={trail.alice}" in lines[-5]  # user.created
    assert "actor=cli" in lines[2] and f"client={trail.client_id}" in lines[2]  # client.disabled
    assert f"user={CAROL}" in lines[-1] and "client=legacy" in lines[-1]
    for line in lines:
        datetime.strptime(" ".join(line.split()[:2]), "%Y-%m-%d %H:%M:%SZ")


def test_each_filter_alone_and_together(trail: Trail) -> None:
    alice, client_id = trail.alice, trail.client_id

    by_alice = listed(trail, "--user", "alice")
    assert kinds(by_alice) == ["grants.revoked", "session.ended", "user.disabled", "user.created"]
    assert {event["user_sub"] for event in by_alice} == {alice}
    by_client = listed(trail, f"--client={client_id}")
    assert kinds(by_client) == ["grants.revoked", "client.disabled", "client.created"]
    assert {event["client_id"] for event in by_client} == {client_id}
    assert kinds(listed(trail, "--user", "alice", f"--client={client_id}")) == ["grants.revoked"]

    assert kinds(listed(trail, "--type", "user")) == ["user.disabled", "user.created"]
    assert kinds(listed(trail, "--type", "login")) == ["login.failed", "login.failed", "login.succeeded"]
    assert kinds(listed(trail, "--type", "login.failed")) == ["login.failed", "login.failed"]
    assert listed(trail, "--type", "log") == []  # a kind's prefix is not a kind
    assert listed(trail, "--type", "%") == []  # nor is a LIKE pattern

    assert kinds(listed(trail, "--since", "2h")) == [*BY_COMMANDS, "login.failed", "consent.granted"]
    assert kinds(listed(trail, "--since", "45m")) == [*BY_COMMANDS, "login.failed"]
    recent_carol = listed(trail, "--user", "carol", "--type", "login", "--since", "2h")
    assert [(event["kind"], event["client_id"]) for event in recent_carol] == [("login.failed", "other")]
    assert kinds(listed(trail, "--client", "legacy", "--since", "2h")) == ["consent.granted"]
    assert kinds(listed(trail, "--user", "carol", "--client", "legacy", "--type", "login")) == [
        "login.failed",
        "login.succeeded",
    ]

    assert kinds(listed(trail, "--limit", "2")) == KINDS[:2]
    carols = [kind for _, kind, _ in OLDER]
    assert kinds(listed(trail, "--user", "carol", "--limit", "3")) == carols[:3]


def test_bad_input_gets_one_clear_line(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)

    unknown = ostiary(settings, tmp_path, "audit", "list", "--user", "nobody")
    assert unknown.returncode == 2, (unknown.stdout, unknown.stderr)
    assert unknown.stderr.strip().splitlines() == ["ostiary: --user: no user named 'nobody'"]
    assert unknown.stdout == ""

    for option, value in (("--since", "yesterday"), ("--since", "-2h"), ("--limit", "0")):
        bad = ostiary(settings, tmp_path, "audit", "list", f"{option}={value}")
        assert bad.returncode == 2, (bad.stdout, bad.stderr)
        assert "Traceback" not in bad.stderr
        assert f"error: argument {option}:" in bad.stderr.splitlines()[-1]
        assert value in bad.stderr.splitlines()[-1]

    empty = succeeded(ostiary(settings, tmp_path, "audit", "list", "--since", "1d"))
    assert empty.strip() == "no audit events match"
