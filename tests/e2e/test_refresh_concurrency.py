"""Concurrent refreshes of one token against two server processes on one PostgreSQL.

RFC 9700 §4.14.2 rotation must hold under the races users of the anchors keep reporting:
exactly one refresh wins; the rest are reuse (or, with grace on, replacements of the head
that leave one usable chain), never a 500 or a serialization error leaking out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import httpx
from sqlalchemy import text

from server.storage.engine import make_engine
from tests.e2e.process import create_client_with_cli, create_user_with_cli, serving, sign_in
from tests.helpers import TestDatabase, make_settings
from tests.oidc import REDIRECT_URI

CONCURRENCY = 20


async def _burst(base: str, token: str, auth: tuple[str, str]) -> list[httpx.Response]:
    # No keep-alive: every request opens its own connection, so the kernel spreads them
    # over both workers' SO_REUSEPORT sockets.
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        form = {"grant_type": "refresh_token", "refresh_token": token}
        return await asyncio.gather(*(http.post("/token", data=form, auth=auth) for _ in range(CONCURRENCY)))


async def _rows(url: str, statement: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(text(statement))).all()]
    finally:
        await engine.dispose()


def _prepare(settings: object, tmp_path: Path, **env: str) -> dict[str, str]:
    create_user_with_cli(settings, tmp_path, "alice", **env)  # type: ignore[arg-type]
    return create_client_with_cli(
        settings,  # type: ignore[arg-type]
        tmp_path,
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "openid offline_access",
        "--redirect-uri",
        REDIRECT_URI,
        "--first-party",
    )


def test_twenty_concurrent_refreshes_have_exactly_one_winner(postgres_database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(postgres_database, tmp_path)
    client = _prepare(settings, tmp_path)
    auth = (client["client_id"], client["client_secret"])
    with serving(settings, tmp_path, "--workers", "2") as (base, log):
        tokens = sign_in(base, client, "alice", "openid offline_access")
        responses = asyncio.run(_burst(base, tokens["refresh_token"], auth))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (CONCURRENCY - 1), [r.text for r in responses if r.status_code != 400]
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
    # The losers were reuse: the family is revoked, once, with one alert.
    revoked = asyncio.run(_rows(postgres_database.url, "SELECT revoked_reason FROM grants"))
    assert revoked == [("refresh_token_reuse",)]
    alerts = asyncio.run(
        _rows(postgres_database.url, "SELECT count(*) FROM audit_events WHERE kind = 'refresh_token.reuse'")
    )
    assert alerts == [(1,)]
    assert not any("Traceback" in line or " 500" in line for line in log)


def test_with_grace_every_copy_is_answered_and_one_chain_stays_usable(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(postgres_database, tmp_path)
    env = {"OSTIARY_REFRESH_REUSE_GRACE_SECONDS": "60"}
    client = _prepare(settings, tmp_path, **env)
    auth = (client["client_id"], client["client_secret"])
    with serving(settings, tmp_path, "--workers", "2", **env) as (base, log):
        tokens = sign_in(base, client, "alice", "openid offline_access")
        responses = asyncio.run(_burst(base, tokens["refresh_token"], auth))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
        # Each copy after the first replaced the head: one token of the burst is usable.
        unused = "SELECT token_digest FROM refresh_tokens WHERE consumed_at IS NULL"
        usable = {bytes(row[0]) for row in asyncio.run(_rows(postgres_database.url, unused))}  # type: ignore[arg-type]
        issued = [r.json()["refresh_token"] for r in responses]
        (survivor,) = [token for token in issued if hashlib.sha256(token.encode()).digest() in usable]
        follow = httpx.post(base + "/token", data={"grant_type": "refresh_token", "refresh_token": survivor}, auth=auth)
        assert follow.status_code == 200
    families = asyncio.run(_rows(postgres_database.url, "SELECT id, revoked_at FROM grants"))
    assert len(families) == 1 and families[0][1] is None
    in_family = asyncio.run(_rows(postgres_database.url, "SELECT count(DISTINCT grant_id) FROM refresh_tokens"))
    assert in_family == [(1,)]
    alerts = asyncio.run(_rows(postgres_database.url, "SELECT details FROM audit_events WHERE kind LIKE 'refresh%'"))
    assert alerts == [], [json.dumps(a) for a in alerts]
    assert not any("Traceback" in line for line in log)


def test_an_admin_revokes_a_users_families(database: TestDatabase, tmp_path: Path) -> None:
    from tests.helpers import ostiary_env, run_ostiary

    settings = make_settings(database, tmp_path)
    client = _prepare(settings, tmp_path)
    with serving(settings, tmp_path) as (base, _):
        tokens = sign_in(base, client, "alice", "openid offline_access")
        result = run_ostiary(["grants", "revoke", "--user", "alice"], ostiary_env(settings), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "revoked 1 grant(s)" in result.stdout
        refresh = httpx.post(
            base + "/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(client["client_id"], client["client_secret"]),
        )
        assert refresh.json()["error"] == "invalid_grant"
    unknown = run_ostiary(["grants", "revoke", "--user", "nobody"], ostiary_env(settings), cwd=tmp_path)
    assert unknown.returncode == 2 and "--user" in unknown.stderr


def test_a_password_change_ends_the_users_families_and_sessions(database: TestDatabase, tmp_path: Path) -> None:
    import subprocess

    from tests.helpers import ostiary_command, ostiary_env
    from tests.oidc import Flow, forms_of

    settings = make_settings(database, tmp_path)
    client = _prepare(settings, tmp_path)
    auth = (client["client_id"], client["client_secret"])
    with serving(settings, tmp_path) as (base, _), httpx.Client(base_url=base) as browser:
        tokens = sign_in(base, client, "alice", "openid offline_access")
        # A browser signed in before the change...
        flow = Flow.start(client["client_id"])
        page = browser.get("/authorize", params=flow.params(scope="openid"))
        (form,) = forms_of(page.text)
        signed_in = browser.post(
            form.action, data={**form.fields, "username": "alice", "password": "correct horse battery staple"}
        )
        assert signed_in.status_code == 303
        changed = subprocess.run(
            [*ostiary_command(), "users", "set-password", "--username", "alice", "--password-stdin"],
            input="a brand new passphrase\n",
            env=ostiary_env(settings),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert changed.returncode == 0, changed.stderr
        assert "1 token families ended" in changed.stdout
        refresh = httpx.post(
            base + "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth
        )
        assert refresh.json()["error"] == "invalid_grant"
        # ...must sign in again.
        again = browser.get("/authorize", params=Flow.start(client["client_id"]).params(scope="openid"))
        assert again.status_code == 200 and 'name="password"' in again.text
