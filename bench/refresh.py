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
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import seed
from bench.common import HEADER, fresh_database, measure, ostiary, psql, server_env, serving
from bench.ostiary_setup import free_port


def seed_database(database: str, env: dict[str, str], live: int, background: int, files: list[Path]) -> dict[str, str]:
    ostiary(["db", "upgrade"], env)
    client = seed.create_client(
        env,
        "--name",
        "bench",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "offline_access api:read",
        "--redirect-uri",
        seed.REDIRECT_URI,
        "--audience",
        seed.RESOURCE,
    )
    seed.insert_user(database)
    seed.background_refresh_rows(database, client["client_id"], background)
    seed.refresh_tokens(database, client["client_id"], live, files)
    return client


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
            client = seed_database(database, env, live, rows, token_files)
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
