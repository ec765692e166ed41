"""The one place where async HTTP meets Authlib's synchronous server.

An endpoint reads and validates the body first (Starlette's reads are async), builds an
:class:`OstiaryRequest`, and calls :func:`call_in_session` with the Authlib call to make.
That runs inside ``AsyncSession.run_sync``: the storage hooks Authlib calls get a plain
``Session`` whose I/O still runs on the event loop through asyncpg or aiosqlite, so nothing
blocks and no thread is used. The transaction commits when the response is a success and
rolls back otherwise (Authlib returns errors as responses, not exceptions).

Hooks such as ``query_client(client_id)`` receive no request, so the session and the
request reach them through context variables, reset on the way out: SQLAlchemy runs the
greenlet in the caller's context, and a value left set would leak to the next request.
"""

from __future__ import annotations

import contextvars
from collections import defaultdict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, TypeVar

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request

from ..storage import Session
from ..storage.clients import StoredClient
from ..storage.errors import is_retryable
from .client_auth import basic_credentials

if TYPE_CHECKING:
    from .clients import OAuthClient
    from .grants import Rotation
    from .threads import Threads

T = TypeVar("T")

_session: ContextVar[Session] = ContextVar("ostiary_db_session")
_request: ContextVar[OstiaryRequest] = ContextVar("ostiary_oauth_request")


@dataclass(frozen=True)
class OAuthResponse:
    """What Authlib's ``handle_response`` produced; the web layer turns it into HTTP."""

    status: int
    body: dict[str, Any] | str
    headers: list[tuple[str, str]] = field(default_factory=list)


class FormPayload(OAuth2Payload):  # type: ignore[misc]
    """Parameters with every value kept, so Authlib's repeated-parameter checks work."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        self._data: dict[str, str] = {}
        for key, value in pairs:
            self._datalist[key].append(value)
            self._data.setdefault(key, value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class OstiaryRequest(OAuth2Request):  # type: ignore[misc]
    """Authlib's request, built from a body we already read.

    ``uri`` is built from the configured issuer, not from the incoming URL: behind a TLS
    proxy the latter is ``http://`` and Authlib would raise InsecureTransportError.

    Authlib's ``__init__`` is not called: all it does beyond setting the attributes below is
    that transport check, URL parsing and an ``ipaddress`` lookup on every request, for a URI
    whose issuer ``OSTIARY_ISSUER`` already held to the same rule (https unless loopback).
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        form: list[tuple[str, str]],
        query: list[tuple[str, str]] | None = None,
    ) -> None:
        # what OAuth2Request.__init__ sets (tests/unit/test_oauth_request.py compares them)
        self.method = method
        self.uri = uri
        self.headers = headers
        self._body = None
        self.client: Any = None
        self.auth_method: str | None = None
        self.user: Any = None
        self.authorization_code: Any = None
        self.refresh_token: Any = None
        self.credential: Any = None
        self._scope: str | None = None
        body, params = FormPayload(form), FormPayload(query or [])
        self.payload = body if method == "POST" else params
        self._form = body.data
        self._args = params.data
        #: RFC 8707 resource indicators accepted for this request (set by the grant).
        self.resources: tuple[str, ...] = ()
        #: the authenticated browser sign-in an authorization response is issued for
        self.sign_in: Any = None
        #: clients looked up before a call that runs without a database session
        #: (:func:`call_without_session`): client_id to snapshot, None for unknown
        self.prefetched_clients: dict[str, StoredClient | None] | None = None
        #: the refresh token that a rotation already stored as its family's new head
        self.successor_refresh_token: str | None = None
        #: the rotation committed before the grant ran, if any
        self.rotated: Rotation | None = None
        #: the browser's session cookie (logout ends that session)
        self.browser_session_token: str | None = None
        #: the client authentication that succeeded: ((endpoint, methods), client, method)
        self.authenticated: tuple[tuple[str, tuple[str, ...]], OAuthClient, str | None] | None = None
        #: the client's address, for audit events
        self.client_ip: str | None = None
        #: writes that must be committed even when the request fails (e.g. revoking the
        #: grant of a replayed code), each run in a transaction of its own afterwards
        self.after_failure: list[Callable[[Session], object]] = []

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @cached_property
    def basic_credentials(self) -> tuple[str, str] | None:
        """``(client_id, secret)`` of the Basic Authorization header, decoded once."""
        return basic_credentials(self.headers.get("Authorization"))

    @property
    def args(self) -> dict[str, str]:
        return self._args


def current_session() -> Session:
    """The database session of the Authlib call in progress."""
    return _session.get()


def has_session() -> bool:
    return _session.get(None) is not None


def current_request() -> OstiaryRequest | None:
    return _request.get(None)


def call_without_session(request: OstiaryRequest, call: Callable[[], T]) -> T:
    """Run an Authlib call that needs no database: ``current_session()`` is unavailable, and
    the clients it may authenticate were put in ``request.prefetched_clients`` beforehand."""
    request_token = _request.set(request)
    try:
        return call()
    finally:
        _request.reset(request_token)


async def call_on_thread(threads: Threads, request: OstiaryRequest, call: Callable[[], T]) -> T:
    """:func:`call_without_session` on one of ``threads``.

    The RSA signature of a token releases the GIL, so while one request signs, the event
    loop serves others: one worker process uses more than one core, as node-oidc-provider
    does with libuv's thread pool.
    """
    return await threads.run(partial(contextvars.copy_context().run, call_without_session, request, call))


async def call_in_session(
    sessionmaker: Callable[[], Any],
    request: OstiaryRequest,
    call: Callable[[], OAuthResponse],
    *,
    attempts: int = 3,
    read_only: bool = False,
) -> OAuthResponse:
    """Run one Authlib call in one transaction: commit on success, roll back on error.

    A transaction that loses a race on PostgreSQL (serialization failure, deadlock) is run
    again from the start, up to ``attempts`` times; the client never sees it.
    """
    for attempt in range(attempts):
        try:
            response = await run_in_session(
                sessionmaker,
                request,
                call,
                succeeded=lambda r: r.status < 400,
                after_failure=False,
                read_only=read_only,
            )
        except Exception as error:
            if attempt + 1 < attempts and is_retryable(error):
                request.after_failure.clear()  # the retry decides again what must be written
                continue
            await _after_failure(sessionmaker, request)
            raise
        if response.status >= 400:
            await _after_failure(sessionmaker, request)
        return response
    raise AssertionError("unreachable")


async def run_in_session(
    sessionmaker: Callable[[], Any],
    request: OstiaryRequest,
    call: Callable[[], T],
    succeeded: Callable[[T], bool] = lambda _: True,
    *,
    after_failure: bool = True,
    read_only: bool = False,
) -> T:
    """Run ``call`` (synchronous, reaching the session through :func:`current_session`) in
    one transaction, committed when ``succeeded(result)``. Then, on failure, the request's
    ``after_failure`` writes, each in its own committed transaction.

    ``read_only``: ``call`` only reads, each of its reads a single statement. On PostgreSQL
    it then runs without a transaction, saving the BEGIN and COMMIT round trips.
    """
    async with sessionmaker() as session:
        if read_only and session.bind.dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        try:
            result: T = await session.run_sync(_invoke, request, call)
        except BaseException:
            await session.rollback()
            if after_failure:
                await _after_failure(sessionmaker, request)
            raise
        if succeeded(result):
            await session.commit()
        else:
            await session.rollback()
    if after_failure and not succeeded(result):
        await _after_failure(sessionmaker, request)
    return result


async def _after_failure(sessionmaker: Callable[[], Any], request: OstiaryRequest) -> None:
    for write in request.after_failure:
        async with sessionmaker() as session, session.begin():
            await session.run_sync(write)
    request.after_failure.clear()


def _invoke(session: Session, request: OstiaryRequest, call: Callable[[], T]) -> T:
    session_token = _session.set(session)
    request_token = _request.set(request)
    try:
        return call()
    finally:
        _request.reset(request_token)
        _session.reset(session_token)
