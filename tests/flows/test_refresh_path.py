"""How many modules of ``server/`` one refresh on PostgreSQL runs through.

A refresh is the hot path every new protocol feature will be tempted to pass through: the
fewer rooms it crosses, the fewer places a reader must hold in mind to follow it. The count
is taken, not estimated: a profile hook on the event loop's thread and on every thread the
app starts (a refresh may finish on a signing thread) records the module of each Python
function that runs while the app answers one ``POST /token`` with
``grant_type=refresh_token``, after a first refresh has warmed every cache.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.flows.conftest import Live, SignIn
from tests.flows.test_refresh_tokens import Offline, make_offline
from tests.helpers import Client, TestDatabase, app_in_process, create_client, create_user, make_settings
from tests.oidc import Browser

pytestmark = pytest.mark.anyio

#: the most modules of server/ a refresh may cross below the edge: what it crosses today, so
#: that none is added unnoticed. Issue 19 asks for 10; docs/architecture.md lists the 22 and
#: says why the rest are not merged away.
LIMIT = 22
#: The edge: modules every request runs through whatever its route (the ASGI app and its
#: middleware, forwarded-address handling, logging, metrics). They are the price of any endpoint,
#: not of a refresh, so they are not counted; the test prints what a request to no route
#: at all crosses, to show this list is the edge and nothing more.
EDGE_MODULES = frozenset(
    {
        "server.app",
        "server.observe.context",  # the request id, for the logs
        "server.observe.logs",
        "server.observe.metrics",  # each request counted and timed
        "server.web.middleware",
        "server.web.proxies",
        "server.web.wellknown",  # answers /jwks and discovery before routing: every request passes it
        "server.web.locales",  # the language of pages: every request passes it (protocol paths at once)
    }
)


_POOL_MODULES = frozenset({"anyio.to_thread", "asyncio.base_events", "starlette.concurrency"})
_POOL_ENTRIES = frozenset({"run_sync", "run_in_executor", "run_in_threadpool"})


@dataclass
class Crossings:
    """The ``server.*`` functions that ran while :attr:`active`, by module and by where they ran."""

    loop: asyncio.AbstractEventLoop
    loop_thread: threading.Thread = field(default_factory=threading.current_thread)
    request_task: asyncio.Task[Any] | None = None
    active: bool = False
    #: module -> qualified names of its functions that ran for the request: in its task, in a
    #: loop callback (a signing thread hands its result back in one) or on another thread
    functions: dict[str, set[str]] = field(default_factory=dict)
    #: thread name -> the modules that ran there (a signing thread, a thread for blocking calls)
    threads: dict[str, set[str]] = field(default_factory=dict)
    #: other tasks on the loop meanwhile (the key watcher, the mail sender): not the request's
    elsewhere: set[str] = field(default_factory=set)
    #: hand-offs to a thread pool (anyio's, an executor's) seen on the loop: threads started
    #: before the hook was set (an idle pool worker) carry no hook, so their work goes unseen
    pool_calls: set[str] = field(default_factory=set)

    def hook(self, frame: FrameType, event: str, arg: object) -> None:
        # "call" also marks a coroutine resuming, so each step of an await chain is seen
        if event != "call" or not self.active:
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("server."):
            if frame.f_code.co_name in _POOL_ENTRIES and module in _POOL_MODULES:
                self.pool_calls.add(f"{module}.{frame.f_code.co_qualname}")
            return
        thread = threading.current_thread()
        if thread is not self.loop_thread:
            self.threads.setdefault(thread.name, set()).add(module)
        else:
            task = asyncio.current_task(self.loop)
            if task is not None and task is not self.request_task:
                self.elsewhere.add(module)
                return
        self.functions.setdefault(module, set()).add(frame.f_code.co_qualname)

    def clear(self) -> None:
        self.functions, self.threads, self.elsewhere, self.pool_calls = {}, {}, set(), set()

    @property
    def crossed(self) -> set[str]:
        return set(self.functions)

    async def during(self, call: Callable[[], Any]) -> Any:
        """Record while ``call()`` (a coroutine function) runs in this task."""
        previous = sys.getprofile()
        self.request_task = asyncio.current_task()
        sys.setprofile(self.hook)
        self.active = True
        try:
            return await call()
        finally:
            self.active = False
            sys.setprofile(previous)


@asynccontextmanager
async def ostiary_in_process(database: TestDatabase, tmp_path: Path, threads: int) -> AsyncIterator[Offline]:
    """The app over in-process ASGI (its lifespan run here, so its runtime is this loop's),
    with a relying party that may refresh and a user who signed in."""
    settings = make_settings(database, tmp_path, signing_threads=threads)
    async with app_in_process(settings) as (http, _):
        await create_user(settings, "alice")
        live = Live(settings, settings.issuer, http, await create_client(settings))
        yield await make_offline(SignIn(live, Client("", ""), "alice", Browser(http)))


def _report(scope: str, threads: int, edge_probe: set[str], seen: Crossings) -> str:
    below = sorted(seen.crossed - EDGE_MODULES)
    lines = [
        f"one refresh on PostgreSQL, scope {scope!r}, signing threads: {threads}",
        f"  (i) the edge, not counted: {sorted(seen.crossed & EDGE_MODULES)}",
        f"      a request to no route crosses: {sorted(edge_probe)}",
        f"  (ii) from the token endpoint down: {len(below)} modules, at most {LIMIT}",
        *(f"      {name}: {', '.join(sorted(seen.functions[name]))}" for name in below),
    ]
    for name, modules in sorted(seen.threads.items()):
        lines.append(f"  of which on thread {name}: {', '.join(sorted(modules))}")
    if seen.elsewhere:
        lines.append(f"  other tasks meanwhile, not counted: {', '.join(sorted(seen.elsewhere))}")
    if seen.pool_calls:
        lines.append(f"  handed to a thread pool (a worker older than the hook is unseen): {sorted(seen.pool_calls)}")
    return "\n".join(lines)


@pytest.mark.parametrize("threads", [0, 1], ids=["on-the-loop", "one-signing-thread"])
@pytest.mark.parametrize(
    "scope", ["offline_access", "openid offline_access"], ids=["as-benchmarked", "with-an-id-token"]
)
async def test_one_refresh_crosses_no_more_modules_than_recorded(
    postgres_database: TestDatabase, tmp_path: Path, threads: int, scope: str
) -> None:
    # PostgreSQL's path only: the one benchmarked (SQLite rotates in four statements, not one)
    database = postgres_database
    previous = threading.getprofile()
    seen = Crossings(asyncio.get_running_loop())
    # before the app starts, so that its signing threads carry the hook from their first line
    threading.setprofile(seen.hook)
    try:
        async with ostiary_in_process(database, tmp_path, threads) as offline:
            tokens = await offline.tokens(scope=scope)
            warm = await offline.refresh(tokens["refresh_token"])
            assert warm.status_code == 200, warm.text
            missing = await seen.during(lambda: offline.http.get("/no-such-route"))
            assert missing.status_code == 404
            edge_probe = seen.crossed
            seen.clear()
            response = await seen.during(lambda: offline.refresh(warm.json()["refresh_token"]))
            assert response.status_code == 200, response.text
    finally:
        threading.setprofile(previous)
    report = _report(scope, threads, edge_probe, seen)
    print(report)
    # the measurement saw the path the settings chose: the grant on a signing thread, or not
    assert bool(seen.threads) == bool(threads), report
    below_the_edge = len(seen.crossed - EDGE_MODULES)
    assert below_the_edge <= LIMIT, report
