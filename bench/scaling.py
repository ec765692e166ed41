"""Does a hot path cost more when the token tables are big? Refresh rotation and
introspection with 10^4 vs 10^6 rows already in the tables (it must stay flat).

    python bench/scaling.py [--workers 1] [--seconds 10] [--runs 3] [--rows 10000 1000000]

The background rows are what a busy server accumulates: used refresh tokens of other
families (one grant per 10 of them) and revoked access tokens on the deny list. Refresh
tokens are pre-created so each is used once; the refresh requests mirror the
node-oidc-provider anchor's (scope ``offline_access api:read``, a JWT access token for
https://api.example.com). Introspection asks about a user's access token, so both the deny
list and its grant are looked up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import HEADER, add_run_options, measure_as, psql, serving, warm_up_seconds
from bench.ostiary_setup import prepare

CASES = {
    "refresh_token": ("refresh_token.lua", "/token"),
    "introspection_user": ("introspect.lua", "/introspect"),
}
#: single-use refresh tokens per run and worker: above the fastest rate seen
PER_SECOND = 2_500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    add_run_options(parser)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    args = parser.parse_args()
    print(
        f"cores: {os.cpu_count()}, workers: {args.workers}, {args.connections} connections, "
        f"{args.runs} x {args.seconds} s after a warm-up\n"
    )
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        servers = []
        for rows in args.rows:
            per_run = PER_SECOND * args.workers * max(args.seconds, warm_up_seconds(args.seconds))
            folder = Path(work) / str(rows)
            folder.mkdir()
            setup, _port = prepare(
                folder,
                runs=args.runs,
                per_run=per_run,
                background_rows=rows,
                database=f"ostiary_bench_scaling_{rows}",
                codes=False,
            )
            stack.callback(psql, "test", f'DROP DATABASE IF EXISTS "{setup.database}" WITH (FORCE)')
            servers.append((rows, setup, stack.enter_context(serving(setup.env, args.workers))))
        # Every table size served at once, taking turns run by run: a machine whose speed
        # drifts weighs on each size alike.
        for case, (script, path) in CASES.items():
            probes = [
                setup.probe(f"{case}, {rows:,} rows, {args.workers} worker(s)", server, case, script, path)
                for rows, setup, server in servers
            ]
            results = measure_as(args, probes)
            for result in results:
                print(result.row(), flush=True)


if __name__ == "__main__":
    main()
