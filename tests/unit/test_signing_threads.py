"""``OSTIARY_SIGNING_THREADS=auto``: threads only where workers leave cores free."""

from __future__ import annotations

import pytest

from server.web.runtime import signing_thread_count


@pytest.mark.parametrize(
    ("workers", "cores", "threads"),
    [(1, 1, 0), (1, 2, 2), (2, 2, 0), (3, 2, 0), (1, 4, 4), (2, 4, 2), (3, 4, 2), (4, 4, 0)],
)
def test_auto_fills_the_cores_the_workers_leave_free(workers: int, cores: int, threads: int) -> None:
    assert signing_thread_count(-1, workers, cores) == threads


@pytest.mark.parametrize("requested", [0, 1, 3, 64])
def test_a_number_is_taken_as_it_is(requested: int) -> None:
    assert signing_thread_count(requested, 1, 2) == requested
    assert signing_thread_count(requested, 8, 2) == requested
