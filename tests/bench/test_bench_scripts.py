"""The benchmark scripts still run end to end: a one-second pass of bench/suite.py.

Figures are not checked here (performance is measured by bench/, never asserted by tests);
this keeps the scripts from rotting: set-up of the scratch database, the server with its
worker, the wrk scripts, and every request of each measured case answered with a 2xx
(the suite exits non-zero on any error). Needs PostgreSQL and Debian's ``wrk``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("OSTIARY_TEST_POSTGRES_URL")


def test_the_suite_runs_every_ostiary_case_without_errors() -> None:
    if PG_URL is None:
        pytest.skip("OSTIARY_TEST_POSTGRES_URL is not set")
    if shutil.which("wrk") is None:
        if os.environ.get("OSTIARY_REQUIRE_WRK"):
            pytest.fail("wrk is required (OSTIARY_REQUIRE_WRK) but not installed")
        pytest.skip("wrk is not installed (Debian package wrk)")
    cases = ["client_credentials", "refresh_token", "authorization_code", "jwks", "introspection", "userinfo"]
    database = f"ostiary_bench_smoke_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "OSTIARY_BENCH_POSTGRES_URL": PG_URL.replace("postgresql+asyncpg://", "postgresql://", 1),
    }
    done = subprocess.run(
        [sys.executable, "bench/suite.py", "--workers", "1", "--seconds", "1", "--runs", "1", "--no-anchor",
         "--database", database, "--cases", *cases],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "req/s" not in line]
    assert [row.split("|")[1].strip() for row in rows] == cases, done.stdout
    for row in rows:
        requests_per_second = row.split("|")[3].split()[0].replace(",", "")
        assert float(requests_per_second) > 0, row
