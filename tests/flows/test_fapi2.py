"""The FAPI 2.0 Security Profile over real HTTP, on SQLite and PostgreSQL: a client held to
it by its ``fapi2`` flag, and every client under ``OSTIARY_PROFILE=fapi2``. Assertions and
DPoP proofs are built with joserfc; tokens are verified against ``/jwks`` with joserfc.
docs/fapi2.md maps each requirement of the profile to the test here (or elsewhere) that
proves it.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, KeySet, RSAKey
from sqlalchemy import select

from server.clients import service
from server.settings import Settings, SettingsError
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import AuthorizationCode, Grant
from tests.flows.test_dpop import proof, thumbprint
from tests.flows.test_private_key_jwt import ASSERTION_TYPE, assertion, key_set
from tests.helpers import Db, TestDatabase, create_client, create_user, served_with
from tests.mail import run_sql
from tests.oidc import REDIRECT_URI, Browser, Flow, query_of

pytestmark = pytest.mark.anyio

CLIENT_KEY = ECKey.generate_key("P-256", parameters={"kid": "fapi-ec"})
RSA = RSAKey.generate_key(2048, parameters={"kid": "fapi-rsa"})
PROOF_KEY = ECKey.generate_key("P-256")
OTHER_PROOF_KEY = ECKey.generate_key("P-256")
SCOPE = "openid offline_access"


def authenticated(
    settings: Settings, client_id: str, form: dict[str, str], *, key: Key = CLIENT_KEY, **claims: Any
) -> dict[str, str]:
    """``form`` with a client assertion: ES256, ``aud`` the issuer as a string (FAPI 2.0)."""
    alg = "ES256" if isinstance(key, ECKey) else "PS256"
    signed = assertion(key, client_id, claims.pop("aud", settings.issuer), alg=claims.pop("alg", alg), **claims)
    return {**form, "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}


def dpop(settings: Settings, path: str, key: Key = PROOF_KEY, method: str = "POST", **claims: Any) -> dict[str, str]:
    return {"DPoP": proof(key, method, settings.endpoint(path), **claims)}


async def verified(http: httpx.AsyncClient, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWT that ``/jwks`` verifies."""
    keys = KeySet.import_key_set((await http.get("/jwks")).json())
    decoded = jwt.decode(token, keys, algorithms=["PS256", "ES256"])
    return dict(decoded.header), dict(decoded.claims)


def oauth_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error, response.text


async def fapi2_client(settings: Settings, **options: Any) -> str:
    options.setdefault("fapi2", True)
    client = await create_client(
        settings,
        grant_types=["authorization_code", "refresh_token"],
        scopes=SCOPE.split(),
        redirect_uris=[REDIRECT_URI],
        token_endpoint_auth_method="private_key_jwt",
        jwks=key_set(CLIENT_KEY, RSA),
        **options,
    )
    return client.client_id


async def test_a_fapi2_client_signs_a_user_in_only_by_the_profile(database: TestDatabase, tmp_path: Path) -> None:
    # Lifetimes above the profile's: the client's codes still live a minute at most, and its
    # request_uris less than ten.
    overrides = {"auth_code_ttl": 300, "par_ttl": 900, "client_cache_ttl": 0}
    async with served_with(database, tmp_path, **overrides) as (settings, http):
        client_id = await fapi2_client(settings)
        await create_user(settings, "alice")
        browser, flow = Browser(http), Flow.start(client_id)
        push_form = {k: v for k, v in flow.params(scope=SCOPE).items() if k != "client_id"}

        # §5.3.2.2: authorization requests only as pushed ones
        page = await browser.authorize(**flow.params(scope=SCOPE))
        refusal = query_of(page.headers["location"])
        assert refusal["error"] == "invalid_request" and "code" not in refusal, refusal

        # §5.3.2.1: the assertion's aud is the issuer identifier, as a string, nothing else
        for aud in (settings.endpoint("/par"), settings.endpoint("/token"), [settings.issuer]):
            refused = await http.post("/par", data=authenticated(settings, client_id, push_form, aud=aud))
            oauth_error(refused, "invalid_client", 401)
        # §5.4.1: the client's key signs PS256 or ES256, never RS256
        rs256 = authenticated(settings, client_id, push_form, key=RSA, alg="RS256")
        oauth_error(await http.post("/par", data=rs256), "invalid_client", 401)
        # §5.3.2.2: the pushed request names its redirect_uri; PKCE S256
        no_redirect = {k: v for k, v in push_form.items() if k != "redirect_uri"}
        oauth_error(await http.post("/par", data=authenticated(settings, client_id, no_redirect)), "invalid_request")
        no_pkce = {k: v for k, v in push_form.items() if not k.startswith("code_challenge")}
        oauth_error(await http.post("/par", data=authenticated(settings, client_id, no_pkce)), "invalid_request")

        # §5.4.1: a DPoP proof at /par signed RS256 is refused too
        rs256_proof = dpop(settings, "/par", RSA, alg="RS256")
        oauth_error(
            await http.post("/par", data=authenticated(settings, client_id, push_form), headers=rs256_proof),
            "invalid_dpop_proof",
        )

        # RFC 9449 §10: the push's DPoP proof binds the code to its key
        pushed = await http.post(
            "/par",
            data=authenticated(settings, client_id, push_form, key=RSA, alg="PS256"),
            headers=dpop(settings, "/par"),
        )
        assert pushed.status_code == 201, pushed.text
        assert pushed.json()["expires_in"] == 599  # §5.3.2.2: less than 600 s
        page = await browser.authorize(client_id=client_id, request_uri=pushed.json()["request_uri"])
        page = await browser.sign_in(page, "alice")
        if 'name="decision"' in page.text:
            page = await browser.submit(page, decision="allow")
        # §5.3.2.2: 303 after a form with credentials, never 307; iss in the response (RFC 9207)
        assert page.status_code == 303, page.text
        answer = query_of(page.headers["location"])
        assert answer["iss"] == settings.issuer and answer["state"] == flow.state
        lifetimes = select(AuthorizationCode.created_at, AuthorizationCode.expires_at)
        ((created, expires),) = await run_sql(
            settings.database_url, lifetimes.where(AuthorizationCode.client_id == client_id)
        )
        assert expires - created <= timedelta(seconds=60)  # §5.3.2.1

        token_form = {k: v for k, v in flow.token_form(answer["code"]).items() if k != "client_id"}
        # sender-constrained tokens only: no proof, no tokens (the code is not spent)
        oauth_error(
            await http.post("/token", data=authenticated(settings, client_id, token_form)), "invalid_dpop_proof"
        )
        # the code is bound to the push's key: a proof of another key is refused
        other = await http.post(
            "/token",
            data=authenticated(settings, client_id, token_form),
            headers=dpop(settings, "/token", OTHER_PROOF_KEY),
        )
        oauth_error(other, "invalid_grant")


async def test_a_fapi2_clients_tokens_are_bound_signed_ps256_and_its_refresh_token_does_not_rotate(
    database: TestDatabase, tmp_path: Path
) -> None:
    async with served_with(database, tmp_path, client_cache_ttl=0) as (settings, http):
        client_id = await fapi2_client(settings)
        await create_user(settings, "alice")
        browser, flow = Browser(http), Flow.start(client_id)
        push_form = {k: v for k, v in flow.params(scope=SCOPE).items() if k != "client_id"}
        pushed = await http.post("/par", data=authenticated(settings, client_id, push_form))
        assert pushed.status_code == 201, pushed.text
        page = await browser.sign_in(
            await browser.authorize(client_id=client_id, request_uri=pushed.json()["request_uri"]), "alice"
        )
        if 'name="decision"' in page.text:
            page = await browser.submit(page, decision="allow")
        code = query_of(page.headers["location"])["code"]
        token_form = {k: v for k, v in flow.token_form(code).items() if k != "client_id"}
        issued = await http.post(
            "/token", data=authenticated(settings, client_id, token_form), headers=dpop(settings, "/token")
        )
        assert issued.status_code == 200, issued.text
        tokens = issued.json()
        assert tokens["token_type"] == "DPoP"
        header, claims = await verified(http, tokens["access_token"])
        assert header["alg"] == "PS256" and claims["cnf"] == {"jkt": thumbprint(PROOF_KEY)}
        id_header, _ = await verified(http, tokens["id_token"])
        assert id_header["alg"] == "PS256"

        # §5.3.2.1: no rotation; the refresh token serves again and again, each time with a proof
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        for _ in range(2):
            refreshed = await http.post(
                "/token", data=authenticated(settings, client_id, refresh), headers=dpop(settings, "/token")
            )
            assert refreshed.status_code == 200, refreshed.text
            assert "refresh_token" not in refreshed.json(), "the client keeps the refresh token it has"
            assert refreshed.json()["token_type"] == "DPoP"
        unbound = await http.post("/token", data=authenticated(settings, client_id, refresh))
        oauth_error(unbound, "invalid_dpop_proof")

        # a DPoP-bound token sent as a bearer token is refused at userinfo
        bearer = await http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert bearer.status_code == 401


async def test_under_the_profile_every_client_is_held_to_it(database: TestDatabase, tmp_path: Path) -> None:
    # a proof window above a minute: ahead of the clock, a minute is still the most
    overrides = {"profile": "fapi2", "client_cache_ttl": 0, "dpop_proof_window": 300}
    async with served_with(database, tmp_path, **overrides) as (settings, http):
        metadata = (await http.get("/.well-known/openid-configuration")).json()
        for endpoint in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
            assert metadata[f"{endpoint}_auth_methods_supported"] == ["private_key_jwt"]
            assert metadata[f"{endpoint}_auth_signing_alg_values_supported"] == ["PS256", "ES256"]
        assert metadata["require_pushed_authorization_requests"] is True
        assert set(metadata["id_token_signing_alg_values_supported"]) == {"PS256", "ES256"}
        assert metadata["dpop_signing_alg_values_supported"] == ["PS256", "ES256"]
        assert metadata["grant_types_supported"] == ["authorization_code", "client_credentials", "refresh_token"]
        assert "device_authorization_endpoint" not in metadata
        assert metadata["code_challenge_methods_supported"] == ["S256"]
        assert metadata["response_types_supported"] == ["code"]
        assert metadata["authorization_response_iss_parameter_supported"] is True
        # §5.2.2: no CORS at the authorization endpoint
        preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
        for answer in (
            await http.options("/authorize", headers=preflight),
            await http.get("/authorize", headers=preflight),
        ):
            assert "access-control-allow-origin" not in answer.headers

        # registered before the profile: a client with a secret cannot authenticate with it
        secret_client = await create_client(settings)
        form = {"grant_type": "client_credentials", "scope": "api:read"}
        oauth_error(
            await http.post("/token", data=form, auth=(secret_client.client_id, secret_client.client_secret)),
            "invalid_client",
            401,
        )
        # §5.3.2.1: no public clients, at /par (where a public client may push) and /token
        public = (
            await create_client(
                settings,
                public=True,
                grant_types=["authorization_code"],
                redirect_uris=[REDIRECT_URI],
                scopes=["openid"],
            )
        ).client_id
        flow = Flow.start(public)
        oauth_error(await http.post("/par", data=flow.params(scope="openid")), "invalid_client", 401)
        token_form = {**flow.token_form("a-code"), "client_id": public}
        oauth_error(await http.post("/token", data=token_form, headers=dpop(settings, "/token")), "invalid_client", 401)
        # a private_key_jwt client without the flag: DPoP-bound, PS256 access tokens
        keyed = (
            await create_client(settings, token_endpoint_auth_method="private_key_jwt", jwks=key_set(CLIENT_KEY))
        ).client_id
        oauth_error(await http.post("/token", data=authenticated(settings, keyed, form)), "invalid_dpop_proof")
        issued = await http.post("/token", data=authenticated(settings, keyed, form), headers=dpop(settings, "/token"))
        assert issued.status_code == 200, issued.text
        header, claims = await verified(http, issued.json()["access_token"])
        assert header["alg"] == "PS256" and claims["cnf"]["jkt"] == thumbprint(PROOF_KEY)
        # §5.3.2.1: a proof issued 10 s ahead is accepted, one more than 60 s ahead is not
        ahead = await http.post(
            "/token",
            data=authenticated(settings, keyed, form),
            headers=dpop(settings, "/token", iat=int(time.time()) + 10),
        )
        assert ahead.status_code == 200, ahead.text
        too_far = await http.post(
            "/token",
            data=authenticated(settings, keyed, form),
            headers=dpop(settings, "/token", iat=int(time.time()) + 90),
        )
        oauth_error(too_far, "invalid_dpop_proof")
        # the same for a client assertion: 10 s ahead accepted, more than 60 s ahead refused
        for ahead_by, status in ((10, 200), (90, 401)):
            iat = int(time.time()) + ahead_by
            asserted = authenticated(settings, keyed, form, iat=iat, exp=iat + 60)
            answer = await http.post("/token", data=asserted, headers=dpop(settings, "/token"))
            assert answer.status_code == status, answer.text
        # §5.4.1: proofs signed PS256 or ES256, not RS256 (RFC 9449 alone would take it)
        for alg, status in (("RS256", 400), ("PS256", 200)):
            signed = await http.post(
                "/token", data=authenticated(settings, keyed, form), headers=dpop(settings, "/token", RSA, alg=alg)
            )
            assert signed.status_code == status, signed.text


async def test_a_client_switched_to_the_profile_keeps_its_token_and_a_spent_one_is_reuse(
    database: TestDatabase, tmp_path: Path
) -> None:
    """A client that rotated before its switch: the token it holds serves on unrotated; the
    one it spent is reuse even inside the grace window, which exists to replace a token a
    rotation's lost response took, and a FAPI 2.0 client's token is never replaced."""
    overrides = {"refresh_reuse_grace_seconds": 60, "client_cache_ttl": 0}
    async with served_with(database, tmp_path, **overrides) as (settings, http):
        client_id = await fapi2_client(settings, fapi2=False)
        await create_user(settings, "alice")
        browser, flow = Browser(http), Flow.start(client_id)
        page = await browser.sign_in(await browser.authorize(**flow.params(scope=SCOPE)), "alice")
        if 'name="decision"' in page.text:
            page = await browser.submit(page, decision="allow")
        token_form = flow.token_form(query_of(page.headers["location"])["code"])
        token_form.pop("client_id", None)
        issued = await http.post("/token", data=authenticated(settings, client_id, token_form))
        spent = issued.json()["refresh_token"]

        async def refreshed(token: str, proof: bool) -> httpx.Response:
            form = authenticated(settings, client_id, {"grant_type": "refresh_token", "refresh_token": token})
            return await http.post("/token", data=form, headers=dpop(settings, "/token") if proof else {})

        held = (await refreshed(spent, proof=False)).json()["refresh_token"]
        assert held != spent
        engine = make_engine(settings.database_url)
        try:
            switch = Db(create_sessionmaker(engine))
            await switch(lambda db: service.update(db, client_id, {"fapi2": True}, actor="test"))
        finally:
            await engine.dispose()

        kept = await refreshed(held, proof=True)
        assert kept.status_code == 200 and "refresh_token" not in kept.json(), kept.text
        oauth_error(await refreshed(spent, proof=True), "invalid_grant")
        oauth_error(await refreshed(held, proof=True), "invalid_grant")  # reuse revoked the family
        (reason,) = await run_sql(settings.database_url, select(Grant.revoked_reason))
        assert reason == ("refresh_token_reuse",)


def test_the_profile_bounds_settings_naming_each_variable() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"OSTIARY_PROFILE": "fapi2", "OSTIARY_AUTH_CODE_TTL": "120", "OSTIARY_PAR_TTL": "600"})
    named = {variable for variable, _ in raised.value.problems}
    assert named == {"OSTIARY_AUTH_CODE_TTL", "OSTIARY_PAR_TTL"}
    assert Settings.from_env({"OSTIARY_PROFILE": "fapi2"}).profile == "fapi2"
