"""``ostiary serve --workers 2`` as its own process: a worker that dies is replaced while the
other goes on serving; the server exits 0 when told to stop and non-zero only when it
cannot go on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from server.settings import Settings
from tests.helpers import TestDatabase, make_settings, ostiary_command, ostiary_env, run_ostiary, wait_healthy

LOAD_THREADS = 4


def worker_pids(supervisor: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    children: set[int] = set()
    for listing in Path(f"/proc/{supervisor}/task").glob("*/children"):
        children.update(int(pid) for pid in listing.read_text().split())
    return {pid for pid in children if b"spawn_main" in _cmdline(pid)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@contextmanager
def two_workers(settings: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``ostiary serve --workers 2``, both workers serving; stopped with SIGTERM at the end."""
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*ostiary_command(), "serve", "--workers", "2"],
            env=ostiary_env(settings),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{settings.port}", process)
            wait_for(lambda: log_path.read_text().count("Application startup complete") == 2, 60, "two workers")
            yield process, log_path
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)


@dataclass
class Load:
    """Threads that each call ``/jwks`` in a loop, a new connection every time (so the
    kernel spreads them over the workers' sockets), noting when each call began and
    whether it succeeded."""

    url: str
    results: list[tuple[float, bool]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                ok = httpx.get(self.url, timeout=5).status_code == 200
            except httpx.TransportError:
                ok = False
            self.results.append((began, ok))

    @contextmanager
    def running(self) -> Iterator[Load]:
        threads = [threading.Thread(target=self.run) for _ in range(LOAD_THREADS)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            for thread in threads:
                thread.join(timeout=30)


def test_a_killed_worker_is_replaced_while_the_other_keeps_serving(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    with two_workers(settings, tmp_path) as (supervisor, log_path):
        first = worker_pids(supervisor.pid)
        assert len(first) == 2
        with Load(f"http://127.0.0.1:{settings.port}/jwks").running() as load:
            time.sleep(0.5)
            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: len(worker_pids(supervisor.pid) - first) == 1, 60, "a new worker")
            wait_for(lambda: log_path.read_text().count("Application startup complete") == 3, 60, "it serves")
            serving_again = time.monotonic()
            time.sleep(max(killed + 3 - time.monotonic(), 0.5))
        assert worker_pids(supervisor.pid) & first == first - {victim}
        # Until the new worker served, the other one took every request but those the dead
        # one held (at most one per load thread); two seconds on, every request succeeds.
        meanwhile = [ok for began, ok in load.results if killed < began < serving_again]
        assert meanwhile.count(True) > 0 and meanwhile.count(False) <= LOAD_THREADS
        later = [ok for began, ok in load.results if began > killed + 2]
        assert later and all(later)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
    log = log_path.read_text()
    assert f"ostiary-worker-0 (pid {victim}) was killed by SIGKILL" in log or (
        f"ostiary-worker-1 (pid {victim}) was killed by SIGKILL" in log
    )
    assert "Traceback" not in log


def test_workers_that_cannot_start_stop_the_server_with_a_failure_status(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(database, tmp_path)
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: no worker can bind
        taken.bind(("127.0.0.1", settings.port))
        taken.listen()
        result = run_ostiary(["serve", "--workers", "2"], ostiary_env(settings), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "workers keep exiting" in result.stderr and "giving up" in result.stderr
    assert f"cannot listen on 127.0.0.1:{settings.port}" in result.stderr
    assert "Traceback" not in result.stderr
