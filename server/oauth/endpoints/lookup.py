"""What revocation and introspection share: tokens recognised by shape.

A JWT is one of our access tokens (verified, then checked against the deny list and its
grant); anything else is looked up as a refresh token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749.errors import UnsupportedTokenTypeError as AuthlibUnsupportedTokenType

from ...keys.holder import KeyRingHolder
from ...storage import AsyncSession, Session, access_tokens, async_sessionmaker, refresh as refresh_store, transactions
from ...storage.refresh import TokenState
from ..errors import UnsupportedTokenTypeError
from ..request import OstiaryRequest
from .userinfo import InvalidToken, verify_access_token


@dataclass(frozen=True)
class AccessTokenState:
    claims: dict[str, Any]
    active: bool

    @property
    def client_id(self) -> str:
        return str(self.claims.get("client_id"))

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def is_expired(self) -> bool:
        return not self.active

    def is_revoked(self) -> bool:
        return not self.active


@dataclass(frozen=True, slots=True)
class RefreshTokenState:
    """Authlib's ``TokenMixin`` over a refresh token as storage reads it."""

    record: TokenState

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.record.client_id)

    def is_expired(self) -> bool:
        return not self.record.active

    def is_revoked(self) -> bool:
        return not self.record.active


#: what revocation and introspection are given for a token they recognise
KnownToken = AccessTokenState | RefreshTokenState


def access_token_active(db: Session, claims: dict[str, Any]) -> bool:
    """Not on the deny list, its client enabled, and its grant (when user-bound) not
    revoked nor its user disabled: one statement."""
    return access_tokens.is_active(db, *_token_keys(claims))


def _token_keys(claims: dict[str, Any]) -> tuple[str, str | None, str]:
    """What :func:`access_tokens.is_active` is asked about a token: its ``jti``, grant and client."""
    grant_id = claims.get("gid")
    return str(claims.get("jti")), None if grant_id is None else str(grant_id), str(claims.get("client_id"))


class TokenLookup:
    """Authlib's token endpoint hooks over our tokens; ``query_token`` gets no request, so
    :meth:`find` is called with it instead."""

    SUPPORTED_TOKEN_TYPES = ("access_token", "refresh_token")

    def __init__(self, server: Any, keys: KeyRingHolder, issuer: str) -> None:
        super().__init__(server)  # type: ignore[call-arg]
        self.keys = keys
        self.issuer = issuer

    def find(self, request: OstiaryRequest) -> KnownToken | None:
        """The request's token, read in the call's session."""
        db = request.extras.session
        shape = self._shape(request.form["token"])
        if isinstance(shape, dict):
            return AccessTokenState(shape, access_token_active(db, shape))
        state = None if shape is None else refresh_store.lookup(db, shape)
        return None if state is None else RefreshTokenState(state)

    async def recognise(self, token: str, sessionmaker: async_sessionmaker[AsyncSession]) -> KnownToken | None:
        """:meth:`find` for ``token``, as a read of its own (one statement)."""
        shape = self._shape(token)
        if isinstance(shape, dict):
            active = await access_tokens.is_active_alone(sessionmaker, *_token_keys(shape))
            return AccessTokenState(shape, active)
        if shape is None:
            return None
        state = await transactions.run(sessionmaker, lambda db: refresh_store.lookup(db, shape), read_only=True)
        return None if state is None else RefreshTokenState(state)

    def _shape(self, token: str) -> dict[str, Any] | str | None:
        """The claims of ``token`` when it is one of our access tokens, verified; ``token``
        itself when it may be a refresh token; None when it can be neither."""
        if token.count(".") == 2:
            try:
                return verify_access_token(self.keys.current, self.issuer, token)
            except InvalidToken:
                return None
        return token if len(token) <= 256 else None

    def check_params(self, request: Any, client: Any) -> None:
        # Authlib answers an unknown token_type_hint with 401 (its UnsupportedTokenTypeError
        # is a ForbiddenError); RFC 7009 §2.2.1 errors are RFC 6749 §5.2 responses: 400.
        try:
            super().check_params(request, client)  # type: ignore[misc]
        except AuthlibUnsupportedTokenType:
            raise UnsupportedTokenTypeError() from None
