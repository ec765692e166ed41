"""``ostiary serve``: prepare the database once, then run N uvicorn worker processes.

Each worker binds its own ``SO_REUSEPORT`` socket, so the kernel spreads connections over
them. With one shared listening socket (``uvicorn --workers``), 32 keep-alive connections
often all landed in one worker (bridge-measured.md, pitfall 16).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import signal
import socket
import sys
from multiprocessing.connection import wait
from typing import Any

import uvicorn

from ..app import create_app
from ..bootstrap import prepare
from ..logs import configure_logging
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
    asyncio.run(prepare(settings))
    log.info(
        "Ostiary serving %s on http://%s:%d with %d worker(s)",
        settings.issuer,
        settings.host,
        settings.port,
        settings.workers,
    )
    if settings.workers == 1:
        return _serve(settings, _bind(settings, reuse_port=False))
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
    config = uvicorn.Config(
        create_app(settings, freeze_gc=True),
        loop="uvloop" if _has_uvloop() else "asyncio",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_keep_alive=15,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _worker(settings: Settings) -> None:
    configure_logging(settings)
    raise SystemExit(_serve(settings, _bind(settings, reuse_port=True)))


def _supervise(settings: Settings) -> int:
    """Run the workers; stop them all on a signal, or when one of them dies."""
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(settings,), name=f"ostiary-worker-{i}") for i in range(settings.workers)
    ]
    for process in workers:
        process.start()
    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in workers:
            if process.is_alive() and process.pid is not None:
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    wait([process.sentinel for process in workers])
    if not stopping:
        dead = [p.name for p in workers if not p.is_alive()]
        log.error("worker %s exited; stopping the others", ", ".join(dead))
        stop(signal.SIGTERM, None)
    for process in workers:
        process.join(timeout=30)
    return 0 if stopping else 1


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
