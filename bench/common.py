"""Shared benchmark machinery: a scratch PostgreSQL database, Ostiary as a process, wrk.

Load comes from wrk (Debian's package) in its own process on loopback; results are the
median and range of several runs after a warm-up. Nothing here is a test: figures go to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "lua"
ADMIN_URL = os.environ.get("OSTIARY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is missing: apt-get install wrk")
    return wrk


def psql(database: str, sql: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0]
    result = subprocess.run(
        ["psql", f"{base}/{database}", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def fresh_database(name: str) -> str:
    """(Re)create ``name`` and return its asyncpg URL."""
    admin_db = ADMIN_URL.rsplit("/", 1)[1]
    psql(admin_db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(admin_db, f'CREATE DATABASE "{name}"')
    return ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name


def ostiary(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "server", *args], env=env, input=stdin, capture_output=True, text=True, cwd=ROOT
    )
    if result.returncode != 0:
        sys.exit(f"ostiary {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def server_env(database_url: str, port: int, workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSTIARY_")}
    env.update(
        OSTIARY_DATABASE_URL=database_url,
        OSTIARY_ISSUER=f"http://127.0.0.1:{port}",
        OSTIARY_PORT=str(port),
        OSTIARY_KEYS_SECRET="bench-key-encryption-secret-0123456789",
        OSTIARY_KEYS_DIR=str(workdir / "keys"),
        OSTIARY_ACCESS_LOG="false",
        OSTIARY_LOG_LEVEL="WARNING",
        OSTIARY_CLEANUP_INTERVAL="0",
    )
    env.update(extra)
    return env


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(p) for p in children.read_text().split()] if children.exists() else []
        # --workers 1 serves in the parent itself; more workers are its children
        # (multiprocessing's resource tracker is a child too, but it serves nothing).
        return [pid for pid in pids if "resource_tracker" not in _cmdline(pid)] or [self.process.pid]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@contextmanager
def serving(env: dict[str, str], workers: int) -> Iterator[Server]:
    process = subprocess.Popen([sys.executable, "-m", "server", "serve", "--workers", str(workers)], env=env, cwd=ROOT)
    base = env["OSTIARY_ISSUER"]
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            sys.exit("ostiary did not start")
        time.sleep(1)  # let every worker finish its startup
        yield Server(process, base)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    #: the errors by wrk's kind (connect, read, write, status: a non-2xx answer, timeout)
    error_kinds: dict[str, int] = field(default_factory=dict)
    max_ms: float = 0.0


_ERROR_KINDS = ("connect", "read", "write", "status", "timeout")
#: wrk gives up on a response after this long and counts an error; its default of 2 s
#: failed runs on a shared host that stalls now and then for seconds, and a response it
#: gives up on is left out of the latency figures, where a slow one belongs
TIMEOUT_SECONDS = 10


def wrk(script: str, url: str, *, seconds: int, connections: int, threads: int, env: dict[str, str]) -> Run:
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as out:
        run_env = {**os.environ, **env, "LUA_DIR": str(LUA), "WRK_JSON": out.name, "WRK_THREADS": str(threads)}
        done = subprocess.run(
            [
                require_wrk(),
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                f"--timeout={TIMEOUT_SECONDS}s",
                "-s",
                str(LUA / script),
                url,
            ],
            env=run_env,
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            sys.exit(f"wrk {script} {url} failed:\n{done.stdout}{done.stderr}")
        line = json.loads(out.read().strip().splitlines()[-1])
    kinds = {kind: line[f"err_{kind}"] for kind in _ERROR_KINDS if line[f"err_{kind}"]}
    return Run(
        line["rps"],
        line["p50_us"] / 1000,
        line["p99_us"] / 1000,
        sum(kinds.values()),
        line["requests"],
        kinds,
        max_ms=line["max_us"] / 1000,
    )


def wrk_without_errors(name: str, script: str, url: str, *, seconds: int, connections: int, env: dict[str, str]) -> Run:
    """One :func:`wrk` run with one thread, which must answer every request with a 2xx: on
    any error the benchmark ends, naming ``name``."""
    run = wrk(script, url, seconds=seconds, connections=connections, threads=1, env=env)
    if run.errors:
        sys.exit(f"{name}: errors {run.error_kinds} (status: non-2xx answers)")
    return run


@dataclass
class Result:
    name: str
    runs: list[Run]
    cpu_per_request_ms: float
    peak_rss_mib: list[float]

    @property
    def median_rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def median_p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def median_p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    def row(self) -> str:
        rps = [r.rps for r in self.runs]
        p50 = statistics.median(r.p50_ms for r in self.runs)
        p99 = statistics.median(r.p99_ms for r in self.runs)
        errors = sum(r.errors for r in self.runs)
        rss = ", ".join(f"{m:.0f}" for m in self.peak_rss_mib)
        return (
            f"| {self.name} | {statistics.median(rps):,.0f} | {min(rps):,.0f}–{max(rps):,.0f} | {p50:.1f} | "
            f"{p99:.1f} | {errors} | {self.cpu_per_request_ms:.2f} | {rss} |"
        )


HEADER = (
    "| case | req/s (median) | range | p50 ms | p99 ms | errors | server CPU ms/req | peak RSS MiB/worker |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)


def add_run_options(parser: argparse.ArgumentParser, *, workers: list[int] | None = None) -> None:
    """The options the scripts share: how long each run lasts, how many runs, how many wrk
    connections (what :func:`measure_as` reads); with ``workers``, the worker counts to
    measure, those by default."""
    if workers is not None:
        parser.add_argument("--workers", type=int, nargs="+", default=workers)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)


def warm_up_seconds(seconds: int) -> int:
    """How long the warm-up before runs of ``seconds`` lasts (single-use tokens must cover it)."""
    return max(2, seconds // 3)


@dataclass
class Probe:
    """One server's side of a measurement: what to drive, and the wrk env of each run."""

    name: str
    server: Server
    script: str
    path: str
    env: Callable[[int], dict[str, str]]


def measure_side_by_side(
    probes: list[Probe], *, runs: int, seconds: int, connections: int, threads: int
) -> list[Result]:
    """Each probe's warm-up, then run 1 of every probe, run 2 of every probe, and so on.

    Taking turns run by run, rather than all of one server's runs before the other's, makes
    a machine whose speed drifts over minutes (a shared host's does) weigh on both alike.
    Each server's CPU is counted over its own runs only. Any non-2xx fails the benchmark.
    """
    for probe in probes:
        warm = wrk(
            probe.script,
            probe.server.base_url + probe.path,
            seconds=warm_up_seconds(seconds),
            connections=connections,
            threads=threads,
            env=probe.env(0),
        )
        if warm.errors:
            sys.exit(f"{probe.name}: errors during the warm-up: {warm.error_kinds}")
    pids = [probe.server.worker_pids() for probe in probes]
    cpu = [0.0] * len(probes)
    measured: list[list[Run]] = [[] for _ in probes]
    for run in range(1, runs + 1):
        for i, probe in enumerate(probes):
            before = cpu_seconds(pids[i])
            url = probe.server.base_url + probe.path
            measured[i].append(
                wrk(probe.script, url, seconds=seconds, connections=connections, threads=threads, env=probe.env(run))
            )
            cpu[i] += cpu_seconds(pids[i]) - before
    results = []
    for i, probe in enumerate(probes):
        total = sum(r.requests for r in measured[i])
        result = Result(probe.name, measured[i], cpu[i] * 1000 / max(total, 1), [peak_rss_mib(p) for p in pids[i]])
        if any(r.errors for r in measured[i]):
            kinds: Counter[str] = Counter()
            for r in measured[i]:
                kinds.update(r.error_kinds)
            sys.exit(f"{probe.name}: errors {dict(kinds)} (status: non-2xx answers)\n{result.row()}")
        results.append(result)
    return results


def measure_as(args: argparse.Namespace, probes: list[Probe]) -> list[Result]:
    """:func:`measure_side_by_side` with one wrk thread and the runs, seconds and
    connections of ``args`` (the scripts' command-line options)."""
    return measure_side_by_side(probes, runs=args.runs, seconds=args.seconds, connections=args.connections, threads=1)
