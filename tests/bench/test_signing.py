"""``bench/signing.py`` still runs: a row per algorithm with a positive figure (none checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.bench.test_bench_scripts import positive, table_rows

ROOT = Path(__file__).resolve().parents[2]


def test_the_signing_script_times_every_server_algorithm() -> None:
    done = subprocess.run(
        [sys.executable, "bench/signing.py", "--count", "5", "--runs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [row for row in table_rows(done.stdout) if row[0] != "alg"]  # not the header
    assert [row[0] for row in rows] == ["RS256", "PS256", "ES256"], done.stdout
    for row in rows:  # sign µs, tokens signed/s, bare signature µs, verify µs
        assert positive(row[1]) and positive(row[3]) and positive(row[5]) and positive(row[7]), done.stdout
    assert rows[0][4] == rows[0][6] == "1.00×", done.stdout
