"""Setting up a scratch database for a benchmark: clients through the CLI, and users,
single-use refresh tokens and authorization codes written straight into PostgreSQL (their
SHA-256 digests, as the server stores them), in bulk."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from bench.common import ADMIN_URL, ostiary, psql

RESOURCE = "https://api.example.com"
REDIRECT_URI = "https://client.example.com/cb"
#: every pre-created code has this PKCE verifier
CODE_VERIFIER = "bench-verifier-" + "v" * 40


def create_client(env: dict[str, str], *options: str) -> dict[str, str]:
    client: dict[str, str] = json.loads(ostiary(["clients", "create", *options, "--json"], env))
    return client


def insert_user(database: str) -> None:
    """User 1, whom every seeded token and code belongs to. Its id is explicit, so the
    sequence behind ``users.id`` is moved past it: a user created later (``ostiary users
    create``) takes the next id instead of colliding with this one."""
    psql(
        database,
        "INSERT INTO users (id, sub, username, username_key, email_verified, created_at, updated_at) "
        "VALUES (1, 'bench-sub', 'bench', 'bench', false, now(), now());"
        "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))",
    )


def background_refresh_rows(database: str, client_id: str, rows: int) -> None:
    """``rows`` consumed refresh tokens in families of 10, as a busy server accumulates them."""
    psql(
        database,
        f"""
        INSERT INTO grants (id, client_id, user_id, scope, created_at, expires_at, amr, head_generation)
        SELECT 'bg-' || g, '{client_id}', 1, 'offline_access api:read', now(), now() + interval '90 days', '[]', 11
        FROM generate_series(1, {max(rows // 10, 1)}) AS g;
        INSERT INTO refresh_tokens (token_digest, grant_id, client_id, generation, created_at, expires_at, consumed_at)
        SELECT decode(md5('bg' || i) || md5('gb' || i), 'hex'), 'bg-' || (i / 10 + 1), '{client_id}', i % 10 + 1,
               now(), now() + interval '30 days', now()
        FROM generate_series(0, {rows - 1}) AS i;
        INSERT INTO revoked_access_tokens (jti, expires_at)
        SELECT 'bg-jti-' || i, now() + interval '1 hour' FROM generate_series(1, {rows}) AS i;""",
    )


def refresh_tokens(database: str, client_id: str, count: int, files: list[Path]) -> None:
    """``count`` live refresh tokens, one family each, split between ``files`` (one per wrk run)."""
    tokens = [_secret("rt", i) for i in range(count)]
    split(tokens, files)
    psql(
        database,
        f"""
        INSERT INTO grants (id, client_id, user_id, scope, created_at, expires_at, amr, head_generation)
        SELECT 'live-' || g, '{client_id}', 1, 'offline_access api:read', now(), now() + interval '90 days', '[]', 1
        FROM generate_series(0, {count - 1}) AS g""",
    )
    rows = [f"\\x{_sha256(token)},live-{i}" for i, token in enumerate(tokens)]
    _copy(
        database,
        rows,
        "digest bytea, grant_id text",
        "INSERT INTO refresh_tokens (token_digest, grant_id, client_id, generation, created_at, expires_at) "
        f"SELECT digest, grant_id, '{client_id}', 1, now(), now() + interval '30 days' FROM seed",
    )


def authorization_codes(database: str, client_id: str, count: int, files: list[Path], scope: str) -> None:
    """``count`` unused codes for user 1, all with :data:`CODE_VERIFIER`'s challenge."""
    codes = [_secret("ac", i) for i in range(count)]
    split(codes, files)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(CODE_VERIFIER.encode()).digest()).rstrip(b"=").decode()
    # Grant ids must be unique across calls: each exchange creates the grant its code names.
    rows = [f"\\x{_sha256(code)},g-{_sha256(code)[:24]}" for code in codes]
    _copy(
        database,
        rows,
        "digest bytea, grant_id text",
        "INSERT INTO authorization_codes (code_digest, client_id, user_id, grant_id, redirect_uri, scope, "
        "code_challenge, code_challenge_method, auth_time, acr, amr, created_at, expires_at) "
        f"SELECT digest, '{client_id}', 1, grant_id, '{REDIRECT_URI}', '{scope}', '{challenge}', 'S256', now(), "
        "'urn:ostiary:acr:password', '[\"pwd\"]', now(), now() + interval '2 hours' FROM seed",
    )


def _secret(kind: str, i: int) -> str:
    return f"{kind}{os.urandom(6).hex()}{i:012d}" + "x" * 16


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def split(values: list[str], files: list[Path]) -> None:
    share = len(values) // len(files)  # every wrk run gets values of its own: each is used once
    for n, path in enumerate(files):
        path.write_text("\n".join(values[n * share : (n + 1) * share]) + "\n")


def _copy(database: str, rows: list[str], columns: str, insert: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as csv:
        csv.write("\n".join(rows) + "\n")
    base = ADMIN_URL.rsplit("/", 1)[0]
    script = (
        f"CREATE TEMP TABLE seed ({columns});\n\\copy seed FROM '{csv.name}' WITH (FORMAT csv)\n{insert};\nANALYZE;\n"
    )
    try:
        subprocess.run(
            ["psql", f"{base}/{database}", "-v", "ON_ERROR_STOP=1", "-q"], input=script, text=True, check=True
        )
    finally:
        Path(csv.name).unlink()
