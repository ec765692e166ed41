"""The schema. Alembic's migrations in ``migrations/`` must match it (tests/migrations checks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime


class Client(Base):
    """An OAuth client. The secret is kept only as its SHA-256 digest (256-bit random secrets)."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    #: the secret a rotation replaced, still accepted until ``previous_secret_expires_at``
    previous_secret_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    audiences: Mapped[list[str]] = mapped_column(JSON)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, server_default=text("'[]'"))
    #: web origins (``https://app.example.com``) whose pages may read this client's answers
    #: from the token endpoints (CORS)
    allowed_cors_origins: Mapped[list[str]] = mapped_column(JSON, server_default=text("'[]'"))
    first_party: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: a resource server: may introspect any token, not only its own
    introspection: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: id_token_signed_response_alg (OIDC Registration); None: RS256
    id_token_alg: Mapped[str | None] = mapped_column(String(16))
    #: every sign-in to this client needs a second factor
    require_mfa: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: RFC 7591 §2: ``client_secret_basic``, ``client_secret_post`` or ``none`` (public)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32), server_default=text("'client_secret_basic'"))
    response_types: Mapped[list[str]] = mapped_column(JSON, server_default=text("'[\"code\"]'"))
    #: OpenID Connect Back-Channel Logout 1.0 §2.2
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    backchannel_logout_session_required: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: shown on the consent page (RFC 7591 §2)
    logo_uri: Mapped[str | None] = mapped_column(Text)
    policy_uri: Mapped[str | None] = mapped_column(Text)
    tos_uri: Mapped[str | None] = mapped_column(Text)
    #: ``private_key_jwt`` (RFC 7523 §2.2): the client's public keys, inline (a JWK Set) or
    #: at ``jwks_uri``, and the one algorithm its assertions are signed with
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    jwks_uri: Mapped[str | None] = mapped_column(Text)
    token_endpoint_auth_signing_alg: Mapped[str | None] = mapped_column(String(16))
    #: RFC 9126 §6: authorization requests only through the pushed authorization endpoint
    require_pushed_authorization_requests: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: the algorithm of this client's JWT access tokens; None: ``OSTIARY_ACCESS_TOKEN_ALG``
    access_token_alg: Mapped[str | None] = mapped_column(String(16))
    #: RFC 9449 §5.2: every access token of this client is bound to a DPoP key
    dpop_bound_access_tokens: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: held to the FAPI 2.0 Security Profile (docs/fapi2.md), as every client is under
    #: ``OSTIARY_PROFILE=fapi2``
    fapi2: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: SHA-256 of the RFC 7592 registration access token; set only for clients that
    #: registered themselves at ``/register``
    registration_token_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SigningKey(Base):
    """A JWS signing key. The private key is AES-256-GCM encrypted (``private_key_enc``).

    ``state`` runs next -> active -> retired -> removed; a partial unique index keeps at most
    one active key per algorithm, whatever number of processes race to create one.
    """

    __tablename__ = "signing_keys"
    __table_args__ = (
        Index(
            "uq_signing_keys_active_alg",
            "alg",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_key_enc: Mapped[bytes] = mapped_column(LargeBinary)
    wrapping_key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    """An append-only record of security-relevant actions (who did what, never a secret).

    ``actor`` did it (a user's ``sub``, a client id, ``cli``, ``system``); ``user_sub`` and
    ``client_id`` name the user and the client it concerns, for reading the trail by either;
    ``subject`` names anything else it concerns (a key id, a grant)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_user_sub_occurred_at", "user_sub", "occurred_at"),
        Index("ix_audit_events_client_id_occurred_at", "client_id", "occurred_at"),
        Index("ix_audit_events_kind_occurred_at", "kind", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(200))
    user_sub: Mapped[str | None] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)


class User(Base):
    """A person who signs in. ``sub`` is random and never reassigned; the username may change."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sub: Mapped[str] = mapped_column(String(64), unique=True)
    username: Mapped[str] = mapped_column(String(150))
    #: casefolded username: unique, so "Alice" and "alice" are one account
    username_key: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    email_key: Mapped[str | None] = mapped_column(String(254), unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, server_default=false())
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: the next sign-in must set a new password before anything else (a bootstrap admin)
    must_change_password: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BrowserSession(Base):
    """A signed-in browser (single sign-on across clients). The cookie holds a random token;
    only its SHA-256 is stored. ``sid`` is the public id that ID tokens carry."""

    __tablename__ = "browser_sessions"

    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime())
    amr: Mapped[list[str]] = mapped_column(JSON)
    acr: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: the last time the user proved a factor again in this session (re-authentication for
    #: account changes that affect sign-in); None: only at ``auth_time``
    reauthenticated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: what the browser said it was at sign-in (its User-Agent, cut to 512 characters) and
    #: where from (the client address): the account page tells sessions apart by them
    user_agent: Mapped[str | None] = mapped_column(String(512))
    address: Mapped[str | None] = mapped_column(String(64))
    #: when the session was last used, written at most every few minutes (None: not since
    #: it started, or started before this was kept)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Interaction(Base):
    """One authorization request waiting for the user (login, consent), bound to the browser
    that started it, so it cannot be finished from another one."""

    __tablename__ = "interactions"
    __table_args__ = (Index("ix_interactions_origin_expires", "origin_digest", "expires_at"),)

    id_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    browser_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    #: keyed digest of the client address that started it: pending interactions per address are capped
    origin_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    #: None for a sign-in to the account pages (``return_to``), not to a client
    client_id: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[list[list[str]]] = mapped_column(JSON)
    #: the session this interaction signed in, when it did (its login is fresh by definition)
    session_sid: Mapped[str | None] = mapped_column(String(64))
    #: the user whose password was checked while the second factor is still to come
    pending_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: SHA-256 of the password hash that was checked: a password change meanwhile voids it
    pending_credential: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    #: where an account sign-in goes once done (a path of ours)
    return_to: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Grant(Base):
    """One authorization of a client by a user: the family every token from it belongs to.

    Revoking the grant makes every token issued under it inactive (code replay, RFC 6749
    §4.1.2; refresh-token reuse, RFC 9700 §4.14.2)."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(Text)
    session_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    #: absolute lifetime of the family: no refresh token of it outlives this
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    #: the original authentication, carried into refreshed ID tokens (OIDC Core §12.2)
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON, server_default=text("'[]'"))
    #: generation of the newest refresh token; its predecessor is the only grace candidate
    head_generation: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: RFC 9449 §5: the JWK thumbprint of the DPoP key a public client's refresh tokens are
    #: bound to (None: not bound)
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))


class AuthorizationCode(Base):
    """Stored as a SHA-256 digest; consumed (never deleted) by one conditional UPDATE, so a
    replay is recognised and revokes the grant it created."""

    __tablename__ = "authorization_codes"
    __table_args__ = (Index("ix_authorization_codes_client_nonce", "client_id", "nonce"),)

    code_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    grant_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(512))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    #: RFC 9449 §10: the thumbprint of the DPoP key the code may be redeemed with only
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    session_sid: Mapped[str | None] = mapped_column(String(64))
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime())
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RefreshToken(Base):
    """A rotating refresh token: 256 random bits, kept as SHA-256, consumed on use.

    Every token belongs to a grant (its family, RFC 9700 §4.14.2). Consumed rows stay
    until cleanup so a replay is recognised, and revokes the family.
    """

    __tablename__ = "refresh_tokens"

    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: times this token was presented again inside the grace window after being consumed
    grace_uses: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class RevokedAccessToken(Base):
    """The deny list of revoked JWT access tokens (RFC 7009), kept until they expire."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class MailOutbox(Base):
    """Mail waiting to be sent: written in the transaction of what caused it, so nothing is lost."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(String(254))
    template: Mapped[str] = mapped_column(String(64))
    #: the Message-ID header, the same on every attempt, so a duplicate delivery can be recognised
    message_id: Mapped[str | None] = mapped_column(String(200))
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    #: a secret the message carries (a reset link), encrypted; erased once sent
    secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    wrapping_key_id: Mapped[str | None] = mapped_column(String(32))


class Consent(Base):
    """Scopes a user has granted a client, remembered so consent is asked once."""

    __tablename__ = "consents"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TotpCredential(Base):
    """A user's TOTP secret (RFC 6238), AES-256-GCM encrypted under the key-encryption secret
    and bound to its user. ``confirmed_at`` is None while enrolment waits for a first code;
    ``last_step`` is the last accepted time step, so no code is accepted twice."""

    __tablename__ = "totp_credentials"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    wrapping_key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class Passkey(Base):
    """A user's WebAuthn credential (a passkey or a security key): its public key, the
    signature counter it last reported, and what the user named it. Nothing secret."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: the credential id the authenticator chose (at most 1023 bytes, WebAuthn §5.8.3)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    #: COSE-encoded public key
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    aaguid: Mapped[str] = mapped_column(String(36))
    #: a passkey that a platform syncs between devices ("multi_device"), or one bound to its authenticator
    device_type: Mapped[str] = mapped_column(String(16))
    transports: Mapped[list[str]] = mapped_column(JSON)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebAuthnChallenge(Base):
    """A challenge handed to a browser for one ceremony, kept as SHA-256 and spent by its
    first use: registering a passkey (``user_id``) or signing in with one (``interaction``,
    the digest of the sign-in it belongs to)."""

    __tablename__ = "webauthn_challenges"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    interaction: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class BackupCode(Base):
    """A single-use backup code, kept as the SHA-256 of its 80 random bits."""

    __tablename__ = "backup_codes"

    code_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuthFailure(Base):
    """One failed authentication attempt, counted over a sliding window for lockout.

    ``factor`` keeps separate counters (``password``, ``otp``); ``device_digest`` names a
    browser known to the account, whose failures are counted apart from everyone else's.
    Failures for a username without an account are counted the same way, under a digest of
    the name, so the sign-in page behaves alike for both."""

    __tablename__ = "auth_failures"
    __table_args__ = (
        Index("ix_auth_failures_user_factor_time", "user_id", "factor", "occurred_at"),
        Index("ix_auth_failures_name_factor_time", "name_digest", "factor", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: the account; None for a username that has no account (``name_digest`` says which)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    factor: Mapped[str] = mapped_column(String(16))
    device_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PasswordReset(Base):
    """A password-reset link's token (256 random bits), kept as SHA-256; used once, and
    void once a newer one is requested."""

    __tablename__ = "password_resets"

    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Invitation(Base):
    """An administrator's invitation to sign up (``OSTIARY_SIGNUP=invite``): a link whose
    token (256 random bits) is kept as SHA-256, used by one account, optionally for one
    address only."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    #: the only address it may sign up, when the administrator named one
    email: Mapped[str | None] = mapped_column(String(254))
    #: who made it, as the audit trail names actors (``cli``, ``user:<sub>``)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: the account it made
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class EmailVerification(Base):
    """A link mailed to prove an address (256 random bits, kept as SHA-256), used once: a
    sign-up waiting for its address (``purpose`` "signup": the account is made only when
    the link is used), or a signed-in user's new or unverified address ("email")."""

    __tablename__ = "email_verifications"

    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(254))
    #: the account whose address changes ("email")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: the account to make ("signup"): its password is already an Argon2id hash
    username: Mapped[str | None] = mapped_column(String(150))
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    invitation_id: Mapped[int | None] = mapped_column(ForeignKey("invitations.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RateLimit(Base):
    """A fixed one-minute window of requests per key (e.g. an endpoint and a client IP)."""

    __tablename__ = "rate_limits"

    bucket: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: the window's start, in whole minutes since the epoch
    window_start: Mapped[int] = mapped_column(Integer, index=True)
    hits: Mapped[int] = mapped_column(Integer)


__all__ = [
    "AuditEvent",
    "AuthFailure",
    "AuthorizationCode",
    "BackupCode",
    "Base",
    "BrowserSession",
    "Client",
    "Consent",
    "Grant",
    "Interaction",
    "MailOutbox",
    "PasswordReset",
    "RateLimit",
    "RefreshToken",
    "RevokedAccessToken",
    "SigningKey",
    "TotpCredential",
    "User",
]


class SessionClient(Base):
    """A client that was issued an authorization code in a browser session: the clients
    that OpenID Connect Back-Channel Logout tells when the session ends."""

    __tablename__ = "session_clients"

    sid: Mapped[str] = mapped_column(ForeignKey("browser_sessions.sid", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LogoutNotice(Base):
    """A back-channel logout token still to be delivered to a client (an outbox row, as
    ``mail_outbox`` is for mail): queued in the transaction that ends the session, signed
    and posted by a background sender, retried with backoff until the client takes it or a
    day has passed. The row is deleted then, so the table holds only what is pending."""

    __tablename__ = "logout_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64))
    sub: Mapped[str] = mapped_column(String(64))
    sid: Mapped[str | None] = mapped_column(String(64))
    #: the logout token's jti, the same on every attempt
    jti: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)


class DeviceAuthorization(Base):
    """An RFC 8628 device authorization: the device polls with ``device_code``, a person
    approves it at ``/device`` with ``user_code``. Both are kept as SHA-256 digests."""

    __tablename__ = "device_authorizations"

    device_code_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_code_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Text)
    #: the polling interval in seconds; raised by ``slow_down``
    interval: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: ``pending``, ``approved`` or ``denied``
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: the grant (refresh family) its tokens belong to, chosen at approval: a replayed
    #: device code revokes it
    grant_id: Mapped[str | None] = mapped_column(String(64))
    session_sid: Mapped[str | None] = mapped_column(String(64))
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON, server_default=text("'[]'"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RegistrationToken(Base):
    """An RFC 7591 initial access token (``ostiary clients registration-token create``),
    kept as the SHA-256 of its value."""

    __tablename__ = "registration_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: None: unlimited
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UsedJti(Base):
    """A JWT id that was accepted once and must never be again, until its token expires:
    client assertions (RFC 7523 §3 point 7) and DPoP proofs (RFC 9449 §11.1). Kept as the
    SHA-256 of the issuer and the id, so that neither a long id nor one issuer's ids can
    collide with another's; the primary key makes a second use fail in every process."""

    __tablename__ = "used_jtis"

    #: ``client_assertion`` or ``dpop``
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PushedAuthorizationRequest(Base):
    """An RFC 9126 pushed authorization request: the parameters a client posted to ``/par``,
    waiting for the browser to bring their ``request_uri`` to ``/authorize`` once. Kept by
    the SHA-256 of the reference's random part."""

    __tablename__ = "pushed_authorization_requests"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    #: the authorization request's parameters, name to value
    parameters: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
