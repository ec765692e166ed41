"""Registering clients: the rules a client's metadata must follow (administration: ``admin.py``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

from ..settings import ACCESS_TOKEN_ALGS, LOOPBACK_HOSTS, SIGNING_ALGS
from ..storage import Session, audit, clients as client_store, keys as key_store
from ..storage.base import utcnow
from . import fapi2
from .errors import ClientRegistrationError, UnknownClient
from .jwks import ASSERTION_ALGS, checked_jwks, checked_jwks_uri
from .secrets import new_client_id, new_client_secret, secret_digest

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
#: Grant types a client may be registered for.
GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token", DEVICE_CODE)
#: the grants through which a user signs in (and may be asked for a second factor)
USER_GRANTS = frozenset({"authorization_code", DEVICE_CODE})

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")


# long: one keyword per piece of metadata, each passed on to the stored client
def register_client(
    session: Session,
    *,
    name: str,
    grant_types: Iterable[str],
    scopes: Iterable[str],
    redirect_uris: Iterable[str] = (),
    audiences: Iterable[str] = (),
    post_logout_redirect_uris: Iterable[str] = (),
    allowed_cors_origins: Iterable[str] = (),
    public: bool = False,
    first_party: bool = False,
    introspection: bool = False,
    id_token_alg: str | None = None,
    require_mfa: bool = False,
    backchannel_logout_uri: str | None = None,
    backchannel_logout_session_required: bool = False,
    token_endpoint_auth_method: str | None = None,
    response_types: Iterable[str] = ("code",),
    logo_uri: str | None = None,
    policy_uri: str | None = None,
    tos_uri: str | None = None,
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    token_endpoint_auth_signing_alg: str | None = None,
    require_pushed_authorization_requests: bool = False,
    access_token_alg: str | None = None,
    dpop_bound_access_tokens: bool = False,
    fapi2: bool = False,
    registration_token_digest: bytes | None = None,
    actor: str = "admin",
) -> tuple[client_store.StoredClient, str | None]:
    """Validate and store a client; returns it and its secret (shown once; None when it
    authenticates without one).

    A public client (a browser or native app, RFC 6749 §2.1) has no secret and may only use
    the authorization code grant, with PKCE like every client. ``token_endpoint_auth_method``
    (RFC 7591 §2) defaults to ``none`` for a public client, else ``client_secret_basic``;
    ``none`` makes the client public. A ``private_key_jwt`` client has no secret either: it
    signs with a key of its own, registered as ``jwks`` or ``jwks_uri``. A ``fapi2`` client
    is held to the FAPI 2.0 Security Profile (:mod:`.fapi2`).
    """
    method = token_endpoint_auth_method or ("none" if public else "client_secret_basic")
    secret = new_client_secret() if method in SECRET_METHODS else None
    draft = client_store.StoredClient(
        client_id=new_client_id(),
        name=name,
        secret_digest=secret_digest(secret) if secret else None,
        grant_types=tuple(grant_types),
        scopes=tuple(scopes),
        redirect_uris=tuple(redirect_uris),
        audiences=tuple(audiences),
        created_at=utcnow(),
        disabled_at=None,
        post_logout_redirect_uris=tuple(post_logout_redirect_uris),
        allowed_cors_origins=tuple(allowed_cors_origins),
        first_party=first_party,
        introspection=introspection,
        id_token_alg=id_token_alg,
        require_mfa=require_mfa,
        token_endpoint_auth_method=method,
        response_types=tuple(response_types),
        backchannel_logout_uri=backchannel_logout_uri,
        backchannel_logout_session_required=backchannel_logout_session_required,
        logo_uri=logo_uri,
        policy_uri=policy_uri,
        tos_uri=tos_uri,
        jwks=jwks,
        jwks_uri=jwks_uri,
        token_endpoint_auth_signing_alg=token_endpoint_auth_signing_alg,
        require_pushed_authorization_requests=require_pushed_authorization_requests,
        access_token_alg=access_token_alg,
        dpop_bound_access_tokens=dpop_bound_access_tokens,
        fapi2=fapi2,
        registration_token_digest=registration_token_digest,
    )
    client = validated(draft)
    _check_signing_key(session, client)
    client_store.insert_client(session, client)
    audit.record(session, "client.created", actor=actor, client=client.client_id, details={"name": client.name})
    return client, secret


def validated(client: client_store.StoredClient) -> client_store.StoredClient:
    """``client`` with its metadata normalised, or ClientRegistrationError naming the option
    at fault: the rules of registration, which an update follows too."""
    _plain_text(client)
    if client.fapi2:
        fapi2.check(client)  # before the algorithms are normalised: RS256 given is refused
    keys = _client_keys(client)  # first: whether the client is public follows from its method
    public = client.is_public
    granted = _grant_types(client.grant_types)
    uris = _unique(_redirect_uri(uri) for uri in client.redirect_uris)
    if client.fapi2:
        fapi2.check_redirect_uris(uris)
    if "authorization_code" in granted and not uris:
        raise ClientRegistrationError("--redirect-uri", "the authorization_code grant needs at least one")
    if "refresh_token" in granted and not USER_GRANTS & set(granted):
        raise ClientRegistrationError("--grant-type", "refresh_token comes with authorization_code or the device grant")
    if public and client.introspection:
        raise ClientRegistrationError("--introspection", "a public client cannot authenticate to introspect")
    if client.require_mfa and not USER_GRANTS & set(granted):
        raise ClientRegistrationError(
            "--require-mfa", "only users sign in with a second factor: needs authorization_code or the device grant"
        )
    if public and "client_credentials" in granted:
        raise ClientRegistrationError("--grant-type", "a public client cannot use client_credentials")
    if not public and any(origin.strip() for origin in client.allowed_cors_origins):
        raise ClientRegistrationError(
            "--cors-origin",
            "only a public client is called from a browser page: one with a secret cannot keep it there",
        )
    id_token_alg, access_token_alg = _signing_algs(client)
    return replace(
        client,
        name=_name(client.name),
        grant_types=granted,
        scopes=_scopes(client.scopes),
        redirect_uris=uris,
        audiences=_unique(_audience(aud) for aud in client.audiences),
        post_logout_redirect_uris=_unique(
            _redirect_uri(uri, "--post-logout-redirect-uri") for uri in client.post_logout_redirect_uris
        ),
        allowed_cors_origins=_unique(_cors_origin(origin) for origin in client.allowed_cors_origins if origin.strip()),
        id_token_alg=id_token_alg,
        access_token_alg=access_token_alg,
        backchannel_logout_uri=_backchannel_logout_uri(client.backchannel_logout_uri),
        response_types=_response_types(client.response_types, granted),
        logo_uri=_web_page_uri(client.logo_uri, "--logo-uri"),
        policy_uri=_web_page_uri(client.policy_uri, "--policy-uri"),
        tos_uri=_web_page_uri(client.tos_uri, "--tos-uri"),
        **keys,
    )


#: RFC 7591 §2's token endpoint authentication methods we serve (``none``: a public client)
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
PRIVATE_KEY_JWT = "private_key_jwt"
AUTH_METHODS = (*SECRET_METHODS, PRIVATE_KEY_JWT, "none")
#: RFC 7591 §2.1: the response types we serve, each with the grant type it needs
RESPONSE_TYPES = {"code": "authorization_code"}


def _client_keys(client: client_store.StoredClient) -> dict[str, Any]:
    """The method must be one we serve and fit the client's credentials: a secret method
    exactly when it has a secret, and for ``private_key_jwt`` its public keys, inline
    (``jwks``) or at a URI (``jwks_uri``), one of the two. Returns the keys' fields, checked."""
    method = client.token_endpoint_auth_method
    option = "--token-endpoint-auth-method"
    if method not in AUTH_METHODS:
        raise ClientRegistrationError(option, f"{method!r} is not supported (supported: {', '.join(AUTH_METHODS)})")
    if method in SECRET_METHODS and client.secret_digest is None:
        raise ClientRegistrationError(
            option, f"the client has no secret to send: use none or private_key_jwt, not {method}"
        )
    if method not in SECRET_METHODS and client.secret_digest is not None:
        raise ClientRegistrationError(
            option, "a client with a secret sends it: client_secret_basic or client_secret_post"
        )
    keyed = client.jwks is not None or bool(client.jwks_uri) or bool(client.token_endpoint_auth_signing_alg)
    if method != PRIVATE_KEY_JWT:
        if keyed:
            raise ClientRegistrationError("--jwks-uri", "keys and their algorithm are for private_key_jwt clients")
        return {"jwks": None, "jwks_uri": None, "token_endpoint_auth_signing_alg": None}
    if (client.jwks is None) == (not client.jwks_uri):
        raise ClientRegistrationError("--jwks-uri", "a private_key_jwt client registers jwks or jwks_uri, one of them")
    alg = client.token_endpoint_auth_signing_alg
    if alg is not None and alg not in ASSERTION_ALGS:
        raise ClientRegistrationError(
            "--token-endpoint-auth-signing-alg", f"must be one of {', '.join(ASSERTION_ALGS)}, got {alg!r}"
        )
    return {
        "jwks": checked_jwks(client.jwks, "--jwks") if client.jwks is not None else None,
        "jwks_uri": checked_jwks_uri(client.jwks_uri, "--jwks-uri") if client.jwks_uri else None,
        "token_endpoint_auth_signing_alg": alg,
    }


def _response_types(values: Iterable[str], granted: tuple[str, ...]) -> tuple[str, ...]:
    """Those we serve, each present exactly when the client has its grant type: ``code``
    with ``authorization_code``; a client of other grants (client credentials, the device
    grant) uses the authorization endpoint for nothing. RFC 7591 §2.1 lets the server settle
    such a mismatch, which an update of the grant types would otherwise leave behind."""
    for response_type in _unique(values):
        if response_type not in RESPONSE_TYPES:
            raise ClientRegistrationError(
                "--response-type", f"{response_type!r} is not supported (supported: {', '.join(RESPONSE_TYPES)})"
            )
    return tuple(value for value, grant_type in RESPONSE_TYPES.items() if grant_type in granted)


def _web_page_uri(uri: str | None, field: str) -> str | None:
    """A logo or a page shown to users (RFC 7591 §2): an absolute https URI (http on
    loopback), which the consent page puts in ``src``/``href``."""
    if not uri or not uri.strip():
        return None
    uri = uri.strip()
    parts = _split(field, uri)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        raise ClientRegistrationError(field, f"{uri!r} must be an absolute https URI")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ClientRegistrationError(field, f"{uri!r} must use https (http only on loopback)")
    if any(char.isspace() or char in "\"'<>" for char in uri):
        raise ClientRegistrationError(field, f"{uri!r} holds characters a URI cannot")
    return uri


def _backchannel_logout_uri(uri: str | None) -> str | None:
    """Back-Channel Logout 1.0 §2.2: an absolute URI, ours to POST to, without a fragment;
    https except on a loopback host (as redirect URIs)."""
    if not uri:
        return None
    if urlsplit(uri).scheme not in _DEFAULT_PORTS:
        raise ClientRegistrationError("--backchannel-logout-uri", f"{uri!r} must be an https URI")
    return _redirect_uri(uri, "--backchannel-logout-uri")


def find(session: Session, client_id: str) -> client_store.StoredClient:
    client = client_store.get_client(session, client_id)
    if client is None:
        raise UnknownClient(client_id)
    return client


def set_disabled(session: Session, client_id: str, disabled: bool, *, actor: str) -> bool:
    """Disable or enable a client; False when it already was. A disabled client is
    refused at every endpoint (``invalid_client``) and its tokens introspect inactive;
    processes that cached it see the change within ``OSTIARY_CLIENT_CACHE_TTL``."""
    client = find(session, client_id)
    if (client.disabled_at is not None) == disabled:
        return False
    client_store.set_disabled(session, client_id, utcnow() if disabled else None)
    audit.record(session, "client.disabled" if disabled else "client.enabled", actor=actor, client=client_id)
    return True


def rotate_secret(session: Session, client_id: str, *, keep_old_for: int, actor: str) -> str:
    """A new secret for a confidential client, returned to be shown once. The old one stays
    accepted for ``keep_old_for`` seconds (0: not at all), so the client's deployments can
    change over without a moment in which neither works. A process that cached the client
    goes on accepting only the old one until its cache entry ends (``OSTIARY_CLIENT_CACHE_TTL``)."""
    if keep_old_for < 0:
        raise ClientRegistrationError("--keep-old-for", "must be a number of seconds, 0 or more")
    client = find(session, client_id)
    if client.token_endpoint_auth_method not in SECRET_METHODS:
        kind = "public" if client.is_public else client.token_endpoint_auth_method
        raise ClientRegistrationError("CLIENT_ID", f"a {kind} client has no secret to rotate")
    secret = new_client_secret()
    keep = keep_old_for > 0
    client_store.set_secret(
        session,
        client_id,
        secret_digest(secret),
        previous=client.secret_digest if keep else None,
        previous_expires_at=utcnow() + timedelta(seconds=keep_old_for) if keep else None,
    )
    audit.record(
        session, "client.secret_rotated", actor=actor, client=client_id, details={"keep_old_for": keep_old_for}
    )
    return secret


def update(session: Session, client_id: str, changes: dict[str, Any], *, actor: str) -> client_store.StoredClient:
    """Change the metadata in ``changes`` (names of :data:`~server.storage.clients.UPDATABLE`),
    validated by the rules of registration as a whole: the result must be a client that
    ``clients create`` would accept."""
    unknown = set(changes) - set(client_store.UPDATABLE)
    if unknown:
        raise ClientRegistrationError("clients update", f"cannot change {', '.join(sorted(unknown))}")
    if not changes:
        raise ClientRegistrationError("clients update", "nothing to change: give at least one option")
    client = find(session, client_id)
    changed_client = replace(client, **changes)
    if changed_client.token_endpoint_auth_method == PRIVATE_KEY_JWT and client.secret_digest is not None:
        # a client moving to its own keys gives its secret up, and the secret stops working
        changed_client = replace(changed_client, secret_digest=None, previous_secret_digest=None)
    updated = validated(changed_client)
    _check_signing_key(session, updated)
    client_store.update_client(session, updated)
    if updated.secret_digest is None and client.secret_digest is not None:
        client_store.clear_secret(session, client_id)
    changed = [name for name in client_store.UPDATABLE if getattr(client, name) != getattr(updated, name)]
    audit.record(session, "client.updated", actor=actor, client=client_id, details={"changed": changed})
    return updated


def delete(session: Session, client_id: str, *, actor: str) -> client_store.StoredClient:
    """Delete a client with its codes, grants and their refresh tokens, and consents: every
    token issued to it is then inactive at introspection and userinfo."""
    client = find(session, client_id)
    client_store.delete_client(session, client_id)
    audit.record(session, "client.deleted", actor=actor, client=client_id, details={"name": client.name})
    return client


#: each text field of a client, and the option that sets it
_TEXT_FIELDS = {
    "name": "--name",
    "grant_types": "--grant-type",
    "response_types": "--response-type",
    "scopes": "--scope",
    "redirect_uris": "--redirect-uri",
    "audiences": "--audience",
    "post_logout_redirect_uris": "--post-logout-redirect-uri",
    "allowed_cors_origins": "--cors-origin",
    "token_endpoint_auth_method": "--token-endpoint-auth-method",
    "backchannel_logout_uri": "--backchannel-logout-uri",
    "logo_uri": "--logo-uri",
    "policy_uri": "--policy-uri",
    "tos_uri": "--tos-uri",
    "jwks_uri": "--jwks-uri",
    "token_endpoint_auth_signing_alg": "--token-endpoint-auth-signing-alg",
    "access_token_alg": "--access-token-alg",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _plain_text(client: client_store.StoredClient) -> None:
    """No control character and nothing but Unicode text (no lone surrogate) in any field:
    neither can be stored everywhere, shown on a page or written in a header."""
    for attribute, field in _TEXT_FIELDS.items():
        value = getattr(client, attribute)
        for text in (value,) if isinstance(value, str) else value or ():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ClientRegistrationError(field, "holds characters that are not text") from None
            if _CONTROL.search(text):
                raise ClientRegistrationError(field, "holds control characters")


def _name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ClientRegistrationError("--name", "must be 1 to 200 characters")
    return name


def _grant_types(values: Iterable[str]) -> tuple[str, ...]:
    grant_types = _unique(values)
    if not grant_types:
        raise ClientRegistrationError("--grant-type", "give at least one")
    for grant_type in grant_types:
        if grant_type not in GRANT_TYPES:
            raise ClientRegistrationError(
                "--grant-type", f"{grant_type!r} is not supported (supported: {', '.join(GRANT_TYPES)})"
            )
    return grant_types


def _scopes(values: Iterable[str]) -> tuple[str, ...]:
    scopes = _unique(token for value in values for token in value.split())
    for scope in scopes:
        if not _SCOPE_TOKEN.match(scope):
            raise ClientRegistrationError("--scope", f"{scope!r} is not a valid scope token (RFC 6749 §3.3)")
    return scopes


def _redirect_uri(uri: str, field: str = "--redirect-uri") -> str:
    """Absolute, no fragment; https, http on loopback, or a private-use scheme (RFC 8252 §7)."""
    parts = _split(field, uri)
    if not parts.scheme or parts.fragment or "#" in uri:
        raise ClientRegistrationError(field, f"{uri!r} must be an absolute URI without a fragment")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ClientRegistrationError(field, f"{uri!r} must use https (http only on loopback)")
    if parts.scheme not in ("http", "https") and "." not in parts.scheme:
        raise ClientRegistrationError(
            field, f"{uri!r}: a private-use scheme must be a reverse domain name (RFC 8252 §7.1)"
        )
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ClientRegistrationError(field, f"{uri!r} has no host")
    return uri


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _cors_origin(value: str) -> str:
    """A web origin (RFC 6454) exactly as a browser sends it in ``Origin``: scheme, host and
    a port other than the scheme's default; no path, no wildcard. https, http on loopback."""
    text = value.strip()
    parts = _split("--cors-origin", text)
    host = parts.hostname
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not host
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or "*" in text
        or text.endswith(("?", "#"))
    ):
        raise ClientRegistrationError(
            "--cors-origin", f"{value!r} must be an origin such as https://app.example.com (no path, no wildcard)"
        )
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ClientRegistrationError("--cors-origin", f"{value!r} must use https (http only on loopback)")
    port = parts.port
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (
        f":{port}" if port is not None and port != _DEFAULT_PORTS[parts.scheme] else ""
    )


def _audience(value: str) -> str:
    """A resource indicator: an absolute URI without a fragment (RFC 8707 §2)."""
    parts = _split("--audience", value)
    if not parts.scheme or not (parts.netloc or parts.path) or "#" in value:
        raise ClientRegistrationError("--audience", f"{value!r} must be an absolute URI without a fragment")
    return value


def _split(field: str, uri: str) -> SplitResult:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError as exc:
        raise ClientRegistrationError(field, f"{uri!r} is not a valid URI: {exc}") from None
    return parts


def _check_signing_key(session: Session, client: client_store.StoredClient) -> None:
    """An ID-token algorithm beyond those that always have an active key (Ed25519) is
    registered only while one of its keys is active: without one, no ID token of the
    client could be signed."""
    alg = client.id_token_alg
    if alg is None or alg in ACCESS_TOKEN_ALGS:
        return
    if not any(key.alg == alg for key in key_store.list_keys(session, states=("active",))):
        raise ClientRegistrationError(
            "--id-token-alg", f"no {alg} signing key is active: make one first (ostiary keys rotate --alg {alg} --now)"
        )


def _signing_algs(client: client_store.StoredClient) -> tuple[str | None, str | None]:
    """The algorithms the server signs the client's ID and access tokens with; a FAPI 2.0
    client that names none gets the profile's."""
    id_token_alg, access_token_alg = _id_token_alg(client.id_token_alg), _access_token_alg(client.access_token_alg)
    if client.fapi2:
        return id_token_alg or fapi2.DEFAULT_ALG, access_token_alg or fapi2.DEFAULT_ALG
    return id_token_alg, access_token_alg


def _id_token_alg(alg: str | None) -> str | None:
    if alg is None or alg == "RS256":
        return None
    if alg not in SIGNING_ALGS:
        raise ClientRegistrationError("--id-token-alg", f"must be one of {', '.join(SIGNING_ALGS)}, got {alg!r}")
    return alg


def _access_token_alg(alg: str | None) -> str | None:
    """``access_token_signed_response_alg``: one the server signs access tokens with."""
    if alg is None:
        return None
    if alg not in ACCESS_TOKEN_ALGS:
        raise ClientRegistrationError(
            "--access-token-alg", f"must be one of {', '.join(ACCESS_TOKEN_ALGS)}, got {alg!r}"
        )
    return alg


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
