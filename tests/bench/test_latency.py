"""``bench/latency.py`` still runs, and the pacing it relies on holds wrk back (no figure of
Ostiary's is checked: performance is measured by bench/, never asserted by tests)."""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.common import wrk
from bench.latency import next_delay_ms
from tests.bench.test_bench_scripts import positive, run_bench, table_rows


def test_the_delay_is_what_a_cycle_lacks_of_the_target() -> None:
    # 32 connections at a 10 ms delay reached 1,600/s: a 20 ms cycle, so 10 ms of latency;
    # 800/s asks for a 40 ms cycle, so a 30 ms delay.
    assert next_delay_ms(10.0, connections=32, target=800, reached=1600) == pytest.approx(30.0)
    # flat out (no delay) at 1,000/s: 32 ms of latency; 80 % asks for a 40 ms cycle
    assert next_delay_ms(0.0, connections=32, target=800, reached=1000) == pytest.approx(8.0)
    # a target above what was reached without delay cannot be paced for: no delay at all
    assert next_delay_ms(0.0, connections=32, target=1200, reached=1000) == 0.0


class _Empty(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects

    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def empty_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Empty)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_delay_holds_each_connection_to_one_request_per_delay(empty_server: str) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian package wrk)")
    # 2 connections waiting 100 ms before each request, for 2 s: at most 2 × 20 requests
    # (and one more each at the start), where flat out they make thousands.
    paced = wrk("get.lua", empty_server, seconds=2, connections=2, threads=1, env={"WRK_DELAY_MS": "100"})
    assert paced.errors == 0
    assert 4 <= paced.requests <= 2 * 21, paced


def test_the_latency_script_paces_each_case_below_its_maximum() -> None:
    output = run_bench(
        "latency.py", "--workers", "1", "--seconds", "1", "--runs", "1",
        "--database", f"ostiary_bench_latency_{uuid.uuid4().hex[:8]}",
        "--cases", "client_credentials", "refresh_token",
    )  # fmt: skip
    rows = table_rows(output)
    assert [row[0] for row in rows] == ["client_credentials", "refresh_token"], output
    for row in rows:  # maximum, paced rate and its share, delay, p50, p99, worst
        assert positive(row[2]) and positive(row[3]) and re.search(r"\(\d+%\)", row[3]), output
        assert row[8] in ("yes", "no"), output
