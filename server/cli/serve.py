"""``ostiary serve``: prepare the database once, then run N uvicorn worker processes,
replacing any that dies.

Each worker binds its own ``SO_REUSEPORT`` socket, so the kernel spreads connections over
them. With one shared listening socket (``uvicorn --workers``), 32 keep-alive connections
often all landed in one worker when measured.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections import deque
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

from ..bootstrap import StartupError, prepare
from ..observe import tracing
from ..observe.exposition import MetricsExport
from ..observe.logs import configure_logging
from ..settings import Settings

log = logging.getLogger("ostiary")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("serve", help="run the server (migrates an empty database, creates the first key)")
    parser.add_argument("--host", help="listen address (OSTIARY_HOST)")
    parser.add_argument("--port", help="listen port (OSTIARY_PORT)")
    parser.add_argument("--workers", help="worker processes (OSTIARY_WORKERS)")
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    configure_logging(settings)
    if tracing.wanted(os.environ):
        try:
            tracing.check_available()
        except tracing.TracingUnavailable as exc:
            raise StartupError(str(exc)) from None
    asyncio.run(prepare(settings))
    log.info(
        "Ostiary serving %s on http://%s:%d with %d worker(s)",
        settings.issuer,
        settings.host,
        settings.port,
        settings.workers,
    )
    if settings.workers == 1 and not settings.metrics_port:
        return _serve(settings, _bind(settings, reuse_port=False))
    # Metrics are summed across worker processes by the supervisor, so they need one even
    # for a single worker.
    return _supervise(settings)


def _bind(settings: Settings, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        print(f"ostiary: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(1) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _serve(settings: Settings, sock: socket.socket) -> int:
    # The app (Starlette, every endpoint and page) is imported only where it serves: every
    # other command, and the supervisor of spawned workers, skips a second of imports.
    from ..app import create_app

    traced = tracing.provider_from_environment() if tracing.wanted(os.environ) else None
    config = uvicorn.Config(
        create_app(settings, freeze_gc=True, tracer_provider=traced),
        loop="uvloop" if _has_uvloop() else "asyncio",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        # Forwarding headers are believed only from OSTIARY_TRUSTED_PROXIES (web/proxies.py),
        # not from uvicorn's implicit default of 127.0.0.1.
        proxy_headers=False,
        timeout_keep_alive=15,
        # SIGTERM: stop accepting, let requests in flight finish for this long, then stop
        # (the lifespan's end hands the mail sender's unsent claims back)
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )
    server = uvicorn.Server(config)
    # uvicorn stops gracefully at SIGTERM, then raises the signal again under the handler
    # it found: one that ignores it makes a requested stop exit 0, as the supervisor does
    signal.signal(signal.SIGTERM, _stopped)
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _stopped(signum: int, _frame: Any) -> None:
    return None


def _worker(settings: Settings) -> None:
    configure_logging(settings)
    raise SystemExit(_serve(settings, _bind(settings, reuse_port=True)))


def _supervise(settings: Settings) -> int:
    """Run ``settings.workers`` workers until SIGTERM or SIGINT, then stop them and return 0.

    A worker that dies (a crash, the OOM killer, ``kill -9``) is replaced while the others go
    on serving: its socket closed with it, so the kernel sends new connections to the others
    meanwhile and only the requests it held fail. When workers keep dying (more than
    ``_DEATHS_PER_WORKER`` per worker within ``_DEATH_WINDOW`` seconds: a port taken, a
    database gone, a bad configuration) restarting is no help: the others are stopped and the
    return value is 1, for the service manager to see.
    """
    export = MetricsExport(settings) if settings.metrics_port else None
    if export is not None:
        export.start()
    supervisor = _Supervisor(settings, export)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    try:
        return supervisor.run()
    finally:
        if export is not None:
            export.close()


_DEATH_WINDOW = 60.0
_DEATHS_PER_WORKER = 3
#: seconds a worker gets beyond OSTIARY_SHUTDOWN_GRACE_SECONDS to end its lifespan at a stop;
#: the total stays below the systemd unit's TimeoutStopSec, so a stuck worker is named in
#: the log before systemd kills everything
_STOP_MARGIN = 5.0


class _Supervisor:
    def __init__(self, settings: Settings, export: MetricsExport | None = None) -> None:
        self.settings = settings
        self.export = export
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[BaseProcess] = []
        self.deaths: deque[float] = deque()
        self.stopping = False

    def run(self) -> int:
        self.workers = [self._start(slot) for slot in range(self.settings.workers)]
        gave_up = False
        while not self.stopping and not gave_up:
            wait([process.sentinel for process in self.workers])
            if not self.stopping:
                gave_up = not self._replace_dead()
        self._stop_all()
        return 1 if gave_up else 0

    def stop(self, signum: int, _frame: Any) -> None:
        """The signal handler: the main loop ends once the workers it terminates are gone."""
        self.stopping = True
        for process in self.workers:
            if process.exitcode is None:
                process.terminate()

    def _start(self, slot: int) -> BaseProcess:
        process = self.context.Process(target=_worker, args=(self.settings,), name=f"ostiary-worker-{slot}")
        process.start()
        return process

    def _replace_dead(self) -> bool:
        """Start a new worker in each dead one's place; False when they die too often."""
        now = time.monotonic()
        for slot, process in enumerate(self.workers):
            if process.exitcode is None:
                continue
            log.error("%s (pid %s) %s", process.name, process.pid, _how_it_ended(process.exitcode))
            self.deaths.append(now)
            if self.export is not None:
                self.export.worker_died(process.pid)
            while self.deaths[0] < now - _DEATH_WINDOW:
                self.deaths.popleft()
            if len(self.deaths) > _DEATHS_PER_WORKER * len(self.workers):
                log.error(
                    "workers keep exiting (%d in the last %d s): giving up, exiting with status 1",
                    len(self.deaths),
                    _DEATH_WINDOW,
                )
                return False
            # Swapped in before the old one is closed: the signal handler may run in between.
            self.workers[slot] = self._start(slot)
            process.close()
            log.info("%s restarted (pid %s)", process.name, self.workers[slot].pid)
        return True

    def _stop_all(self) -> None:
        for process in self.workers:
            if process.exitcode is None:
                process.terminate()
        allowed = self.settings.shutdown_grace_seconds + _STOP_MARGIN
        deadline = time.monotonic() + allowed
        for process in self.workers:
            process.join(timeout=max(deadline - time.monotonic(), 0))
            if process.exitcode is None:
                log.error("%s (pid %s) did not stop in %d s: killing it", process.name, process.pid, allowed)
                process.kill()
                process.join()


def _how_it_ended(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
