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

from collections import defaultdict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request

from ..storage import Session
from ..storage.errors import is_retryable

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
        for key, value in pairs:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

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
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        form: list[tuple[str, str]],
        query: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = FormPayload(form if method == "POST" else (query or []))
        self._form = FormPayload(form).data
        self._args = FormPayload(query or []).data
        #: RFC 8707 resource indicators accepted for this request (set by the grant).
        self.resources: tuple[str, ...] = ()
        #: the authenticated browser sign-in an authorization response is issued for
        self.sign_in: Any = None
        #: the refresh token that a rotation already stored as its family's new head
        self.successor_refresh_token: str | None = None
        #: the browser's session cookie (logout ends that session)
        self.browser_session_token: str | None = None
        #: the client's address, for audit events
        self.client_ip: str | None = None
        #: writes that must be committed even when the request fails (e.g. revoking the
        #: grant of a replayed code), each run in a transaction of its own afterwards
        self.after_failure: list[Callable[[Session], object]] = []

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return self._args


def current_session() -> Session:
    """The database session of the Authlib call in progress."""
    return _session.get()


def current_request() -> OstiaryRequest | None:
    return _request.get(None)


async def call_in_session(
    sessionmaker: Callable[[], Any],
    request: OstiaryRequest,
    call: Callable[[], OAuthResponse],
    *,
    attempts: int = 3,
) -> OAuthResponse:
    """Run one Authlib call in one transaction: commit on success, roll back on error.

    A transaction that loses a race on PostgreSQL (serialization failure, deadlock) is run
    again from the start, up to ``attempts`` times; the client never sees it.
    """
    for attempt in range(attempts):
        try:
            response = await run_in_session(
                sessionmaker, request, call, succeeded=lambda r: r.status < 400, after_failure=False
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
) -> T:
    """Run ``call`` (synchronous, reaching the session through :func:`current_session`) in
    one transaction, committed when ``succeeded(result)``. Then, on failure, the request's
    ``after_failure`` writes, each in its own committed transaction."""
    async with sessionmaker() as session:
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
