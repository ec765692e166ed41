"""Every ``ostiary`` command turns a database error into one line on stderr and a non-zero
exit status: never a traceback, whatever the statement that failed."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from server.settings import Settings
from server.storage.models import User
from tests.helpers import TestDatabase, free_port, make_settings, ostiary_command, ostiary_env, run_ostiary
from tests.mail import run_sql

PASSWORD = "a long enough passphrase for bob\n"


def create_bob(settings: Settings, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ostiary_command(), "users", "create", "--username", "bob", "--password-stdin"],
        env=ostiary_env(settings, **env),
        input=PASSWORD,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("ostiary: ") and all(word in line for word in words), line


@pytest.mark.anyio
async def test_a_constraint_the_database_enforces_is_one_line(postgres_database: TestDatabase, tmp_path: Path) -> None:
    # A user written with an explicit id, as a bulk load does, leaves the id sequence behind:
    # the next insert collides with it.
    settings = make_settings(postgres_database, tmp_path)
    now = datetime.now(UTC)
    await run_sql(
        settings.database_url,
        insert(User).values(id=1, sub="s1", username="seeded", username_key="seeded", created_at=now, updated_at=now),
    )
    assert_one_line(create_bob(settings), "the database refused the change")


@pytest.mark.anyio
async def test_a_database_that_refuses_writes_is_one_line(database: TestDatabase, tmp_path: Path) -> None:
    # Reachable and migrated, so the command gets as far as its own statement.
    settings = make_settings(database, tmp_path)
    if database.kind == "sqlite":
        path = database.url.split(":///", 1)[1]
        settings = make_settings(TestDatabase("sqlite", f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"), tmp_path)
    else:
        name = database.url.rsplit("/", 1)[1]
        await run_sql(database.url, text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    assert_one_line(create_bob(settings), "read-only" if database.kind == "postgresql" else "readonly")


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    nowhere = TestDatabase("postgresql", f"postgresql+asyncpg://ostiary@127.0.0.1:{free_port()}/ostiary")
    for args in (["users", "reset-mfa", "bob"], ["db", "upgrade"], ["db", "cleanup"], ["clients", "list"]):
        done = run_ostiary(args, ostiary_env(make_settings(nowhere, tmp_path)))
        assert_one_line(done, "database")
