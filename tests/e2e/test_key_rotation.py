"""Key rotation that no resource server notices, on PostgreSQL with two server processes.

Under continuous token issuance, a full rotate -> activate -> retire -> remove cycle runs
on shortened timings (JWKS max-age 2 s, key poll 1 s, tokens valid 5 s). A resource server
in its own process, caching the JWKS as Cache-Control allows, verifies every token.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt

from tests.e2e.process import create_client_with_cli, serving
from tests.helpers import TestDatabase, make_settings, ostiary_command, ostiary_env, run_ostiary, wait_healthy

FAST = {
    "OSTIARY_JWKS_MAX_AGE": "2",
    "OSTIARY_KEYS_POLL_INTERVAL": "1",
    "OSTIARY_ACCESS_TOKEN_TTL": "5",
    "OSTIARY_ID_TOKEN_TTL": "5",
}
AUDIENCE = "https://reports.example.com"


def _token(base: str, client: dict[str, str]) -> str:
    # A new connection each time: the kernel spreads them over both workers.
    response = httpx.post(
        base + "/token", data={"grant_type": "client_credentials"}, auth=(client["client_id"], client["client_secret"])
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_a_full_rotation_cycle_fails_no_verification(postgres_database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(postgres_database, tmp_path)
    env = ostiary_env(settings, **FAST)
    client = create_client_with_cli(settings, tmp_path)
    resource_server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("resource_server.py")), settings.issuer, AUDIENCE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert resource_server.stdin is not None
    timeline: list[tuple[float, str]] = []
    with serving(settings, tmp_path, "--workers", "2", **FAST) as (base, log):
        old_kid = httpx.get(base + "/jwks").json()["keys"][0]["kid"]
        start = time.monotonic()
        # When `keys rotate` began and ended: a loaded machine takes seconds to start a
        # command, and every delay below counts from its commit, somewhere in between.
        rotated: tuple[float, float] | None = None
        while rotated is None or time.monotonic() - start < rotated[1] + 18:
            if rotated is None and time.monotonic() - start > 2:
                began = time.monotonic() - start
                result = run_ostiary(["keys", "rotate"], env, cwd=tmp_path)
                assert result.returncode == 0, result.stderr
                rotated = (began, time.monotonic() - start)
            token = _token(base, client)
            timeline.append((time.monotonic() - start, jwt.get_unverified_header(token)["kid"]))
            resource_server.stdin.write(token + "\n")
            resource_server.stdin.flush()
            time.sleep(0.03)
        final_jwks = [k["kid"] for k in httpx.get(base + "/jwks").json()["keys"] if k["alg"] == "RS256"]
        listed = json.loads(run_ostiary(["keys", "list", "--json"], env, cwd=tmp_path).stdout)
    output, _ = resource_server.communicate(timeout=30)
    summary = json.loads(output.strip().splitlines()[-1])
    failures = [line for line in output.splitlines() if line.startswith("fail")]

    assert failures == [] and summary["failed"] == 0, failures[:5]
    assert summary["verified"] == len(timeline) > 100
    # Publish first, sign later: the resource server never met a kid it did not know.
    assert summary["unknown_kid_fetches"] == 0, summary
    kids = [kid for _, kid in timeline]
    new_kid = next(kid for kid in kids if kid != old_kid)
    switched = next(t for t, kid in timeline if kid == new_kid)
    # staging delay: max-age 2 + 2 polls of 1 s from the commit (plus poll lag under load)
    assert rotated is not None and rotated[0] + 4 <= switched <= rotated[1] + 4 + 6, (rotated, switched)
    # Both processes switch within a couple of poll intervals, and never go back.
    assert all(kid == new_kid for t, kid in timeline if t > switched + 2.5)
    # The old key is retired, kept while its tokens live (5 s + 2 polls), then removed.
    states = {k["kid"]: k["state"] for k in listed}
    assert states[old_kid] == "removed" and states[new_kid] == "active"
    assert final_jwks == [new_kid]
    assert not any("Traceback" in line for line in log)


def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    import asyncio

    from sqlalchemy import text

    from server.storage.engine import make_engine

    async def run() -> list[tuple[object, ...]]:
        engine = make_engine(url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(statement))
                return [tuple(r) for r in result.all()] if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_each_lifecycle_step_is_done_once_by_one_of_two_processes(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(postgres_database, tmp_path)
    env = ostiary_env(settings, **FAST)
    with serving(settings, tmp_path, "--workers", "2", **FAST):
        assert run_ostiary(["keys", "rotate"], env, cwd=tmp_path).returncode == 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if _sql(postgres_database.url, "SELECT kid FROM signing_keys WHERE state = 'removed'"):
                break
            time.sleep(0.5)
    events = _sql(
        postgres_database.url, "SELECT kind, count(*) FROM audit_events WHERE kind LIKE 'key.%' GROUP BY kind"
    )
    # created: the first RS256, PS256 and ES256 keys; the rest: the RS256 rotation
    assert dict(events) == {"key.created": 3, "key.staged": 1, "key.activated": 1, "key.retired": 1, "key.removed": 1}


def test_a_staged_key_that_does_not_decrypt_is_discarded_not_activated(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(postgres_database, tmp_path)
    env = ostiary_env(settings, **FAST)
    client = create_client_with_cli(settings, tmp_path)
    with serving(settings, tmp_path, **FAST) as (base, log):
        active = httpx.get(base + "/jwks").json()["keys"][0]["kid"]
        assert run_ostiary(["keys", "rotate"], env, cwd=tmp_path).returncode == 0
        _sql(postgres_database.url, "UPDATE signing_keys SET private_key_enc = 'x'::bytea WHERE state = 'next'")
        time.sleep(6)  # past the staging delay
        assert jwt.get_unverified_header(_token(base, client))["kid"] == active
    assert dict(
        _sql(
            postgres_database.url, "SELECT kind, count(*) FROM audit_events WHERE kind = 'key.discarded' GROUP BY kind"
        )
    ) == {"key.discarded": 1}
    assert not any("Traceback" in line for line in log)


def test_an_active_key_that_stops_decrypting_stops_the_process_with_a_message(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(postgres_database, tmp_path)
    env = ostiary_env(settings, **FAST)
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*ostiary_command(), "serve"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )
        wait_healthy(settings.issuer, process)
        _sql(postgres_database.url, "UPDATE signing_keys SET private_key_enc = 'x'::bytea WHERE state = 'active'")
        # Any key-set change makes the process rebuild its ring, and find the corrupt key.
        assert run_ostiary(["keys", "rotate", "--alg", "ES256", "--now"], env, cwd=tmp_path).returncode == 0
        process.wait(timeout=30)
    text = log_path.read_text()
    assert "stopping: the encrypted private key of" in text or "stopping: the private key of" in text
    assert "Traceback" not in text


def test_changing_the_key_encryption_secret_without_downtime(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    old, new = "o" * 40, "n" * 40
    assert run_ostiary(["db", "upgrade"], ostiary_env(settings, OSTIARY_KEYS_SECRET=old), cwd=tmp_path).returncode == 0
    with serving(settings, tmp_path, OSTIARY_KEYS_SECRET=old) as (base, _):
        kids = [k["kid"] for k in httpx.get(base + "/jwks").json()["keys"]]  # RS256, PS256, ES256
    both = {"OSTIARY_KEYS_SECRET": new, "OSTIARY_KEYS_SECRET_PREVIOUS": old}
    with serving(settings, tmp_path, **both) as (base, _):  # during the change, both are accepted
        result = run_ostiary(["keys", "rewrap"], ostiary_env(settings, **both), cwd=tmp_path)
        assert result.returncode == 0 and "re-encrypted 3 key(s)" in result.stdout
        assert httpx.get(base + "/healthz").status_code == 200
    with serving(settings, tmp_path, OSTIARY_KEYS_SECRET=new) as (base, _):
        assert [k["kid"] for k in httpx.get(base + "/jwks").json()["keys"]] == kids
    refused = run_ostiary(["serve"], ostiary_env(settings, OSTIARY_KEYS_SECRET=old), cwd=tmp_path)
    assert refused.returncode == 1 and "OSTIARY_KEYS_SECRET" in refused.stderr
