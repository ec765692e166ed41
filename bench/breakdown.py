"""Where the time goes on each hot path, per request: the worker's CPU, what of it signing and
verifying take, PostgreSQL's CPU, and the round trips to PostgreSQL.

    python bench/breakdown.py [--seconds 10] [--runs 3] [--cases ...]

Ostiary with one worker on a scratch PostgreSQL database, driven by the suite's wrk scripts
(32 connections). For each case, after a warm-up, over ``--runs`` runs:

- worker CPU: the worker process's user and system time (``/proc/PID/stat``), all threads;
- signing: the JWTs the path signs and verifies per request (``SIGNS``, ``VERIFIES``: what
  each response carries and each request presents) times the time of one, measured in this
  process with the server's own signer and joserfc's verifier (``bench/signing.py``);
- Python and the rest: worker CPU less signing: the interpreter, Starlette, Authlib,
  SQLAlchemy, and the C under them (uvicorn's parser, asyncpg's protocol, the sockets);
- PostgreSQL CPU: the backends serving this database plus the WAL writer, background
  writer and checkpointer (a busy machine's other databases would count in those three);
- round trips: segments carrying data from the worker to PostgreSQL (``ss``'s
  ``data_segs_out`` of its connections to the server's port): asyncpg writes each
  statement's messages at once and waits for the answer, so one per statement.

Prints a Markdown table. A profile of one path, function by function, is ``profile.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ADMIN_URL,
    Run,
    add_run_options,
    cpu_seconds,
    psql,
    serving,
    warm_up_seconds,
    wrk_without_errors,
)
from bench.ostiary_setup import prepare
from bench.signing import CLAIMS, per_call_us, signer_for, verifier
from bench.suite import PER_SECOND, SCRIPTS

#: JWTs signed per request: the access token, and an ID token where ``openid`` is granted
#: (the seeded codes carry ``openid api:read``; the refresh tokens ``offline_access api:read``)
SIGNS = {"client_credentials": 1, "refresh_token": 1, "authorization_code": 2}
#: JWTs verified per request: the access token presented
VERIFIES = {"introspection": 1, "userinfo": 1}
CASES = ("client_credentials", "refresh_token", "authorization_code", "introspection", "userinfo", "jwks")
#: PostgreSQL's own processes that work for every database's writes
_SHARED_BACKENDS = ("walwriter", "background writer", "checkpointer")


@dataclass
class Sample:
    run: Run
    worker_cpu: float
    postgres_cpu: float
    segments: int


def postgres_pids(database: str) -> list[int]:
    """The backends connected to ``database``, and PostgreSQL's shared writers."""
    kinds = ", ".join(f"'{kind}'" for kind in _SHARED_BACKENDS)
    rows = psql("test", f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}' OR backend_type IN ({kinds})")
    return [int(pid) for pid in rows.split()]


def segments_to_postgres(pid: int) -> dict[str, int]:
    """``data_segs_out`` of each of ``pid``'s connections to PostgreSQL, by local address."""
    port = urlsplit(ADMIN_URL).port or 5432
    listed = subprocess.run(
        ["ss", "-tinpH", "state", "established", f"( dport = :{port} )"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    counts: dict[str, int] = {}
    # ss prints each connection on two lines: addresses and process, then its counters
    for head, info in zip(listed.splitlines()[::2], listed.splitlines()[1::2], strict=False):
        if f"pid={pid}," not in head:
            continue
        segments = re.search(r"\bdata_segs_out:(\d+)", info)
        counts[head.split()[2]] = int(segments.group(1)) if segments else 0
    return counts


def sample(database: str, worker: int, run: Callable[[], Run]) -> Sample:
    """Counters around ``run()`` (a wrk run, returning it)."""
    postgres = postgres_pids(database)
    cpu, pg_cpu, segments = cpu_seconds([worker]), cpu_seconds(postgres), segments_to_postgres(worker)
    result = run()
    after = segments_to_postgres(worker)
    # a connection the pool opened during the run counts from zero
    sent = sum(count - segments.get(address, 0) for address, count in after.items())
    alive = [pid for pid in postgres if Path(f"/proc/{pid}").exists()]
    return Sample(result, cpu_seconds([worker]) - cpu, cpu_seconds(alive) - pg_cpu, sent)


def crypto_ms() -> tuple[float, float]:
    """Milliseconds of CPU to sign one access token and to verify one, RS256 (in this process,
    the server's own signer and joserfc's verifier, as ``signing.py`` measures them)."""
    signer = signer_for("RS256", 2048)
    token = signer.sign(CLAIMS, typ="at+jwt")
    per_call_us(lambda: signer.sign(CLAIMS, typ="at+jwt"), 100)  # warm up
    sign = per_call_us(lambda: signer.sign(CLAIMS, typ="at+jwt"), 1000, clock=time.process_time) / 1000
    verify = per_call_us(verifier(signer, token), 5000, clock=time.process_time) / 1000
    return sign, verify


HEADER = (
    "| case | req/s | worker CPU ms/req | of which signing | Python and the rest | PostgreSQL CPU ms/req | "
    "round trips/req |\n|---|---:|---:|---:|---:|---:|---:|"
)


def row(case: str, samples: list[Sample], crypto: float) -> str:
    requests = sum(s.run.requests for s in samples)
    worker = sum(s.worker_cpu for s in samples) * 1000 / requests
    postgres = sum(s.postgres_cpu for s in samples) * 1000 / requests
    trips = sum(s.segments for s in samples) / requests
    rate = statistics.median(s.run.rps for s in samples)
    return (
        f"| {case} | {rate:,.0f} | {worker:.2f} | {crypto:.2f} | {worker - crypto:.2f} | {postgres:.2f} | {trips:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_options(parser)
    parser.add_argument("--cases", nargs="+", choices=list(SCRIPTS), default=list(CASES))
    parser.add_argument("--database", default="ostiary_bench_breakdown", help="scratch database (created and dropped)")
    args = parser.parse_args()
    sign, verify = crypto_ms()
    print(f"cores: {os.cpu_count()}; one worker; wrk -t1 -c{args.connections}: a warm-up, then {args.runs} runs "
          f"of {args.seconds} s per case; RS256 in this process: {sign * 1000:.0f} µs of CPU to sign an "
          f"access token, {verify * 1000:.0f} µs to verify one\n")  # fmt: skip
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        per_run = PER_SECOND * max(args.seconds, warm_up_seconds(args.seconds))
        setup, _port = prepare(Path(work), runs=args.runs, per_run=per_run, database=args.database)
        stack.callback(psql, "test", f'DROP DATABASE IF EXISTS "{setup.database}" WITH (FORCE)')
        server = stack.enter_context(serving(setup.env, 1))
        (worker,) = server.worker_pids()
        for case in args.cases:
            script, path = SCRIPTS[case]
            url = server.base_url + path

            def run(number: int, seconds: int, script: str = script, url: str = url, case: str = case) -> Run:
                env = setup.wrk_env(case, number, server)
                return wrk_without_errors(case, script, url, seconds=seconds, connections=args.connections, env=env)

            run(0, warm_up_seconds(args.seconds))
            samples = [
                sample(setup.database, worker, lambda number=number: run(number, args.seconds))
                for number in range(1, args.runs + 1)
            ]
            print(row(case, samples, SIGNS.get(case, 0) * sign + VERIFIES.get(case, 0) * verify), flush=True)


if __name__ == "__main__":
    main()
