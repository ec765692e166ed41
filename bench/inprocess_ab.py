"""CPU per request of one hot path, served in process (the app over httpx's ASGI transport
on PostgreSQL, no sockets, no load generator), for comparing two checkouts of Ostiary side
by side where wrk's figures are too noisy:

    python bench/inprocess_ab.py CHECKOUT CASE REQUESTS OUT.json

CHECKOUT's ``server/`` is imported (run it with a virtualenv that has Ostiary's
dependencies); CASE is introspection, client_credentials or refresh_token. The figure
includes the client's share of the work, the same on both sides. Alternate the two
checkouts over several rounds and compare the medians (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

CHECKOUT = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(CHECKOUT))

import server  # noqa: E402
from bench.common import psql  # noqa: E402
from bench.ostiary_setup import Setup, prepare  # noqa: E402
from server.app import create_app  # noqa: E402
from server.bootstrap import prepare as bootstrap  # noqa: E402
from server.settings import Settings  # noqa: E402

WARM_UP = 200


def basic(client: dict[str, str]) -> dict[str, str]:
    pair = f"{client['client_id']}:{client['client_secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


async def measure(case: str, requests: int) -> dict[str, float]:
    assert any(Path(p).resolve().is_relative_to(CHECKOUT) for p in server.__path__), list(server.__path__)
    work = Path(tempfile.mkdtemp())
    # one database per run: two runs at once (a test suite's workers) must not drop each other's
    database = f"ostiary_inprocess_{CHECKOUT.name}_{os.getpid()}"
    setup, _ = prepare(work, runs=1, per_run=requests + 10, codes=False, database=database)
    try:
        return await _measure(Settings.from_env(setup.env), setup, case, requests)
    finally:
        psql("test", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def _measure(settings: Settings, setup: Setup, case: str, requests: int) -> dict[str, float]:
    await bootstrap(settings)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as http,
    ):
        grant = {"grant_type": "client_credentials", "scope": "api:read"}
        access = (await http.post("/token", data=grant, headers=basic(setup.cc))).json()["access_token"]
        refresh = [token for f in setup.refresh_files for token in f.read_text().split()]
        calls: dict[str, Callable[[int], Awaitable[httpx.Response]]] = {
            "introspection": lambda i: http.post("/introspect", data={"token": access}, headers=basic(setup.rs)),
            "client_credentials": lambda i: http.post("/token", data=grant, headers=basic(setup.cc)),
            "refresh_token": lambda i: http.post(
                "/token", data={"grant_type": "refresh_token", "refresh_token": refresh[i]}, headers=basic(setup.rp)
            ),
        }
        call = calls[case]
        for i in range(WARM_UP):
            await call(i)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(WARM_UP, requests):
            response = await call(i)
            assert response.status_code == 200, response.text
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    measured = requests - WARM_UP
    return {"requests": measured, "cpu_ms": cpu * 1000 / measured, "wall_ms": wall * 1000 / measured}


def main() -> None:
    case, requests, out = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    out.write_text(json.dumps({"case": case, **asyncio.run(measure(case, requests))}))


if __name__ == "__main__":
    main()
