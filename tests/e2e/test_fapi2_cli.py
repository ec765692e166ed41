"""``ostiary clients create|update`` under ``OSTIARY_PROFILE=fapi2``: every client it
registers or changes is held to the FAPI 2.0 profile, so a client the profile would refuse
at every endpoint is refused at registration instead (the admin API and console go through
the same :func:`server.clients.fapi2.under_profile`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from server.bootstrap import prepare
from tests.e2e.process import Commands
from tests.e2e.test_cli_admin import SERVE_ENV, refused, succeeded
from tests.helpers import TestDatabase, make_settings, ostiary_env

pytestmark = pytest.mark.anyio


async def test_under_the_profile_the_cli_registers_only_clients_the_profile_admits(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(database, tmp_path)
    await prepare(settings)
    cli = Commands(ostiary_env(settings, **SERVE_ENV, OSTIARY_PROFILE="fapi2"), tmp_path)
    try:
        secret = ("clients", "create", "--name", "reports", "--scope", "reports:read")
        refused(cli.run(*secret), "--token-endpoint-auth-method", "private_key_jwt")
        keys = tmp_path / "client.json"
        jwks = {"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}
        keys.write_text(json.dumps({"grant_types": ["client_credentials"], "jwks": jwks}))
        keyed = ("--token-endpoint-auth-method", "private_key_jwt", "--metadata", str(keys))
        created = succeeded(cli.run(*secret, *keyed, "--json"))
        assert created["fapi2"] is True
        assert created["access_token_signed_response_alg"] == "PS256"
        assert created["id_token_signed_response_alg"] == "PS256"
        # a change is held to it too: the profile's rules refuse RS256
        change = ("clients", "update", "--access-token-alg", "RS256", "--", created["client_id"])
        refused(cli.run(*change), "--access-token-alg")
    finally:
        cli.close()
