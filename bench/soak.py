"""Memory under sustained load: every hot path at once for five minutes, the resident set
of each worker sampled throughout. It must not grow once warm.

    python bench/soak.py [--workers 1] [--seconds 300] [--connections 8]

client_credentials, refresh_token (each token used once), introspection and userinfo run
side by side, one wrk each, after a warm-up of the same mix. Prints the RSS of each worker
every minute, its peak, and the growth from the end of the first minute to the end; and
each path's requests/s and errors (any non-2xx fails).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Run, peak_rss_mib, psql, serving, wrk
from bench.ostiary_setup import prepare

CASES = {
    "client_credentials": ("client_credentials.lua", "/token"),
    "refresh_token": ("refresh_token.lua", "/token"),
    "introspection": ("introspect.lua", "/introspect"),
    "userinfo": ("userinfo.lua", "/userinfo"),
}
#: refresh tokens per second of soak: above what refresh gets while sharing the cores
REFRESH_PER_SECOND = 1_000
WARM_UP = 20


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--connections", type=int, default=8, help="per path")
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--warm-up", type=int, default=WARM_UP, help="seconds of the same mix first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        setup, _port = prepare(
            Path(work),
            runs=1,
            per_run=REFRESH_PER_SECOND * max(args.seconds, args.warm_up) * args.workers,
            database="ostiary_bench_soak",
            codes=False,
        )
        with serving(setup.env, args.workers) as server:
            pids = server.worker_pids()

            def run_all(run: int, seconds: int) -> dict[str, Run]:
                with ThreadPoolExecutor(len(CASES)) as pool:
                    futures = {
                        case: pool.submit(
                            wrk,
                            script,
                            server.base_url + path,
                            seconds=seconds,
                            connections=args.connections,
                            threads=1,
                            env=setup.wrk_env(case, run, server),
                        )
                        for case, (script, path) in CASES.items()
                    }
                    return {case: future.result() for case, future in futures.items()}

            warm = run_all(0, args.warm_up)
            if any(r.errors for r in warm.values()):
                sys.exit(f"errors during the warm-up: { {c: r.errors for c, r in warm.items()} }")
            samples: list[tuple[float, list[float]]] = []
            stop = threading.Event()

            def sample() -> None:
                started = time.monotonic()
                while not stop.is_set():
                    samples.append((time.monotonic() - started, [rss_mib(pid) for pid in pids]))
                    stop.wait(args.sample_every)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            results = run_all(1, args.seconds)
            stop.set()
            sampler.join()
            samples.append((float(args.seconds), [rss_mib(pid) for pid in pids]))
            peaks = [peak_rss_mib(pid) for pid in pids]
        psql("test", f'DROP DATABASE IF EXISTS "{setup.database}" WITH (FORCE)')
    report(args, results, samples, peaks)
    if any(r.errors for r in results.values()):
        sys.exit("the soak had errors")


def report(
    args: argparse.Namespace, results: dict[str, Run], samples: list[tuple[float, list[float]]], peaks: list[float]
) -> None:
    print(f"cores: {os.cpu_count()}, workers: {args.workers}, {args.connections} connections per path, "
          f"{args.seconds} s after a {args.warm_up} s warm-up\n")  # fmt: skip
    print("| path | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|")
    for case, run in results.items():
        print(f"| {case} | {run.rps:,.0f} | {run.p50_ms:.1f} | {run.p99_ms:.1f} | {run.errors} |")
    print("\n| elapsed | RSS MiB per worker |\n|---:|---|")
    minute_marks = sorted({min(samples, key=lambda s: abs(s[0] - m))[0] for m in range(0, args.seconds + 1, 60)})
    for index, (elapsed, rss) in enumerate(samples):
        if elapsed in minute_marks or index == len(samples) - 1:
            print(f"| {elapsed:.0f} s | {', '.join(f'{m:.1f}' for m in rss)} |")
    first_minute = min(samples, key=lambda s: abs(s[0] - 60))[1]
    end = samples[-1][1]
    growth = ", ".join(f"{b - a:+.1f}" for a, b in zip(first_minute, end, strict=True))
    print(f"\npeak RSS MiB per worker: {', '.join(f'{p:.0f}' for p in peaks)}; growth from 1 min to the end: {growth}")


if __name__ == "__main__":
    main()
