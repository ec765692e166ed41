"""The hot paths, Ostiary beside node-oidc-provider in the same run.

    python bench/suite.py [--workers 1 2] [--seconds 10] [--runs 3] [--cases ...] [--no-anchor]

For each worker count: Ostiary on a scratch PostgreSQL database with N worker processes,
and node-oidc-provider (bench/anchor.py) with N processes in memory, serving at once and
driven by the same wrk scripts with 32 connections, taking turns run by run. Cases:
client_credentials, refresh_token (single-use tokens), authorization_code (single-use
codes with PKCE), jwks, discovery, introspection, userinfo. node-oidc-provider serves
every case. What it keeps in memory lives in one process, so the cases that need tokens
or codes made beforehand (refresh_token, authorization_code, introspection, userinfo) are
compared with one process only, unless ``--anchor-store postgres`` keeps its models in a
PostgreSQL database of its own on the same server (``anchor/pg_adapter.mjs``: durable, as
Ostiary is, and shared by its processes); it introspects opaque tokens only (a JWT access
token is refused), and its userinfo takes no token bound to a resource, so those two use its opaque
access tokens (a client's, a user's with ``openid``), where Ostiary's are JWTs.
Prints a Markdown table: medians and ranges, p50/p99, server CPU per request, peak RSS per
worker, and the ratio Ostiary / node-oidc-provider.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import anchor, seed
from bench.common import Probe, Result, add_run_options, fresh_database, measure_as, psql, serving, warm_up_seconds
from bench.ostiary_setup import free_port, prepare

SCRIPTS = {
    "client_credentials": ("client_credentials.lua", "/token"),
    "refresh_token": ("refresh_token.lua", "/token"),
    "authorization_code": ("authorization_code.lua", "/token"),
    "jwks": ("get.lua", "/jwks"),
    "discovery": ("get.lua", "/.well-known/openid-configuration"),
    "introspection": ("introspect.lua", "/introspect"),
    "userinfo": ("userinfo.lua", "/userinfo"),
}
#: the cases node-oidc-provider serves from what it made before listening: one process only
PRECREATED = ("refresh_token", "authorization_code", "introspection", "userinfo")
#: where node-oidc-provider serves a case at another path than Ostiary
ANCHOR_PATHS = {"introspection": "/token/introspection", "userinfo": "/me"}
#: single-use tokens and codes per measured run (per worker): above the fastest rate seen
PER_SECOND = 2_500
#: node-oidc-provider's pre-created refresh tokens and codes per second of a run: it uses
#: them in memory faster than Ostiary's per-worker rate (a shortfall shows up as errors, and fails)
ANCHOR_PER_SECOND = 6_000
#: the same, made in PostgreSQL (a round trip each): it serves them more slowly than in memory
DURABLE_ANCHOR_PER_SECOND = PER_SECOND


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_options(parser, workers=[1, 2])
    parser.add_argument("--cases", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--no-anchor", action="store_true", help="Ostiary only")
    parser.add_argument(
        "--anchor-store",
        choices=("memory", "postgres"),
        default="memory",
        help="where node-oidc-provider keeps its models: its in-memory adapter, or a PostgreSQL database",
    )
    parser.add_argument("--database", default="ostiary_bench_suite", help="scratch database (created and dropped)")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="OSTIARY_NAME=VALUE",
        help="a setting for Ostiary's server, e.g. OSTIARY_SIGNING_THREADS=1 (repeatable)",
    )
    args = parser.parse_args()
    args.settings = dict(setting.split("=", 1) for setting in args.setting)
    print(describe_machine(args))
    print(HEADER, flush=True)
    for workers in args.workers:
        run_side_by_side(args, workers)


def run_side_by_side(args: argparse.Namespace, workers: int) -> None:
    """Ostiary and node-oidc-provider serving at once, each case measured on both, taking
    turns run by run (bench.common.measure_side_by_side); prints a row per case."""
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        per_run = PER_SECOND * workers * max(args.seconds, warm_up_seconds(args.seconds))
        setup, _port = prepare(
            Path(work), runs=args.runs, per_run=per_run, database=args.database, settings=args.settings
        )
        stack.callback(psql, "test", f'DROP DATABASE IF EXISTS "{setup.database}" WITH (FORCE)')
        ours = stack.enter_context(serving(setup.env, workers))
        theirs = {} if args.no_anchor else _anchor_probes(args, workers, Path(work), stack)
        for case in args.cases:
            script, path = SCRIPTS[case]
            probes = [setup.probe(f"Ostiary {case}", ours, case, script, path)]
            if case in theirs:
                probes.append(theirs[case])
            results = measure_as(args, probes)
            print(row(case, workers, results[0], results[1] if len(results) > 1 else None), flush=True)


def _anchor_probes(
    args: argparse.Namespace, workers: int, work: Path, stack: contextlib.ExitStack[None]
) -> dict[str, Probe]:
    """node-oidc-provider's side of every case it serves, its servers started on ``stack``."""
    probes = {}
    database_url = None
    if args.anchor_store == "postgres":
        name = f"{args.database}_anchor"
        database_url = fresh_database(name).replace("postgresql+asyncpg://", "postgresql://", 1)
        stack.callback(psql, "test", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    cases = [case for case in args.cases if case not in PRECREATED]
    if cases:
        server = stack.enter_context(anchor.serving(free_port(), workers, database_url=database_url))
        for case in cases:
            script, path = SCRIPTS[case]
            probes[case] = Probe(f"node-oidc-provider {case}", server, script, path, lambda _run: {})
    cases = [case for case in args.cases if case in PRECREATED] if workers == 1 or database_url else []
    if cases:
        per_second = DURABLE_ANCHOR_PER_SECOND * workers if database_url else ANCHOR_PER_SECOND
        per_run = per_second * max(args.seconds, warm_up_seconds(args.seconds))
        made = anchor.Precreated(
            work,
            refresh_tokens=per_run * (args.runs + 1) if "refresh_token" in cases else 0,
            codes=per_run * (args.runs + 1) if "authorization_code" in cases else 0,
            tokens="introspection" in cases or "userinfo" in cases,
        )
        server = stack.enter_context(anchor.serving(free_port(), workers, precreated=made, database_url=database_url))
        for case in cases:
            script, path = SCRIPTS[case]
            env = _anchor_env(case, made, work, runs=args.runs)
            probes[case] = Probe(f"node-oidc-provider {case}", server, script, ANCHOR_PATHS.get(case, path), env)
    return probes


def _anchor_env(case: str, made: anchor.Precreated, work: Path, *, runs: int) -> Callable[[int], dict[str, str]]:
    """The wrk env of node-oidc-provider's run ``run`` of ``case``: its own share of the
    pre-created refresh tokens or codes (run 0 is the warm-up), or its pre-created token."""
    if case in ("introspection", "userinfo"):
        token = made.token(case)
        return lambda _run: {"TOKEN": token}
    whole = made.refresh_file if case == "refresh_token" else made.code_file
    files = [work / f"anchor-{case}-{run}.txt" for run in range(runs + 1)]
    seed.split(whole.read_text().split(), files)
    if case == "refresh_token":
        return lambda run: {"RT_FILE": str(files[run])}
    return lambda run: {
        "CODE_FILE": str(files[run]),
        "CODE_VERIFIER": seed.CODE_VERIFIER,
        "REDIRECT_URI": seed.REDIRECT_URI,
    }


HEADER = (
    "| case | workers | Ostiary req/s (range) | node-oidc-provider req/s (range) | ratio | "
    "Ostiary p50 / p99 ms | node p50 / p99 ms | Ostiary / node CPU ms/req | Ostiary peak RSS MiB/worker |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def row(case: str, workers: int, ours: Result, theirs: Result | None) -> str:
    def rate(result: Result) -> str:
        rps = [r.rps for r in result.runs]
        return f"{result.median_rps:,.0f} ({min(rps):,.0f}–{max(rps):,.0f})"

    def latency(result: Result) -> str:
        return f"{result.median_p50_ms:.1f} / {result.median_p99_ms:.1f}"

    def cpu(result: Result | None) -> str:
        return f"{result.cpu_per_request_ms:.2f}" if result else "–"

    ratio = f"{ours.median_rps / theirs.median_rps:.2f}×" if theirs else "–"
    rss = ", ".join(f"{m:.0f}" for m in ours.peak_rss_mib)
    return (
        f"| {case} | {workers} | {rate(ours)} | {rate(theirs) if theirs else '–'} | {ratio} | {latency(ours)} | "
        f"{latency(theirs) if theirs else '–'} | {cpu(ours)} / {cpu(theirs)} | {rss} |"
    )


def describe_machine(args: argparse.Namespace) -> str:
    postgres = psql("test", "SHOW server_version")
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    lines = [
        f"cores: {os.cpu_count()}; Python {platform.python_version()}; PostgreSQL {postgres}; "
        f"{wrk[0] if wrk else 'wrk'}",
        f"{anchor.version() if not args.no_anchor and anchor.install() else ''}"
        f"{f', models in {args.anchor_store}' if not args.no_anchor else ''}",
        f"wrk -t1 -c{args.connections}: a warm-up, then {args.runs} runs of {args.seconds} s per case",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
