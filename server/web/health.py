"""The probes an orchestrator asks: ``GET /livez`` and ``GET /readyz`` (``/healthz`` is
``/readyz`` by another name).

- ``/livez``: the process is up and its event loop answers. It touches nothing else, so a
  database that blinks never gets a healthy process restarted.
- ``/readyz``: this process can serve: the database answers, its schema is at this
  release's head (or a newer release's, during a rolling upgrade), a signing key is
  loaded for every algorithm a client may register for (RS256, PS256, ES256:
  ``Settings.signing_algorithms``), and the mail sender runs. Otherwise 503 with
  ``Retry-After`` (RFC 9110 §10.2.3) and the failing checks named in the body.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from ..observe import metrics
from ..storage import migrate
from ..storage.engine import ping
from ..storage.errors import is_unavailable
from .errors import RETRY_AFTER
from .responses import NO_STORE, json_response
from .runtime import Runtime

log = logging.getLogger("ostiary")

#: how long the database may take to answer the probe before it counts as failing
DATABASE_TIMEOUT = 2.0


@dataclass
class Readiness:
    """Each check's outcome: ``ok``, ``off`` (not configured here) or why it fails."""

    checks: dict[str, str] = field(default_factory=dict)
    failing: list[str] = field(default_factory=list)

    def ok(self, name: str, outcome: str = "ok") -> None:
        self.checks[name] = outcome

    def fail(self, name: str, reason: str) -> None:
        self.checks[name] = reason
        self.failing.append(name)


async def livez(request: Request) -> Response:
    return json_response({"status": "ok"}, headers=NO_STORE)


async def readyz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    readiness = Readiness()
    await _database(runtime, readiness)
    _keys(runtime, readiness)
    _mail(runtime, readiness)
    metrics.observe_readiness((name, name not in readiness.failing) for name in readiness.checks)
    if readiness.failing:
        log.warning("not ready: %s", ", ".join(f"{name} {readiness.checks[name]}" for name in readiness.failing))
        body = {"status": "unavailable", "failing": readiness.failing, "checks": readiness.checks}
        return json_response(body, 503, {**NO_STORE, "Retry-After": RETRY_AFTER})
    return json_response({"status": "ok", "checks": readiness.checks}, headers=NO_STORE)


async def _database(runtime: Runtime, readiness: Readiness) -> None:
    """The database answers, and its schema revision is one this process can serve on."""
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT):
            revision = await migrate.current_revision(runtime.engine)
    except TimeoutError:
        readiness.fail("database", f"no answer within {DATABASE_TIMEOUT:g} s")
        readiness.fail("schema", "unknown")
        return
    except Exception as exc:
        # no revision: the database is down, or up without the revision table (SQLite
        # reports both as an OperationalError); a plain ping tells which
        if not is_unavailable(exc) or await _answers(runtime):
            readiness.ok("database")
            readiness.fail("schema", "not migrated: run `ostiary db upgrade`")
        else:
            readiness.fail("database", "unreachable")
            readiness.fail("schema", "unknown")
        return
    readiness.ok("database")
    state = migrate.classify(revision)
    if state is migrate.SchemaState.CURRENT:
        readiness.ok("schema")
    elif state is migrate.SchemaState.UNKNOWN:
        readiness.ok("schema", f"ahead: revision {revision} is a newer release's")
    else:
        readiness.fail(
            "schema", f"at {revision or 'nothing'}, needs {migrate.head_revision()}: run `ostiary db upgrade`"
        )


async def _answers(runtime: Runtime) -> bool:
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT):
            await ping(runtime.engine)
    except Exception:
        return False
    return True


def _keys(runtime: Runtime, readiness: Readiness) -> None:
    missing = [alg for alg in runtime.settings.signing_algorithms if alg not in runtime.keys.current.signing]
    if missing:
        readiness.fail("keys", f"no active signing key for {', '.join(missing)}")
    else:
        readiness.ok("keys")


def _mail(runtime: Runtime, readiness: Readiness) -> None:
    sender, task = runtime.sender, runtime.sender_task
    if sender is None or task is None:
        readiness.ok("mail", "off")
    elif task.done():
        readiness.fail("mail", "the sender stopped")
    elif (late := sender.stalled_for()) > 0:
        readiness.fail("mail", f"the sender is {late:.0f} s late")
    else:
        readiness.ok("mail")
