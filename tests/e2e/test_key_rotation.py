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
from tests.helpers import TestDatabase, make_settings, ostiary_env, run_ostiary

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
        rotated = False
        while time.monotonic() - start < 20:
            if not rotated and time.monotonic() - start > 2:
                result = run_ostiary(["keys", "rotate"], env, cwd=tmp_path)
                assert result.returncode == 0, result.stderr
                rotated = True
            token = _token(base, client)
            timeline.append((time.monotonic() - start, jwt.get_unverified_header(token)["kid"]))
            resource_server.stdin.write(token + "\n")
            resource_server.stdin.flush()
            time.sleep(0.03)
        final_jwks = [k["kid"] for k in httpx.get(base + "/jwks").json()["keys"]]
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
    assert 2 + 4 <= switched <= 2 + 4 + 3  # staging delay: max-age 2 + 2 polls of 1 s (plus poll lag)
    # Both processes switch within a couple of poll intervals, and never go back.
    assert all(kid == new_kid for t, kid in timeline if t > switched + 2.5)
    # The old key is retired, kept while its tokens live (5 s + 2 polls), then removed.
    states = {k["kid"]: k["state"] for k in listed}
    assert states[old_kid] == "removed" and states[new_kid] == "active"
    assert final_jwks == [new_kid]
    assert not any("Traceback" in line for line in log)
