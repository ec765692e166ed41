"""How a call of the token endpoints runs: the token endpoint (RFC 6749 §3.2), revocation
(RFC 7009) and introspection (RFC 7662).

The clients a request names are looked up first (from the cache, else in a read of their
own), so client authentication never waits for the database. Then each grant runs the way
that costs least for what it touches:

- ``client_credentials`` reads and writes nothing more: it runs detached, on a signing
  thread when the worker has them.
- ``refresh_token`` validates in a transaction, where its token rotates (on PostgreSQL in
  one statement, without BEGIN and COMMIT); what it issues needs no database, so the
  signing runs detached.
- ``authorization_code`` runs in a transaction, which on PostgreSQL holds nothing: its
  code is read, then consumed with its grant inserted, each one statement of its own
  (:mod:`server.storage.grants`); only a refusal reads or writes in the transaction.
- introspection looks its token up first, in a read of its own; then it needs no database.
- every other grant (the device code's polls included), revocation and device
  authorization (RFC 8628) run whole in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

from authlib.oauth2.rfc6749 import OAuth2Error

from ..clients.jwks import ClientKeySets
from ..storage import AsyncSession, async_sessionmaker, clients as client_store, transactions
from ..storage.clients import StoredClient
from . import assertions
from .calls import Threads, detached, in_transaction
from .clients import OAuthClient, known_client
from .dpop import DPoP
from .request import OAuthResponse, OstiaryRequest
from .server import OstiaryAuthorizationServer

R = TypeVar("R")

#: a transaction that loses a race on PostgreSQL (serialization failure, deadlock) runs
#: again from the start, up to twice; the client never sees it
_RETRIES = 2


class TokenEndpoints:
    def __init__(
        self,
        server: OstiaryAuthorizationServer,
        sessionmaker: async_sessionmaker[AsyncSession],
        threads: Threads | None,
        dpop: DPoP,
    ) -> None:
        self.server = server
        self.sessionmaker = sessionmaker
        settings = server.settings
        keys = ClientKeySets(allow_private=settings.jwks_uri_allow_private)
        self.assertions = assertions.AssertionVerifier(settings, keys, sessionmaker)
        self.dpop = dpop
        #: threads for what runs detached; None: on the event loop (every core has a worker)
        self.threads = threads

    async def token(self, request: OstiaryRequest, grant_type: str, render: Callable[[OAuthResponse], R]) -> R:
        """The token endpoint's answer, passed through ``render`` (which runs where the grant
        ran: building the HTTP response on a signing thread keeps it off the event loop)."""
        server = self.server
        await self.load_clients(request)
        if "dpop" in request.headers:
            try:
                await self._prove(request)
            except OAuth2Error as error:
                # before authentication, but a browser app must read this (the nonce to use):
                # a public client, which authenticates by naming itself, is named the client
                request.client = _named_public_client(request)
                return render(server.handle_error_response(request, error))
        if grant_type == "client_credentials":
            return await detached(self.threads, lambda: render(server.create_token_response(request)))
        if grant_type == "refresh_token":
            try:
                grant = await in_transaction(
                    self.sessionmaker,
                    request,
                    lambda: server.validated_token_grant(request),
                    retry_serialization=_RETRIES,
                )
            except OAuth2Error as error:
                return render(server.handle_error_response(request, error))
            return await detached(self.threads, lambda: render(server.issue(grant)))
        response = await in_transaction(
            self.sessionmaker,
            request,
            lambda: server.create_token_response(request),
            commit_on=_succeeded,
            retry_serialization=_RETRIES,
        )
        return render(response)

    async def endpoint(self, name: str, request: OstiaryRequest) -> OAuthResponse:
        """``revocation``, ``introspection``, ``device_authorization`` or ``pushed_authorization``."""
        await self.load_clients(request)
        if name == "introspection":
            await self.server.introspection.look_up(request, self.sessionmaker)
            return self.server.create_endpoint_response(name, request)  # type: ignore[no-any-return]
        if name == "pushed_authorization" and "dpop" in request.headers:
            # RFC 9449 §10.1: a proof that comes with a push binds the code to its key
            try:
                await self._prove(request)
            except OAuth2Error as error:
                return self.server.handle_error_response(request, error)  # type: ignore[no-any-return]
        return await in_transaction(
            self.sessionmaker,
            request,
            lambda: self.server.create_endpoint_response(name, request),
            commit_on=_succeeded,
            retry_serialization=_RETRIES,
        )

    async def _prove(self, request: OstiaryRequest) -> None:
        """The request's DPoP proof, checked: its key (what the tokens, or the pushed
        request's code, are bound to) and algorithm go into the extras."""
        proof = await self.dpop.check(request.headers, "POST", request.uri)
        request.extras.dpop_jkt, request.extras.dpop_alg = proof.jkt, proof.alg

    async def load_clients(self, request: OstiaryRequest) -> None:
        """Snapshots of the clients ``request`` names (None for unknown ones) into its extras,
        and the client its ``private_key_jwt`` assertion authenticates, if it carries one."""
        # checked here first: a request without an assertion (the hot paths') runs no more code
        assertion = assertions.presented(request) if "client_assertion" in request.form else None
        claimed = request.claimed_client_ids()
        if assertion is not None and assertion.client_id not in claimed:
            claimed.append(assertion.client_id)
        found: dict[str, StoredClient | None] = {}
        for client_id in claimed:
            found[client_id] = await self.client(client_id)
        request.extras.clients = found
        if assertion is not None:
            request.extras.asserted_client_id = await self.assertions.verify(request, assertion)

    async def client(self, client_id: str) -> StoredClient | None:
        """One client's snapshot, from the cache or a read of its own."""
        return await self.server.client_cache.aget(client_id, partial(self._read, client_id))

    async def _read(self, client_id: str) -> StoredClient | None:
        return await transactions.run(
            self.sessionmaker, lambda db: client_store.get_client(db, client_id), read_only=True
        )


def _named_public_client(request: OstiaryRequest) -> OAuthClient | None:
    named = request.claimed_client_ids()
    client = known_client(request, named[0]) if len(named) == 1 else None
    return client if client is not None and client.is_public else None


def _succeeded(response: OAuthResponse) -> bool:
    return response.status < 400
