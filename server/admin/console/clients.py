"""The console's client pages: the list with the form that registers a client, one
client's details, and the forms that rotate its secret (shown once) and disable or enable
it. Registration follows the rules of ``ostiary clients create`` (``clients/service.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

from ... import i18n
from ...clients import fapi2, service
from ...clients.errors import ClientRegistrationError, UnknownClient
from ...clients.service import DEVICE_CODE
from ...i18n import N_
from ...storage import Session, clients as client_store
from ...storage.clients import StoredClient
from .base import Answer, ConsoleError, Moved, Shown, Visit, when

T = TypeVar("T")

#: the grant types the form offers, by the name of their checkbox
GRANT_BOXES = {
    "grant_authorization_code": "authorization_code",
    "grant_refresh_token": "refresh_token",
    "grant_client_credentials": "client_credentials",
    "grant_device_code": DEVICE_CODE,
}
#: how long the old secret keeps working after a rotation, as the form offers it
OVERLAPS = {"0": N_("not at all"), "3600": N_("one hour"), "86400": N_("one day"), "604800": N_("one week")}
#: the form's label of what a registration error names (its command-line option)
_LABELS = {
    "--name": N_("Name"),
    "--grant-type": N_("Grant types"),
    "--scope": N_("Scopes"),
    "--redirect-uri": N_("Redirect URIs"),
    "--post-logout-redirect-uri": N_("Post-logout redirect URIs"),
    "--keep-old-for": N_("Keep the old secret"),
}

DONE = {
    "disabled": N_("The client is disabled: every endpoint refuses it."),
    "enabled": N_("The client is enabled."),
    "created": N_("The client is registered."),
    "unchanged": N_("Nothing changed: the client already was that way."),
}


async def listing(visit: Visit) -> Answer:
    """``/admin/clients``: every client, and the form that registers one."""
    clients = await visit.read(client_store.list_clients)
    context = {
        "section": "clients",
        "clients": [_row(client) for client in clients],
        "grant_boxes": GRANT_BOXES,
    }
    return Shown("admin/clients.html", context)


async def details(visit: Visit) -> Answer:
    """``/admin/clients/{client_id}``."""
    client_id = visit.param("client_id")
    client = await visit.read(lambda db: service.find(db, client_id))
    context = {"section": "clients", "client": _row(client), "overlaps": OVERLAPS, "done": visit.done(DONE)}
    return Shown("admin/client.html", context)


async def create(visit: Visit) -> Answer:
    """Register a client; a confidential one's secret is shown once, on the page answered."""
    name = visit.field("name")
    if not name:
        raise ConsoleError(N_("Give the client a name."))
    grant_types = [grant for box, grant in GRANT_BOXES.items() if visit.form.get(box)]
    if not grant_types:
        raise ConsoleError(N_("Choose at least one grant type."))

    fields = {
        "name": name,
        "grant_types": grant_types,
        "scopes": visit.field("scopes", 2000).split(),
        "redirect_uris": visit.field("redirect_uris", 2000).split(),
        "post_logout_redirect_uris": visit.field("post_logout_redirect_uris", 2000).split(),
        "public": visit.form.get("kind") == "public",
        "require_mfa": bool(visit.form.get("require_mfa")),
    }
    held = fapi2.under_profile(visit.services.settings.profile, fields)

    def work(db: Session) -> tuple[StoredClient, str | None]:
        return service.register_client(db, **held, actor=visit.actor)

    client, secret = await _registering(visit, work)
    if secret is None:
        return Moved(f"{_link(client.client_id)}?done=created")
    return Shown("admin/secret.html", {"section": "clients", "client": _row(client), "secret": secret, "new": True})


async def rotate_secret(visit: Visit) -> Answer:
    """A new secret, shown once; the old one works on for the overlap chosen."""
    client_id = visit.param("client_id")
    keep = visit.field("keep_old_for", 10)
    if keep not in OVERLAPS:
        raise ConsoleError(N_("Choose how long the old secret keeps working."))

    def work(db: Session) -> tuple[StoredClient, str]:
        secret = service.rotate_secret(db, client_id, keep_old_for=int(keep), actor=visit.actor)
        return service.find(db, client_id), secret

    client, secret = await _registering(visit, work)
    context = {"section": "clients", "client": _row(client), "secret": secret, "new": False, "kept": OVERLAPS[keep]}
    return Shown("admin/secret.html", context)


async def disable(visit: Visit) -> Answer:
    return await _set_disabled(visit, True)


async def enable(visit: Visit) -> Answer:
    return await _set_disabled(visit, False)


async def _set_disabled(visit: Visit, disabled: bool) -> Answer:
    client_id = visit.param("client_id")
    changed = await visit.run(lambda db: service.set_disabled(db, client_id, disabled, actor=visit.actor))
    done = ("disabled" if disabled else "enabled") if changed else "unchanged"
    return Moved(f"{_link(client_id)}?done={done}")


async def _registering(visit: Visit, work: Callable[[Session], T]) -> T:
    """``work`` in one transaction, its registration errors in the form's words."""
    try:
        return await visit.run(work)
    except ClientRegistrationError as error:
        if isinstance(error, UnknownClient):
            raise
        label = _LABELS.get(error.field)
        if label:
            message = i18n.gettext("%(label)s: %(message)s.") % {"label": i18n.gettext(label), "message": error.message}
        else:
            message = f"{error.message}."
        raise ConsoleError(message) from None


def _link(client_id: str) -> str:
    return f"/admin/clients/{quote(client_id, safe='')}"


def _row(client: StoredClient) -> dict[str, object]:
    return {
        "client_id": client.client_id,
        "link": _link(client.client_id),
        "name": client.name,
        "kind": N_("public") if client.is_public else N_("confidential"),
        "grant_types": client.grant_types,
        "scopes": " ".join(client.scopes),
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "auth_method": client.token_endpoint_auth_method,
        "require_mfa": client.require_mfa,
        "first_party": client.first_party,
        "self_registered": client.registration_token_digest is not None,
        "created": when(client.created_at),
        "disabled": client.disabled_at is not None,
        "disabled_at": when(client.disabled_at),
        "old_secret_until": when(client.previous_secret_expires_at) if client.previous_secret_digest else None,
    }
