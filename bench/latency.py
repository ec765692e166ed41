"""Latency under a load below the maximum: p99 at 80 % of each token path's maximum rate.

    python bench/latency.py [--workers 1 2] [--seconds 10] [--runs 3] [--share 0.8] [--cases ...]

For each worker count, Ostiary on a scratch PostgreSQL database, and for each case: a
warm-up; ``--runs`` runs flat out, whose median rate is the maximum; then the same number
of runs paced to ``--share`` of it. Prints a Markdown row per case: the maximum, the rate
the paced runs reached (and its share of the maximum), and their median p50, p99 and worst
latency.

wrk has no fixed-rate mode (wrk2, which has, is not in Debian). Pacing is wrk's own
``delay()`` hook (lua/pace.lua): each connection waits a delay before each request, so it
sends 1 / (delay + latency) requests a second. The first delay is the one the target would
need if answers took no time (a rate below the target), then short calibration runs add
the latency they saw. Starting from above the target would not converge: near the maximum
the latency grows to fill whatever delay is taken away, and the rate stays at the maximum.
The load stays closed-loop: a connection waiting for a slow answer sends nothing
meanwhile, so a stall of the server delays fewer requests than an open-loop load would
send into it (coordinated omission); the worst latency is printed for that reason.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Run, Server, add_run_options, psql, serving, warm_up_seconds, wrk_without_errors
from bench.ostiary_setup import Setup, prepare
from bench.suite import PER_SECOND, SCRIPTS

#: the token paths (issue 26's point 4); jwks and discovery can be asked for with --cases
TOKEN_PATHS = ("client_credentials", "refresh_token", "authorization_code", "introspection", "userinfo")
#: short paced runs that correct the delay before the measured ones
CALIBRATIONS = 3
#: issue 26's bound on p99 at 80 % of the maximum rate
BOUND_MS = 50.0


def next_delay_ms(delay_ms: float, *, connections: int, target: float, reached: float) -> float:
    """The delay per request that should give ``target`` requests a second, from a run at
    ``delay_ms`` that reached ``reached``: each connection's cycle is its delay plus the
    latency, so the latency is what a cycle took beyond the delay."""
    latency_ms = connections * 1000 / reached - delay_ms
    return max(0.0, connections * 1000 / target - latency_ms)


@dataclass
class Paced:
    case: str
    workers: int
    flat: list[Run]
    paced: list[Run]
    delay_ms: float

    def row(self) -> str:
        maximum = statistics.median(r.rps for r in self.flat)
        rates = [r.rps for r in self.flat]
        reached = statistics.median(r.rps for r in self.paced)
        p50 = statistics.median(r.p50_ms for r in self.paced)
        p99 = statistics.median(r.p99_ms for r in self.paced)
        worst = max(r.max_ms for r in self.paced)
        return (
            f"| {self.case} | {self.workers} | {maximum:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | "
            f"{reached:,.0f} ({reached / maximum:.0%}) | {self.delay_ms:.1f} | {p50:.1f} | {p99:.1f} | "
            f"{worst:.0f} | {'yes' if p99 < BOUND_MS else 'no'} |"
        )


HEADER = (
    f"| case | workers | maximum req/s (range) | paced req/s (share) | delay ms | p50 ms | p99 ms | worst ms | "
    f"p99 < {BOUND_MS:.0f} ms |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_options(parser, workers=[1, 2])
    parser.add_argument("--share", type=float, default=0.8, help="the paced rate, as a share of the maximum")
    parser.add_argument("--cases", nargs="+", choices=list(SCRIPTS), default=list(TOKEN_PATHS))
    parser.add_argument("--database", default="ostiary_bench_latency", help="scratch database (created and dropped)")
    args = parser.parse_args()
    if not 0 < args.share < 1:
        parser.error("--share must lie between 0 and 1")
    print(
        f"cores: {os.cpu_count()}; wrk -t1 -c{args.connections}: per case a warm-up, {args.runs} runs of "
        f"{args.seconds} s flat out, {CALIBRATIONS} calibration runs, {args.runs} runs paced to "
        f"{args.share:.0%}\n"
    )
    print(HEADER, flush=True)
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
            per_run = PER_SECOND * workers * max(args.seconds, warm_up_seconds(args.seconds))
            # single-use tokens and codes: a file for each run of a case (warm-up included)
            setup, _port = prepare(
                Path(work), runs=2 * args.runs + CALIBRATIONS, per_run=per_run, database=args.database
            )
            stack.callback(psql, "test", f'DROP DATABASE IF EXISTS "{setup.database}" WITH (FORCE)')
            server = stack.enter_context(serving(setup.env, workers))
            for case in args.cases:
                print(measure(args, setup, server, case, workers).row(), flush=True)


def measure(args: argparse.Namespace, setup: Setup, server: Server, case: str, workers: int) -> Paced:
    script, path = SCRIPTS[case]
    probe = setup.probe(case, server, case, script, path)
    files = itertools.count()  # each run takes the next file of single-use tokens or codes

    def run(seconds: int, delay_ms: float | None = None) -> Run:
        env = probe.env(next(files))
        if delay_ms is not None:
            env = {**env, "WRK_DELAY_MS": f"{delay_ms:.3f}"}
        return wrk_without_errors(
            case, script, server.base_url + path, seconds=seconds, connections=args.connections, env=env
        )

    run(warm_up_seconds(args.seconds))
    flat = [run(args.seconds) for _ in range(args.runs)]
    target = args.share * statistics.median(r.rps for r in flat)
    delay = args.connections * 1000 / target  # as if answers took no time: below the target
    for _ in range(CALIBRATIONS):
        trial = run(warm_up_seconds(args.seconds), delay)
        delay = next_delay_ms(delay, connections=args.connections, target=target, reached=trial.rps)
    paced = [run(args.seconds, delay) for _ in range(args.runs)]
    return Paced(case, workers, flat, paced, delay)


if __name__ == "__main__":
    main()
