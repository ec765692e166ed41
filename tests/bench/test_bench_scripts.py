"""The benchmark scripts still run end to end, each for a second or two.

Figures are not checked here (performance is measured by bench/, never asserted by tests);
this keeps the scripts from rotting: set-up of the scratch database, the server with its
worker, the wrk scripts, node-oidc-provider beside Ostiary, and every request of each
measured case answered with a 2xx (the scripts exit non-zero on any error). Needs
PostgreSQL and Debian's ``wrk``; the side-by-side part needs Node.js and npm too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("OSTIARY_TEST_POSTGRES_URL")


def run_bench(script: str, *args: str) -> str:
    """``bench/<script> args``, which must succeed; its standard output."""
    if PG_URL is None:
        pytest.skip("OSTIARY_TEST_POSTGRES_URL is not set")
    if shutil.which("wrk") is None:
        if os.environ.get("OSTIARY_REQUIRE_WRK"):
            pytest.fail("wrk is required (OSTIARY_REQUIRE_WRK) but not installed")
        pytest.skip("wrk is not installed (Debian package wrk)")
    env = {
        **os.environ,
        "OSTIARY_BENCH_POSTGRES_URL": PG_URL.replace("postgresql+asyncpg://", "postgresql://", 1),
    }
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def table_rows(output: str) -> list[list[str]]:
    """The cells of each Markdown table row (no header, no rule) in ``output``."""
    rows = [line for line in output.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in rows]
    return [row for row in cells if row[0] not in ("case", "path", "elapsed")]


def positive(figure: str) -> bool:
    return float(figure.split()[0].replace(",", "")) > 0


def test_the_suite_runs_every_case_without_errors_beside_node_oidc_provider() -> None:
    """Every Ostiary case, and node-oidc-provider beside it on each when Node.js and npm are
    installed: one run of the script, whose set-up is half its time."""
    cases = ["client_credentials", "refresh_token", "authorization_code", "jwks", "introspection", "userinfo"]
    anchored = set(cases)  # node-oidc-provider serves every case with one worker
    beside = shutil.which("node") is not None and shutil.which("npm") is not None
    output = run_bench(
        "suite.py", "--workers", "1", "--seconds", "1", "--runs", "1", *([] if beside else ["--no-anchor"]),
        "--database", f"ostiary_bench_smoke_{uuid.uuid4().hex[:8]}", "--cases", *cases,
    )  # fmt: skip
    rows = table_rows(output)
    assert [row[0] for row in rows] == cases, output
    for row in rows:  # Ostiary's rate, node-oidc-provider's rate, and their ratio
        assert positive(row[2]), output
        if beside and row[0] in anchored:
            assert positive(row[3]) and re.fullmatch(r"\d+\.\d\d×", row[4]), output
        else:
            assert row[3] == row[4] == "–", output


def test_node_oidc_provider_keeps_its_models_in_postgresql_for_every_process() -> None:
    """``--anchor-store postgres``: node-oidc-provider durable in a database of its own, so
    the cases that need tokens made beforehand run beside Ostiary with two processes too."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for node-oidc-provider")
    cases = ["refresh_token", "authorization_code", "userinfo"]
    output = run_bench(
        "suite.py", "--workers", "2", "--seconds", "1", "--runs", "1", "--anchor-store", "postgres",
        "--database", f"ostiary_bench_durable_{uuid.uuid4().hex[:8]}", "--cases", *cases,
    )  # fmt: skip
    assert "models in postgres" in output, output
    rows = table_rows(output)
    assert [row[0] for row in rows] == cases and all(row[1] == "2" for row in rows), output
    for row in rows:  # Ostiary's rate, node-oidc-provider's rate, and their ratio
        assert positive(row[2]) and positive(row[3]) and re.fullmatch(r"\d+\.\d\d×", row[4]), output


def test_the_table_size_script_runs_both_sizes() -> None:
    output = run_bench("scaling.py", "--seconds", "1", "--runs", "1", "--rows", "100", "1000")
    rows = table_rows(output)
    assert len(rows) == 4, output
    sizes = {match.group(1) for row in rows if (match := re.search(r"([\d,]+) rows", row[0]))}
    assert sizes == {"100", "1,000"}, output
    assert all(positive(row[1]) for row in rows), output


def test_the_soak_samples_memory_under_every_path() -> None:
    output = run_bench("soak.py", "--seconds", "2", "--warm-up", "1", "--sample-every", "1")
    paths = [row[0] for row in table_rows(output) if not row[0].endswith(" s")]
    assert paths == ["client_credentials", "refresh_token", "introspection", "userinfo"], output
    samples = [row for row in table_rows(output) if row[0].endswith(" s")]
    assert samples and all(positive(row[1]) for row in samples), output
    assert "peak RSS MiB per worker" in output


@pytest.mark.parametrize("case", ["introspection", "client_credentials", "refresh_token"])
def test_the_in_process_comparison_measures_each_path(tmp_path: Path, case: str) -> None:
    out = tmp_path / "out.json"
    run_bench("inprocess_ab.py", str(ROOT), case, "260", str(out))
    measured = json.loads(out.read_text())
    assert measured["case"] == case and measured["requests"] == 60
    assert positive(str(measured["cpu_ms"])) and positive(str(measured["wall_ms"]))


def test_after_the_seed_a_user_can_still_be_created(tmp_path: Path) -> None:
    # The seeder writes user 1 with an explicit id; the next user must not collide with it.
    if PG_URL is None:
        pytest.skip("OSTIARY_TEST_POSTGRES_URL is not set")
    admin = PG_URL.replace("postgresql+asyncpg://", "postgresql://", 1)
    name = f"ostiary_seed_{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "OSTIARY_BENCH_POSTGRES_URL": admin, "PYTHONPATH": str(ROOT)}
    seed = (
        "import sys; from pathlib import Path; from bench import common, seed; "
        "url = common.fresh_database(sys.argv[1]); "
        "env = common.server_env(url, 9, Path(sys.argv[2])); "
        "common.ostiary(['db', 'upgrade'], env); seed.insert_user(sys.argv[1]); print(url)"
    )
    done = subprocess.run(
        [sys.executable, "-c", seed, name, str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    try:
        server_env = {key: value for key, value in os.environ.items() if not key.startswith("OSTIARY_")}
        server_env.update(
            OSTIARY_DATABASE_URL=done.stdout.strip().splitlines()[-1],
            OSTIARY_KEYS_DIR=str(tmp_path / "keys"),
            OSTIARY_KEYS_SECRET="bench-key-encryption-secret-0123456789",
            OSTIARY_HIBP_URL="off",
        )
        created = subprocess.run(
            [sys.executable, "-m", "server", "users", "create", "--username", "carol", "--password-stdin", "--json"],
            cwd=ROOT, env=server_env, input="a long enough passphrase for carol\n",
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert '"username": "carol"' in created.stdout
    finally:
        subprocess.run(
            ["psql", admin, "-qAtc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], capture_output=True, check=False
        )
