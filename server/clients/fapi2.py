"""The FAPI 2.0 Security Profile (final) as rules on a client.

A client is held to the profile by its ``fapi2`` flag, or, with ``OSTIARY_PROFILE=fapi2``,
every client is. Registration refuses what such a client cannot have (:func:`check`): the
profile serves confidential clients authenticating with ``private_key_jwt`` (mTLS, its
other method, is not offered), signing with PS256 or ES256. What holding a client to it
turns on is applied to the snapshot every protocol endpoint reads (:func:`held`): pushed
authorization requests only, DPoP-bound access tokens, PS256 or ES256 for what the server
signs for it, and only the grants the profile covers. The rest is enforced where each
request is handled; docs/fapi2.md maps every requirement to its place and its test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from ..storage.clients import StoredClient
from .errors import ClientRegistrationError

#: §5.4.1: PS256, ES256 or EdDSA; access tokens and client assertions have no EdDSA here
ALGS = ("PS256", "ES256")
#: what the server signs with for a client that registered no algorithm of these
DEFAULT_ALG = "PS256"
#: the grants the profile covers: the device grant has no pushed request and no PKCE
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
#: §5.3.2.1: codes live at most a minute
CODE_TTL = 60
#: §5.3.2.2: a pushed request's ``request_uri`` lives less than 600 s
PUSHED_REQUEST_TTL = 599


def applies(profile: str, client: StoredClient) -> bool:
    """Whether ``client`` is held to the profile (``profile``: ``OSTIARY_PROFILE``)."""
    return client.fapi2 or profile == "fapi2"


def check(client: StoredClient) -> None:
    """ClientRegistrationError naming the option at fault when ``client``, held to the
    profile, registered what the profile rules out. Algorithms it left out are not faults:
    :func:`held` gives it PS256. Its redirect URIs: :func:`check_redirect_uris`."""
    option = "--token-endpoint-auth-method"
    if client.token_endpoint_auth_method != "private_key_jwt":  # noqa: S105 (a method's name)
        raise ClientRegistrationError(
            option, "a FAPI 2.0 client authenticates with private_key_jwt: no public clients, no shared secrets"
        )
    for option, alg in (
        ("--token-endpoint-auth-signing-alg", client.token_endpoint_auth_signing_alg),
        ("--id-token-alg", client.id_token_alg),
        ("--access-token-alg", client.access_token_alg),
    ):
        if alg is not None and alg not in ALGS:
            raise ClientRegistrationError(option, f"a FAPI 2.0 client's algorithms are PS256 and ES256, not {alg}")
    for grant_type in client.grant_types:
        if grant_type not in GRANT_TYPES:
            raise ClientRegistrationError("--grant-type", f"the FAPI 2.0 profile does not cover {grant_type}")


def check_redirect_uris(uris: Iterable[str]) -> None:
    """ClientRegistrationError unless every one of ``uris`` (valid redirect URIs, checked by
    the rules of registration, which allow http only on loopback) is https or http: no
    private-use scheme (§5.3.2.2)."""
    for uri in uris:
        if urlsplit(uri).scheme not in ("https", "http"):
            raise ClientRegistrationError("--redirect-uri", f"{uri!r}: a FAPI 2.0 client's redirect URIs use https")


def under_profile(profile: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The ``fields`` of a registration or a change (keywords of the registration service),
    held to the profile when ``profile`` (``OSTIARY_PROFILE``) holds every client: what the
    CLI, the admin API and console, and ``/register`` store, so that registration refuses
    a client the profile would refuse at every endpoint."""
    return {**fields, "fapi2": True} if profile == "fapi2" else fields


def held(client: StoredClient) -> StoredClient:
    """``client`` as the protocol endpoints see it when the profile holds it."""
    return replace(
        client,
        fapi2=True,
        require_pushed_authorization_requests=True,
        dpop_bound_access_tokens=True,
        id_token_alg=client.id_token_alg if client.id_token_alg in ALGS else DEFAULT_ALG,
        access_token_alg=client.access_token_alg if client.access_token_alg in ALGS else DEFAULT_ALG,
        grant_types=tuple(grant_type for grant_type in client.grant_types if grant_type in GRANT_TYPES),
    )


def profile_view(profile: str) -> Callable[[StoredClient], StoredClient]:
    """What the client cache applies to each snapshot it hands out, under ``profile``."""

    def view(client: StoredClient) -> StoredClient:
        return held(client) if applies(profile, client) else client

    return view
