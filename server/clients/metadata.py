"""Client metadata in one vocabulary: RFC 7591 §2's names (and OpenID Connect's for the
logout URIs, ``allowed_cors_origins`` as Hydra names it), mapped to a stored client's fields.

``ostiary clients create --metadata``, ``clients show``/``list --json`` and ``/register``
all speak these names. This module only translates and checks types; the rules a client's
metadata must follow live in :func:`server.clients.service.validated`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..storage.clients import StoredClient
from .errors import ClientRegistrationError


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ClientRegistrationError(name, "must be a string")
    return value.strip() or None


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ClientRegistrationError(name, "must be an array of strings")
    return tuple(value)


def _flag(name: str, value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ClientRegistrationError(name, "must be true or false")
    return value


def _scope(name: str, value: Any) -> tuple[str, ...]:
    text = _text(name, value)
    return tuple(text.split()) if text else ()


def _object(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ClientRegistrationError(name, "must be a JSON object")
    return value


def _client_name(name: str, value: Any) -> str:
    text = _text(name, value)
    if text is None:
        raise ClientRegistrationError(name, "must be 1 to 200 characters")
    return text


#: each RFC 7591 name: the stored client's field and how a JSON value becomes its value
_FIELDS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "client_name": ("name", _client_name),
    "redirect_uris": ("redirect_uris", _strings),
    "post_logout_redirect_uris": ("post_logout_redirect_uris", _strings),
    "grant_types": ("grant_types", _strings),
    "response_types": ("response_types", _strings),
    "token_endpoint_auth_method": ("token_endpoint_auth_method", _text),
    "scope": ("scopes", _scope),
    "allowed_cors_origins": ("allowed_cors_origins", _strings),
    "backchannel_logout_uri": ("backchannel_logout_uri", _text),
    "backchannel_logout_session_required": ("backchannel_logout_session_required", _flag),
    "logo_uri": ("logo_uri", _text),
    "policy_uri": ("policy_uri", _text),
    "tos_uri": ("tos_uri", _text),
    "jwks": ("jwks", _object),
    "jwks_uri": ("jwks_uri", _text),
    "token_endpoint_auth_signing_alg": ("token_endpoint_auth_signing_alg", _text),
    "require_pushed_authorization_requests": ("require_pushed_authorization_requests", _flag),
    "access_token_signed_response_alg": ("access_token_alg", _text),
    "dpop_bound_access_tokens": ("dpop_bound_access_tokens", _flag),
}
#: the names this vocabulary has
NAMES = tuple(_FIELDS)
#: RFC 7591 §2's values for what a registration leaves out
DEFAULTS: Mapping[str, Any] = {
    "grant_types": ["authorization_code"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "client_secret_basic",
}


def unknown_names(document: Mapping[str, Any]) -> list[str]:
    return sorted(name for name in document if name not in _FIELDS)


def fields_from(document: Mapping[str, Any], *, ignore_unknown: bool = False) -> dict[str, Any]:
    """The stored client's fields that ``document`` (RFC 7591 names) sets, by field name.

    A name outside :data:`NAMES` is refused, naming it, unless ``ignore_unknown`` (RFC 7591
    §2: a registration endpoint ignores metadata it does not understand). A value of the
    wrong JSON type is refused naming its metadata; JSON ``null`` clears a value.
    """
    unknown = unknown_names(document)
    if unknown and not ignore_unknown:
        raise ClientRegistrationError(", ".join(unknown), f"unknown client metadata (known: {', '.join(NAMES)})")
    fields: dict[str, Any] = {}
    for name, value in document.items():
        if name in _FIELDS:
            field, convert = _FIELDS[name]
            fields[field] = convert(name, value)
    return fields


def with_defaults(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with RFC 7591 §2's defaults for the metadata it leaves out (or null)."""
    return {**DEFAULTS, **{name: value for name, value in document.items() if value is not None}}


def document_of(client: StoredClient) -> dict[str, Any]:
    """The client's metadata in RFC 7591 names; absent URIs are left out."""
    document: dict[str, Any] = {
        "client_name": client.name,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "grant_types": list(client.grant_types),
        "response_types": list(client.response_types),
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "scope": " ".join(client.scopes),
        "allowed_cors_origins": list(client.allowed_cors_origins),
    }
    if client.backchannel_logout_uri:
        document["backchannel_logout_uri"] = client.backchannel_logout_uri
        document["backchannel_logout_session_required"] = client.backchannel_logout_session_required
    for name in ("logo_uri", "policy_uri", "tos_uri", "jwks_uri", "token_endpoint_auth_signing_alg"):
        if getattr(client, name):
            document[name] = getattr(client, name)
    if client.jwks is not None:
        document["jwks"] = dict(client.jwks)
    if client.require_pushed_authorization_requests:
        document["require_pushed_authorization_requests"] = True
    if client.access_token_alg:
        document["access_token_signed_response_alg"] = client.access_token_alg
    if client.dpop_bound_access_tokens:
        document["dpop_bound_access_tokens"] = True
    return document


def describe(client: StoredClient) -> dict[str, Any]:
    """The client as administrators see it (the admin API, ``ostiary clients show|list
    --json``): its RFC 7591 metadata, with what only an administrator sets. Never a secret."""
    return {
        "client_id": client.client_id,
        "client_id_issued_at": int(client.created_at.timestamp()),
        **document_of(client),
        "audiences": list(client.audiences),
        "first_party": client.first_party,
        "introspection": client.introspection,
        "id_token_signed_response_alg": client.id_token_alg or "RS256",
        "require_mfa": client.require_mfa,
        "fapi2": client.fapi2,
        "public": client.is_public,
        "self_registered": client.registration_token_digest is not None,
        "created_at": client.created_at.isoformat(),
        "disabled": client.disabled_at is not None,
    }
