"""``/clients``: list, register, read, change, disable/enable, rotate the secret of, and
delete OAuth clients, through the same service functions as ``ostiary clients``.

A client is shown as :func:`server.clients.metadata.describe` shows it (``ostiary clients
show --json``): RFC 7591 metadata plus what only an administrator sets; never a secret,
except the one a creation or a rotation hands over once. Bodies speak the same names:
the RFC 7591 metadata of :data:`server.clients.metadata.NAMES` and the administrator's
fields of :data:`ADMIN_FIELDS`; the fields :data:`READ_ONLY` are refused.

Admin scopes are guarded both ways: a caller gives a client only the admin scopes it holds
itself, and changes (or rotates the secret of, disables, deletes) a client that holds admin
scopes only if it holds them too; otherwise ``ostiary:admin:clients`` could take over a
client registered for ``ostiary:admin``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote

from ...clients import fapi2, service
from ...clients.errors import ClientRegistrationError, UnknownClient
from ...clients.metadata import NAMES, describe, fields_from, with_defaults
from ...storage import Session, clients as client_store
from ...storage.clients import StoredClient
from ...storage.row_locks import lock_client
from ..calls import Call, Reply, check_fields
from ..errors import Conflict, Invalid, invalid
from ..principal import is_admin_scope

AREA = "clients"
T = TypeVar("T")

#: the JSON kind of each RFC 7591 name (``null`` clears the optional URIs)
METADATA_KINDS = {
    "client_name": "string",
    "redirect_uris": "strings",
    "post_logout_redirect_uris": "strings",
    "grant_types": "strings",
    "response_types": "strings",
    "token_endpoint_auth_method": "string",
    "scope": "string",
    "allowed_cors_origins": "strings",
    "backchannel_logout_uri": "string?",
    "backchannel_logout_session_required": "boolean",
    "logo_uri": "string?",
    "policy_uri": "string?",
    "tos_uri": "string?",
    "jwks": "object?",
    "jwks_uri": "string?",
    "token_endpoint_auth_signing_alg": "string?",
    "require_pushed_authorization_requests": "boolean",
    "access_token_signed_response_alg": "string?",
    "dpop_bound_access_tokens": "boolean",
}
#: what only an administrator sets: each field's stored name and JSON kind
ADMIN_FIELDS = {
    "audiences": ("audiences", "strings"),
    "first_party": ("first_party", "boolean"),
    "introspection": ("introspection", "boolean"),
    "require_mfa": ("require_mfa", "boolean"),
    "id_token_signed_response_alg": ("id_token_alg", "string?"),
    "fapi2": ("fapi2", "boolean"),
}
SPEC = {**METADATA_KINDS, **{name: kind for name, (_, kind) in ADMIN_FIELDS.items()}}
#: shown in a client's representation, never set through a body
READ_ONLY = (
    "client_id",
    "client_secret",
    "client_id_issued_at",
    "public",
    "self_registered",
    "created_at",
    "disabled",
)
#: the service's option names that the edge's RFC 7591 table does not know, as the API names them
_API_NAMES = {
    "--audience": "audiences",
    "--introspection": "introspection",
    "--require-mfa": "require_mfa",
    "--id-token-alg": "id_token_signed_response_alg",
    "--keep-old-for": "keep_old_for",
}
#: the longest overlap of an old secret after a rotation (as ``ostiary clients rotate-secret``)
MAX_KEEP_OLD_FOR = 10 * 365 * 86400
_PATH = "/admin/api/v1/clients/"
#: the longest client id the database holds
_MAX_ID_LENGTH = 64


async def list_clients(call: Call) -> Reply:
    """``?limit=&cursor=``: oldest first. The cursor is an offset into that order (clients
    have no sequence number to key on): a client created or deleted while a caller pages
    may shift one item across a page boundary."""
    page = call.page()
    offset = page.position or 0

    def work(db: Session) -> list[StoredClient]:
        return client_store.list_clients_page(db, offset=offset, limit=page.limit)

    found = await call.read(work)
    return Reply.listing([describe(client) for client in found], page, offset + len(found))


async def create(call: Call) -> Reply:
    """201 with the client, its secret once (none for a public client) and ``Location``.
    What the body leaves out takes RFC 7591 §2's default (``grant_types``:
    ``authorization_code``, ``token_endpoint_auth_method``: ``client_secret_basic``)."""
    fields = _fields(call, create=True)
    fields.setdefault("scopes", ())
    _check_grantable(call, fields["scopes"])
    profile = call.services.settings.profile

    def work(db: Session) -> tuple[StoredClient, str | None]:
        return service.register_client(db, **fapi2.under_profile(profile, fields), actor=call.actor)

    client, secret = await _run(call, work)
    reply = Reply.resource(describe(client), 201)
    if secret is not None:
        reply.body["client_secret"] = secret
    reply.headers["Location"] = _PATH + quote(client.client_id, safe="")
    return reply


async def show(call: Call) -> Reply:
    client_id = _client_id(call)
    client = await call.read(lambda db: service.find(db, client_id))
    return Reply.resource(describe(client))


async def change(call: Call) -> Reply:
    """Merge semantics: each field given replaces the client's (a list as a whole), the
    others stay; the result must pass the rules of registration. ``If-Match`` with the
    ETag of a GET makes the change conditional (412 if the client changed since); without
    it the change is unconditional. An empty body changes nothing."""
    changes = _fields(call, create=False)
    client_id = _client_id(call)
    if "scopes" in changes:
        _check_grantable(call, changes["scopes"])
    held = fapi2.under_profile(call.services.settings.profile, changes) if changes else changes

    def work(db: Session) -> StoredClient:
        current = _changeable(db, call, client_id)
        return service.update(db, client_id, held, actor=call.actor) if changes else current

    client = await _run(call, work)
    return Reply.resource(describe(client))


async def remove(call: Call) -> Reply:
    """204; the client's codes, grants (with their refresh tokens) and consents go with it."""
    client_id = _client_id(call)

    def work(db: Session) -> None:
        _changeable(db, call, client_id)
        service.delete(db, client_id, actor=call.actor)

    await _run(call, work)
    return Reply(None, 204)


async def disable(call: Call) -> Reply:
    """Refused at every endpoint from now on (within ``OSTIARY_CLIENT_CACHE_TTL`` in
    processes that cached it); its tokens introspect inactive. Idempotent."""
    return await _set_disabled(call, True)


async def enable(call: Call) -> Reply:
    return await _set_disabled(call, False)


async def _set_disabled(call: Call, disabled: bool) -> Reply:
    client_id = _client_id(call)

    def work(db: Session) -> StoredClient:
        _changeable(db, call, client_id)
        service.set_disabled(db, client_id, disabled, actor=call.actor)
        return service.find(db, client_id)

    client = await _run(call, work)
    return Reply.resource(describe(client))


async def rotate_secret(call: Call) -> Reply:
    """``{"keep_old_for": seconds}`` (default 0): a new secret, shown once; the old one
    keeps working that long, so deployments can change over without an outage."""
    keep = call.body({"keep_old_for": "integer"}).get("keep_old_for", 0)
    if not 0 <= keep <= MAX_KEEP_OLD_FOR:
        raise invalid("keep_old_for", f"must be a number of seconds from 0 to {MAX_KEEP_OLD_FOR} (ten years)")
    client_id = _client_id(call)

    def work(db: Session) -> str:
        client = _changeable(db, call, client_id)
        if client.token_endpoint_auth_method not in service.SECRET_METHODS:
            kind = "public" if client.is_public else client.token_endpoint_auth_method
            raise Conflict(f"a {kind} client has no secret to rotate")
        return service.rotate_secret(db, client_id, keep_old_for=keep, actor=call.actor)

    secret = await _run(call, work)
    return Reply({"client_id": client_id, "client_secret": secret, "keep_old_for": keep})


def _fields(call: Call, *, create: bool) -> dict[str, Any]:
    """The body as the service's keyword arguments; :class:`Invalid` listing every field
    that is unknown, of the wrong kind, read-only or (creating) missing."""
    document = {_printable(name): value for name, value in (call.document or {}).items()}
    errors = [(name, "is read-only") for name in document if name in READ_ONLY]
    settable = {name: value for name, value in document.items() if name not in READ_ONLY}
    try:
        body = check_fields(settable, SPEC, required=("client_name",) if create else ())
    except Invalid as refused:
        errors.extend(refused.errors)
    if errors:
        raise Invalid(errors)
    rfc7591 = {name: value for name, value in body.items() if name in NAMES}
    fields = fields_from(with_defaults(rfc7591) if create else rfc7591)
    fields.update({ADMIN_FIELDS[name][0]: value for name, value in body.items() if name in ADMIN_FIELDS})
    return fields


def _client_id(call: Call) -> str:
    """The path's client id; one no client can have (too long, control characters, not
    text: PostgreSQL refuses a NUL outright) is answered as not found without a query."""
    client_id = call.params["client_id"]
    if len(client_id) > _MAX_ID_LENGTH or not client_id.isprintable():
        raise UnknownClient(client_id)
    return client_id


def _printable(name: str) -> str:
    """A field name as a problem can show it: JSON allows lone surrogates, UTF-8 does not."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_grantable(call: Call, scopes: Iterable[str]) -> None:
    """403 unless the caller holds each admin scope among ``scopes`` itself."""
    admin = [scope for scope in scopes if is_admin_scope(scope)]
    if admin:
        call.principal.check_grantable(admin)


def _changeable(db: Session, call: Call, client_id: str) -> StoredClient:
    """The client, locked for a change: one holding admin scopes is changed only by a caller
    that holds them too, and ``If-Match``, when given, must name its current version."""
    lock_client(db, client_id)
    client = service.find(db, client_id)
    call.check_version(lambda: describe(client))
    _check_grantable(call, client.scopes)
    return client


async def _run(call: Call, work: Callable[[Session], T]) -> T:
    """``work`` in one transaction; the service's refusals name the field as the API does."""
    try:
        result = await call.run(work)
    except UnknownClient:
        raise
    except ClientRegistrationError as error:
        name = _API_NAMES.get(error.field, error.metadata_name)
        raise invalid(name, error.message) from None
    if "client_id" in call.params:
        call.services.client_cache.forget(call.params["client_id"])  # this process sees it at once
    return result


ROUTES = [
    ("/clients", "GET", AREA, list_clients),
    ("/clients", "POST", AREA, create),
    ("/clients/{client_id}", "GET", AREA, show),
    ("/clients/{client_id}", "PATCH", AREA, change),
    ("/clients/{client_id}", "DELETE", AREA, remove),
    ("/clients/{client_id}/disable", "POST", AREA, disable),
    ("/clients/{client_id}/enable", "POST", AREA, enable),
    ("/clients/{client_id}/rotate-secret", "POST", AREA, rotate_secret),
]
