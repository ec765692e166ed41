"""Dynamic client registration's rules (RFC 7591, RFC 7592): the initial access tokens an
administrator hands out, and what a client that registers itself may be.

A self-registered client is an ordinary client with a registration access token (kept as
its SHA-256 digest), and with less trust than one an administrator registered:

- never first-party (its users always see the consent page), never a resource server
  (no introspection of others' tokens), no audiences, no second-factor policy;
- no ``client_credentials``: that grant issues tokens with no user to consent, so whoever
  can reach ``/register`` would get tokens for any scope it names;
- only the scopes the caller allows (``/register`` allows those discovery advertises),
  each of which a user must consent to;
- a back-channel logout URI only over https: the server posts to it, and anyone who may
  register must not point it at plain-http services on the server's own host.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from ..storage import Session, audit, clients as client_store, registration_tokens as token_store
from ..storage.base import sha256, utcnow
from ..storage.clients import StoredClient
from ..storage.registration_tokens import StoredRegistrationToken
from . import fapi2, service
from .errors import ClientRegistrationError
from .jwks import own_network
from .metadata import DEFAULTS, fields_from, with_defaults

#: who the audit rows of a client's own registration calls name
ACTOR = "registration"


# Initial access tokens (RFC 7591 §3: how an administrator lets a client register).


def create_initial_token(
    session: Session, *, expires_in: int | None, max_uses: int | None, actor: str
) -> tuple[str, str]:
    """A new initial access token: its id and its value, to be shown once (only its digest
    is kept). ``expires_in`` seconds (None: never), ``max_uses`` registrations (None: any)."""
    if max_uses is not None and max_uses < 1:
        raise ClientRegistrationError("--max-uses", "must be 1 or more")
    if expires_in is not None and expires_in < 1:
        raise ClientRegistrationError("--expires-in", "must be 1 second or more")
    token_id, token, now = secrets.token_hex(8), secrets.token_urlsafe(32), utcnow()
    expires_at = now + timedelta(seconds=expires_in) if expires_in is not None else None
    token_store.insert(
        session, token_id=token_id, digest=sha256(token), now=now, expires_at=expires_at, max_uses=max_uses
    )
    details = {"expires_in": expires_in, "max_uses": max_uses}
    audit.record(session, "registration_token.created", actor=actor, details={"id": token_id, **details})
    return token_id, token


def list_initial_tokens(session: Session) -> list[StoredRegistrationToken]:
    return token_store.list_tokens(session)


def revoke_initial_token(session: Session, token_id: str, *, actor: str) -> bool:
    """Revoke a token; False when it already was. Clients it registered stay registered."""
    if not token_store.exists(session, token_id):
        raise ClientRegistrationError("ID", f"no registration token {token_id!r}")
    revoked = token_store.revoke(session, token_id, utcnow())
    if revoked:
        audit.record(session, "registration_token.revoked", actor=actor, details={"id": token_id})
    return revoked


def use_initial_token(session: Session, token: str) -> str | None:
    """Count one use of ``token``; its id, or None when it is unknown, revoked, expired or
    used up. The use is undone if the caller's transaction rolls back (a refused registration)."""
    return token_store.use(session, sha256(token), utcnow())


# Self-registered clients.


def register_self(
    session: Session,
    document: Mapping[str, Any],
    *,
    allowed_scopes: Collection[str],
    initial_token: str | None,
    profile: str = "none",
) -> tuple[StoredClient, str | None, str]:
    """Register the client ``document`` describes (RFC 7591 names; unknown ones ignored, as
    §2 says); returns it, its secret (None for a public client) and its registration access
    token, both to be handed over once. Under ``profile`` (``OSTIARY_PROFILE``) ``fapi2``
    the client is held to it. Raises ClientRegistrationError naming the metadata."""
    fields = fapi2.under_profile(profile, _self_fields(with_defaults(document), allowed_scopes))
    token = secrets.token_urlsafe(32)
    try:
        client, secret = service.register_client(
            session, **fields, registration_token_digest=sha256(token), actor=ACTOR
        )
    except ClientRegistrationError as error:
        raise error.in_metadata_terms() from None
    if initial_token is not None:
        audit.record(
            session, "registration_token.used", actor=ACTOR, client=client.client_id, details={"id": initial_token}
        )
    return client, secret, token


def find_self_registered(session: Session, client_id: str, registration_token: str) -> StoredClient | None:
    """The client ``client_id``, if ``registration_token`` is its registration access token."""
    return client_store.get_registered_client(session, client_id, sha256(registration_token))


def replace_self(
    session: Session,
    client: StoredClient,
    document: Mapping[str, Any],
    *,
    allowed_scopes: Collection[str],
    profile: str = "none",
) -> StoredClient:
    """RFC 7592 §2.2: the metadata in ``document`` replaces all the client's metadata (what
    it leaves out takes its default), by the rules of registration. The client keeps its
    id, its secret and its registration access token; left out, its authentication method
    stays what it was (a secret cannot appear or vanish by an update). Under ``profile``
    ``fapi2`` the client is held to it from then on."""
    defaults = {**DEFAULTS, "token_endpoint_auth_method": client.token_endpoint_auth_method}
    document = {**defaults, **{name: value for name, value in document.items() if value is not None}}
    fields = _self_fields(document, allowed_scopes)
    cleared = {
        "redirect_uris": (),
        "post_logout_redirect_uris": (),
        "allowed_cors_origins": (),
        "backchannel_logout_uri": None,
        "backchannel_logout_session_required": False,
        "logo_uri": None,
        "policy_uri": None,
        "tos_uri": None,
        "jwks": None,
        "jwks_uri": None,
        "token_endpoint_auth_signing_alg": None,
        "require_pushed_authorization_requests": False,
        "access_token_alg": None,
        "dpop_bound_access_tokens": False,
    }
    changes = fapi2.under_profile(profile, {**cleared, **fields})
    try:
        return service.update(session, client.client_id, changes, actor=ACTOR)
    except ClientRegistrationError as error:
        raise error.in_metadata_terms() from None


def delete_self(session: Session, client: StoredClient) -> None:
    service.delete(session, client.client_id, actor=ACTOR)


def _self_fields(document: Mapping[str, Any], allowed_scopes: Collection[str]) -> dict[str, Any]:
    """The stored client's fields for ``document``, with the limits of a self-registered client."""
    fields = fields_from(document, ignore_unknown=True)
    if "client_credentials" in fields.get("grant_types", ()):
        raise ClientRegistrationError(
            "grant_types", "client_credentials is for clients an administrator registers, not for /register"
        )
    # left out: what a user can be asked for at sign-in, but no offline access
    scopes = fields.get("scopes") or tuple(scope for scope in allowed_scopes if scope != "offline_access")
    refused = [scope for scope in scopes if scope not in allowed_scopes]
    if refused:
        raise ClientRegistrationError(
            "scope", f"{' '.join(refused)} cannot be registered here (allowed: {' '.join(allowed_scopes)})"
        )
    fields["scopes"] = scopes
    for name in ("backchannel_logout_uri", "jwks_uri"):  # the server itself calls both
        if fields.get(name):
            _public_https(name, fields[name])
    fields.setdefault("name", _default_name(fields.get("redirect_uris", ())))
    return fields


def _public_https(name: str, uri: str) -> None:
    """The server itself posts to ``uri``: for a client anyone may register, https to a
    public name or address only, never one of the server's own network (loopback, private,
    link-local, reserved) nor a single-label intranet name. A name that resolves to such an
    address is not caught here; an operator who opens registration should also keep the
    server's outbound traffic from its own network (deploy/README.md)."""
    refusal = ClientRegistrationError(name, "must be an https URI on a public host for a self-registered client")
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
    except ValueError:
        raise refusal from None
    if parts.scheme.lower() != "https" or "." not in host.strip(".") and ":" not in host:
        raise refusal
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host.rstrip(".").endswith((".localhost", ".local", ".internal")) or host.rstrip(".") == "localhost":
            raise refusal from None
        return
    if own_network(host):
        raise refusal


def _default_name(redirect_uris: tuple[str, ...]) -> str:
    """What the consent page calls a client that gave no ``client_name``: the host its
    sign-ins return to, which is what a user can check."""
    for uri in redirect_uris:
        try:
            host = urlsplit(uri).hostname
        except ValueError:
            continue
        if host:
            return host
    return "an unnamed application"
