"""Rotating refresh grants on PostgreSQL, each token used once, and how the cost depends on
table size (10^4 vs 10^6 rows already in the token tables: it must stay flat).

    python bench/refresh.py [--workers 1] [--seconds 10] [--runs 3] [--rows 10000 1000000]

Tokens are pre-created straight into the database (their SHA-256 digests, as the server
stores them) together with background rows: consumed tokens of other families, as a busy
server accumulates them. The requests mirror the node-oidc-provider anchor's
(shared/bench-anchor): scope ``offline_access api:read``, a JWT access token for
https://api.example.com, no ID token.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ADMIN_URL, HEADER, fresh_database, measure, ostiary, psql, server_env, serving


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(database: str, env: dict[str, str], live: int, background: int, token_files: list[Path]) -> dict[str, str]:
    ostiary(["db", "upgrade"], env)
    client = json.loads(
        ostiary(
            [
                "clients",
                "create",
                "--name",
                "bench",
                "--grant-type",
                "authorization_code",
                "--grant-type",
                "refresh_token",
                "--scope",
                "offline_access api:read",
                "--redirect-uri",
                "https://bench.example/cb",
                "--audience",
                "https://api.example.com",
                "--json",
            ],
            env,
        )
    )
    cid = client["client_id"]
    psql(
        database,
        "INSERT INTO users (id, sub, username, username_key, email_verified, created_at, updated_at) "
        "VALUES (1, 'bench-sub', 'bench', 'bench', false, now(), now())",
    )
    # Background: `background` consumed tokens in families of 10.
    psql(
        database,
        f"""
        INSERT INTO grants (id, client_id, user_id, scope, created_at, expires_at, amr, head_generation)
        SELECT 'bg-' || g, '{cid}', 1, 'offline_access api:read', now(), now() + interval '90 days', '[]', 11
        FROM generate_series(1, {max(background // 10, 1)}) AS g;
        INSERT INTO refresh_tokens (token_digest, grant_id, client_id, generation, created_at, expires_at, consumed_at)
        SELECT decode(md5('bg' || i) || md5('gb' || i), 'hex'), 'bg-' || (i / 10 + 1), '{cid}', i % 10 + 1,
               now(), now() + interval '30 days', now()
        FROM generate_series(0, {background - 1}) AS i;""",
    )
    # Live: one family per pre-created token, written to the file wrk reads.
    secret_prefix = os.urandom(8).hex()
    tokens = [f"bench{secret_prefix}{i:012d}xxxxxxxxx" for i in range(live)]
    share = live // len(token_files)  # every wrk run gets tokens of its own: each is used once
    for n, path in enumerate(token_files):
        path.write_text("\n".join(tokens[n * share : (n + 1) * share]) + "\n")
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as csv:
        for i, token in enumerate(tokens):
            csv.write(f"\\x{hashlib.sha256(token.encode()).hexdigest()},live-{i}\n")
    _copy_live(database, csv.name, cid, live)
    Path(csv.name).unlink()
    return client


def _copy_live(database: str, csv_path: str, client_id: str, live: int) -> None:
    psql(
        database,
        f"""
        INSERT INTO grants (id, client_id, user_id, scope, created_at, expires_at, amr, head_generation)
        SELECT 'live-' || g, '{client_id}', 1, 'offline_access api:read', now(), now() + interval '90 days', '[]', 1
        FROM generate_series(0, {live - 1}) AS g""",
    )
    base = ADMIN_URL.rsplit("/", 1)[0]
    script = (
        "CREATE TEMP TABLE seed (digest bytea, grant_id text);\n"
        f"\\copy seed FROM '{csv_path}' WITH (FORMAT csv)\n"
        "INSERT INTO refresh_tokens (token_digest, grant_id, client_id, generation, created_at, expires_at) "
        f"SELECT digest, grant_id, '{client_id}', 1, now(), now() + interval '30 days' FROM seed;\n"
        "ANALYZE;\n"
    )
    subprocess.run(["psql", f"{base}/{database}", "-v", "ON_ERROR_STOP=1", "-q"], input=script, text=True, check=True)


def _wrk_env(token_files: list[Path], client: dict[str, str], run: int) -> dict[str, str]:
    return {
        "RT_FILE": str(token_files[run]),
        "CLIENT_ID": client["client_id"],
        "CLIENT_SECRET": client["client_secret"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--live", type=int, default=0, help="pre-created tokens (default: enough for the runs)")
    args = parser.parse_args()
    live = args.live or 3_000 * args.workers * (args.runs + 1) * args.seconds
    print(
        f"cores: {os.cpu_count()}, workers: {args.workers}, {args.connections} connections, "
        f"{args.runs} x {args.seconds} s after a warm-up\n"
    )
    print(HEADER)
    for rows in args.rows:
        database = "ostiary_bench_refresh"
        url = fresh_database(database)
        with tempfile.TemporaryDirectory() as work:
            port = free_port()
            env = server_env(url, port, Path(work))
            token_files = [Path(work) / f"tokens-{run}.txt" for run in range(args.runs + 1)]
            client = seed(database, env, live, rows, token_files)
            with serving(env, args.workers) as server:
                wrk_env = functools.partial(_wrk_env, token_files, client)
                result = measure(
                    f"refresh_token, {rows:,} rows, {args.workers} worker(s)",
                    server,
                    "refresh_token.lua",
                    "/token",
                    runs=args.runs,
                    seconds=args.seconds,
                    connections=args.connections,
                    threads=1,
                    env=wrk_env,
                )
            print(result.row(), flush=True)
        psql("test", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
