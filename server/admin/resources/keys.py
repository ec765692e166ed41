"""``/keys``: the signing keys, their state and dates; staged or emergency rotation; revocation."""

from __future__ import annotations

from ...keys import service
from ...keys.errors import KeyMaterialError
from ...keys.lifecycle import describe
from ...settings import SIGNING_ALGS
from ...storage import Session, keys as key_store
from ..calls import Call, Reply
from ..errors import NotFound, invalid

AREA = "keys"


async def list_keys(call: Call) -> Reply:
    settings = call.services.settings
    keys = await call.read(key_store.list_keys)
    return Reply({"items": [describe(key, settings) for key in keys], "next_cursor": None})


async def rotate(call: Call) -> Reply:
    """``{"alg": "RS256", "now": false}``: stage a new key, which signs once every JWKS cache
    has seen it; ``now`` (an emergency) makes it sign at once."""
    body = call.body({"alg": "string", "now": "boolean"})
    alg = body.get("alg", "RS256")
    if alg not in SIGNING_ALGS:
        raise invalid("alg", f"must be one of {', '.join(SIGNING_ALGS)}")
    services = call.services
    key = await service.rotate(
        services.sessionmaker,
        services.wrappers,
        alg=alg,
        bits=services.settings.rsa_key_bits,
        now=bool(body.get("now")),
        actor=call.actor,
    )
    return Reply.resource(describe(key, services.settings), 201)


async def revoke(call: Call) -> Reply:
    """A compromised key: unpublished at once; a replacement signs if it was active."""
    kid = call.params["kid"]
    services = call.services

    def work(db: Session) -> str | None:
        return service.revoke(db, services.wrappers, kid, bits=services.settings.rsa_key_bits, actor=call.actor)

    try:
        replacement = await call.run(work)
    except KeyMaterialError as error:
        raise NotFound(str(error)) from None
    return Reply({"kid": kid, "state": "removed", "replaced_by": replacement})


ROUTES = [
    ("/keys", "GET", AREA, list_keys),
    ("/keys/rotate", "POST", AREA, rotate),
    ("/keys/{kid}/revoke", "POST", AREA, revoke),
]
