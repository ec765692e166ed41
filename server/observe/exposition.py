"""``/metrics`` for all the workers of ``ostiary serve`` together, on ``OSTIARY_METRICS_PORT``.

prometheus_client's multiprocess mode: each worker writes its values to memory-mapped files
in one directory, and the supervisor, which serves no requests, adds them up at each scrape.
Counters of a worker that died stay in the sums (a counter never goes back); its gauges
leave with it.

The directory is a private one under ``TMPDIR`` (``/tmp``), removed at exit. Workers learn
it as ``PROMETHEUS_MULTIPROC_DIR`` from the environment they are started with, which
prometheus_client reads once, at import; the supervisor itself imported it before, and
keeps its own (unused) values in memory.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from threading import Thread
from typing import Any

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from ..settings import Settings
from .metrics import AgesFromInstants

log = logging.getLogger("ostiary.metrics")

_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class MetricsExport:
    """The shared directory and the HTTP server that reads it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = Path(tempfile.mkdtemp(prefix="ostiary-metrics-"))
        self._server: Any = None
        self._thread: Thread | None = None

    def start(self) -> None:
        """Prepare the directory for the workers about to start, and serve the sum.
        Exits with status 1 and a message when the port cannot be had."""
        os.environ[_DIRECTORY_VARIABLE] = str(self.path)
        registry = CollectorRegistry()
        registry.register(AgesFromInstants(multiprocess.MultiProcessCollector(None, path=str(self.path))))  # type: ignore[no-untyped-call]
        host, port = self.settings.host, self.settings.metrics_port
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            self.close()
            where = f"{host}:{port} (OSTIARY_METRICS_PORT)"
            print(f"ostiary: cannot serve metrics on {where}: {exc.strerror}", file=sys.stderr)
            raise SystemExit(1) from None
        log.info("metrics at http://%s:%d/metrics", host, port)

    def worker_died(self, pid: int | None) -> None:
        """Drop a dead worker's gauges (its counters stay in the sums)."""
        if pid is not None:
            multiprocess.mark_process_dead(pid, str(self.path))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        shutil.rmtree(self.path, ignore_errors=True)
