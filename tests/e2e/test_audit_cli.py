"""End to end: ``ostiary audit list``, run as a process over a trail the administration
commands wrote (and a few older events written into the database directly).

Newest first; ``--user`` (a username), ``--client``, ``--type`` (a kind and the kinds under
it) and ``--since`` narrow it, alone or together; ``--limit`` caps it; ``--json`` prints one
object per line. Admin changes name their actor (``admin`` for what ``create`` does, ``cli``
for the other commands) and the user or client they concern. Bad input gets one clear line
and a non-zero exit, never a traceback.

Each start of ``ostiary`` costs a second or two of imports: most command lines here are run
one after another by one process calling the command's entry point
(:class:`tests.e2e.process.Commands`); the listings of the whole trail run ``ostiary`` itself.
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
from tests.e2e.process import Commands
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
    return events_of(succeeded(ostiary(trail.settings, trail.tmp_path, "audit", "list", "--json", *filters)))


def events_of(out: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in out.splitlines()]
    for event in events:
        assert set(event) == FIELDS, event
    return events


def ostiary_each(settings: Settings, tmp_path: Path, *command_lines: list[str]) -> list[Completed]:
    """:func:`ostiary` for each of ``command_lines`` in turn, all run by one process."""
    commands = Commands(ostiary_env(settings, **CHEAP_HASHING), tmp_path)
    try:
        return [commands.run(*command_line) for command_line in command_lines]
    finally:
        commands.close()


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

    commands = Commands(ostiary_env(settings, **CHEAP_HASHING), tmp_path)
    try:

        def run(*args: str, stdin: str = "") -> Any:
            return json.loads(succeeded(commands.run(*args, stdin=stdin)))

        created = run("users", "create", "--username", "alice", "--password-stdin", "--json", stdin=PASSWORD + "\n")
        alice = created["sub"]
        client_id = run("clients", "create", "--name", "reports", "--scope", "reports:read", "--json")["client_id"]
        run("users", "disable", "alice", "--json")
        run("clients", "disable", "--json", "--", client_id)
        run("sessions", "end", "alice", "--all", "--json")
        # `--client=ID` throughout: a generated client id may begin with "-".
        succeeded(commands.run("grants", "revoke", "--user", "alice", f"--client={client_id}"))
    finally:
        commands.close()
    return Trail(settings, tmp_path, alice, client_id)


def test_the_trail_newest_first_names_actor_user_and_client(trail: Trail) -> None:
    events = listed(trail)

    assert kinds(events) == KINDS
    ids = [event["id"] for event in events]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    concern = {event["kind"]: (event["actor"], event["user_sub"], event["client_id"]) for event in events[:6]}
    assert concern == {
        "user.created": ("cli", trail.alice, None),
        "client.created": ("cli", None, trail.client_id),
        "user.disabled": ("cli", trail.alice, None),
        "client.disabled": ("cli", None, trail.client_id),
        "session.ended": ("cli", trail.alice, None),
        "grants.revoked": ("cli", trail.alice, trail.client_id),
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
    assert "actor=cli" in lines[-5] and f"user={trail.alice}" in lines[-5]  # user.created
    assert "actor=cli" in lines[2] and f"client={trail.client_id}" in lines[2]  # client.disabled
    assert f"user={CAROL}" in lines[-1] and "client=legacy" in lines[-1]
    for line in lines:
        datetime.strptime(" ".join(line.split()[:2]), "%Y-%m-%d %H:%M:%SZ")


def test_each_filter_alone_and_together(trail: Trail) -> None:
    alice, client_id = trail.alice, trail.client_id
    client = f"--client={client_id}"
    filter_sets = [
        ("--user", "alice"),
        (client,),
        ("--user", "alice", client),
        ("--type", "user"),
        ("--type", "login"),
        ("--type", "login.failed"),
        ("--type", "log"),
        ("--type", "%"),
        ("--since", "2h"),
        ("--since", "45m"),
        ("--user", "carol", "--type", "login", "--since", "2h"),
        ("--client", "legacy", "--since", "2h"),
        ("--user", "carol", "--client", "legacy", "--type", "login"),
        ("--limit", "2"),
        ("--user", "carol", "--limit", "3"),
    ]
    runs = ostiary_each(
        trail.settings, trail.tmp_path, *(["audit", "list", "--json", *filters] for filters in filter_sets)
    )
    listing = {filters: events_of(succeeded(run)) for filters, run in zip(filter_sets, runs, strict=True)}

    def filtered(*filters: str) -> list[dict[str, Any]]:
        return listing[filters]

    by_alice = filtered("--user", "alice")
    assert kinds(by_alice) == ["grants.revoked", "session.ended", "user.disabled", "user.created"]
    assert {event["user_sub"] for event in by_alice} == {alice}
    by_client = filtered(client)
    assert kinds(by_client) == ["grants.revoked", "client.disabled", "client.created"]
    assert {event["client_id"] for event in by_client} == {client_id}
    assert kinds(filtered("--user", "alice", client)) == ["grants.revoked"]

    assert kinds(filtered("--type", "user")) == ["user.disabled", "user.created"]
    assert kinds(filtered("--type", "login")) == ["login.failed", "login.failed", "login.succeeded"]
    assert kinds(filtered("--type", "login.failed")) == ["login.failed", "login.failed"]
    assert filtered("--type", "log") == []  # a kind's prefix is not a kind
    assert filtered("--type", "%") == []  # nor is a LIKE pattern

    assert kinds(filtered("--since", "2h")) == [*BY_COMMANDS, "login.failed", "consent.granted"]
    assert kinds(filtered("--since", "45m")) == [*BY_COMMANDS, "login.failed"]
    recent_carol = filtered("--user", "carol", "--type", "login", "--since", "2h")
    assert [(event["kind"], event["client_id"]) for event in recent_carol] == [("login.failed", "other")]
    assert kinds(filtered("--client", "legacy", "--since", "2h")) == ["consent.granted"]
    assert kinds(filtered("--user", "carol", "--client", "legacy", "--type", "login")) == [
        "login.failed",
        "login.succeeded",
    ]

    assert kinds(filtered("--limit", "2")) == KINDS[:2]
    carols = [kind for _, kind, _ in OLDER]
    assert kinds(filtered("--user", "carol", "--limit", "3")) == carols[:3]


def test_bad_input_gets_one_clear_line(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)

    bad_values = (("--since", "yesterday"), ("--since", "-2h"), ("--limit", "0"))
    unknown, *bad_ones, empty = ostiary_each(
        settings,
        tmp_path,
        ["audit", "list", "--user", "nobody"],
        *(["audit", "list", f"{option}={value}"] for option, value in bad_values),
        ["audit", "list", "--since", "1d"],
    )
    assert unknown.returncode == 2, (unknown.stdout, unknown.stderr)
    assert unknown.stderr.strip().splitlines() == ["ostiary: --user: no user named 'nobody'"]
    assert unknown.stdout == ""

    for (option, value), bad in zip(bad_values, bad_ones, strict=True):
        assert bad.returncode == 2, (bad.stdout, bad.stderr)
        assert "Traceback" not in bad.stderr
        assert f"error: argument {option}:" in bad.stderr.splitlines()[-1]
        assert value in bad.stderr.splitlines()[-1]

    assert succeeded(empty).strip() == "no audit events match"
