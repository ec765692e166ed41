"""``/metrics`` of ``ostiary serve --workers 2``: served on its own port only, and what the
two workers counted adds up (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.process import create_client_with_cli, start_serving
from tests.e2e.test_workers import wait_for, worker_pids
from tests.helpers import TestDatabase, free_port, make_settings, wait_healthy

REQUESTS = 40


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, by name and sorted labels."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def token_requests(base: str, client: dict[str, str], count: int) -> None:
    """``count`` client_credentials grants, each on a new connection, so that the kernel
    spreads them over both workers' sockets."""
    for _ in range(count):
        response = httpx.post(
            base + "/token",
            data={"grant_type": "client_credentials", "scope": "reports:read"},
            auth=(client["client_id"], client["client_secret"]),
            headers={"Connection": "close"},
        )
        assert response.status_code == 200, response.text


def test_two_workers_add_up_on_the_metrics_port_and_not_on_the_public_one(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(database, tmp_path)
    metrics_port = free_port()
    temporary = tmp_path / "tmp"  # where the supervisor makes the workers' metrics directory
    temporary.mkdir()
    env = {"OSTIARY_METRICS_PORT": str(metrics_port), "OSTIARY_KEYS_ROTATE_EVERY": "30d", "TMPDIR": str(temporary)}
    base = f"http://127.0.0.1:{settings.port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = start_serving(settings, tmp_path, log, "--workers", "2", **env)
    try:
        wait_healthy(base, process)
        wait_for(lambda: log_path.read_text().count("Application startup complete") == 2, 60, "two workers")
        client = create_client_with_cli(settings, tmp_path)
        token_requests(base, client, REQUESTS)
        assert httpx.get(base + "/readyz").status_code == 200
        assert httpx.get(base + "/metrics").status_code == 404, "metrics must not be on the public port"

        # Each worker counts in a file of its own: both served some of the requests.
        (directory,) = temporary.glob("ostiary-metrics-*")
        assert len(list(directory.glob("counter_*.db"))) == 2, sorted(p.name for p in directory.iterdir())
        samples = scrape(metrics_port)
        route = {"route": "/token", "method": "POST", "status": "200"}
        assert value(samples, "ostiary_http_requests_total", **route) == REQUESTS
        assert value(samples, "ostiary_tokens_issued_total", grant_type="client_credentials") == REQUESTS
        latency = {"route": "/token", "method": "POST"}
        assert value(samples, "ostiary_http_request_duration_seconds_count", **latency) == REQUESTS
        assert value(samples, "ostiary_http_request_duration_seconds_bucket", le="+Inf", **latency) == REQUESTS
        assert value(samples, "ostiary_readiness_check_ok", check="database") == 1
        build = [key for key in samples if key[0] == "ostiary_build_info"]
        assert len(build) == 1 and samples[build[0]] == 1

        # The signing key's age and the time to its rotation are live, not a stale instant.
        deadline = time.monotonic() + 20  # the key watcher reads the key set every 5 s
        while value(samples, "ostiary_signing_key_age_seconds", alg="RS256") is None:
            assert time.monotonic() < deadline, "no signing key age"
            time.sleep(0.5)
            samples = scrape(metrics_port)
        age = value(samples, "ostiary_signing_key_age_seconds", alg="RS256")
        to_rotation = value(samples, "ostiary_signing_key_next_rotation_seconds", alg="RS256")
        assert age is not None and 0 <= age < 300
        assert to_rotation is not None and 30 * 86400 - 300 < to_rotation <= 30 * 86400
        assert value(samples, "ostiary_outbox_pending") == 0
        assert value(samples, "ostiary_outbox_oldest_pending_age_seconds") == 0
        assert value(samples, "ostiary_db_pool_connections_in_use") is not None
        assert value(samples, "ostiary_db_pool_waits_total") == 0

        # A worker killed: the supervisor replaces it, and what it counted stays in the sums.
        victim = min(worker_pids(process.pid))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(process.pid) - {victim}) == 2, 60, "a replacement worker")
        wait_healthy(base, process)
        token_requests(base, client, 1)
        samples = scrape(metrics_port)
        assert value(samples, "ostiary_http_requests_total", **route) == REQUESTS + 1
        assert value(samples, "ostiary_tokens_issued_total", grant_type="client_credentials") == REQUESTS + 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text()
    assert "metrics at http://" in log_path.read_text()
    assert not directory.exists(), "the metrics directory outlived the server"
