"""``bench/breakdown.py`` still runs, and reads the counters it is built on (no figure of
Ostiary's speed is checked: performance is measured by bench/, never asserted by tests)."""

from __future__ import annotations

import uuid

from tests.bench.test_bench_scripts import positive, run_bench, table_rows


def test_the_breakdown_counts_cpu_and_round_trips_per_request() -> None:
    output = run_bench(
        "breakdown.py", "--seconds", "1", "--runs", "1",
        "--database", f"ostiary_bench_breakdown_{uuid.uuid4().hex[:8]}",
        "--cases", "client_credentials", "refresh_token",
    )  # fmt: skip
    rows = {row[0]: row for row in table_rows(output)}
    assert list(rows) == ["client_credentials", "refresh_token"], output
    for row in rows.values():  # rate, worker CPU, signing
        assert positive(row[1]) and positive(row[2]) and positive(row[3]), output
    # a rotation is written to PostgreSQL: the counters of the worker's connections moved
    assert positive(rows["refresh_token"][5]) and positive(rows["refresh_token"][6]), output
