"""A client's ID-token algorithm needs an active key of its own: Ed25519, which has none
from the first start, is registered only once one is active (before, the client's every
code exchange ended in a 500). On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from server.clients import service
from server.clients.errors import ClientRegistrationError
from server.keys import service as key_service
from server.keys.wrapping import KeyWrapper, KeyWrappers
from tests.helpers import Db
from tests.oidc import REDIRECT_URI

pytestmark = pytest.mark.anyio

WRAPPERS = KeyWrappers(KeyWrapper("a-key-encryption-secret-for-this-test-0123456789"))


async def test_an_ed25519_client_waits_for_an_active_ed25519_key(db: Db) -> None:
    def register(alg: str) -> object:
        return db(
            lambda s: service.register_client(
                s,
                name=f"{alg} app",
                grant_types=["authorization_code"],
                scopes=["openid"],
                redirect_uris=[REDIRECT_URI],
                id_token_alg=alg,
            )
        )

    with pytest.raises(ClientRegistrationError) as raised:
        await register("Ed25519")
    assert raised.value.field == "--id-token-alg" and "ostiary keys rotate --alg Ed25519" in raised.value.message
    plain, _ = await register("PS256")  # the algorithms that always have a key need nothing more
    with pytest.raises(ClientRegistrationError):
        await db(lambda s: service.update(s, plain.client_id, {"id_token_alg": "Ed25519"}, actor="admin"))

    await db(lambda s: key_service.rotate_now(s, WRAPPERS, alg="Ed25519", bits=2048, actor="admin"))
    client, _ = await register("Ed25519")
    assert client.id_token_alg == "Ed25519"
    changed = await db(lambda s: service.update(s, plain.client_id, {"id_token_alg": "Ed25519"}, actor="admin"))
    assert changed.id_token_alg == "Ed25519"
