"""``ostiary clients create`` and ``ostiary clients list``."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ..bootstrap import open_database
from ..clients.service import GRANT_TYPES, register_client
from ..settings import Settings
from ..storage import clients as client_store
from ..storage.clients import StoredClient
from ..storage.engine import create_sessionmaker


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("clients", help="OAuth clients")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="register a client; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--grant-type", action="append", default=[], dest="grant_types", help=f"repeatable: {', '.join(GRANT_TYPES)}"
    )
    create.add_argument("--scope", action="append", default=[], dest="scopes", help="repeatable, or space-separated")
    create.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris", help="repeatable")
    create.add_argument(
        "--audience",
        action="append",
        default=[],
        dest="audiences",
        help="resource URI the client may target; repeatable",
    )
    create.add_argument(
        "--post-logout-redirect-uri", action="append", default=[], dest="post_logout_redirect_uris", help="repeatable"
    )
    create.add_argument("--public", action="store_true", help="no secret: a browser or native app (PKCE only)")
    create.add_argument("--first-party", action="store_true", help="trusted: users are not asked for consent")
    create.add_argument(
        "--introspection", action="store_true", help="a resource server: may introspect any token (RFC 7662)"
    )
    create.add_argument(
        "--id-token-alg", help="id_token_signed_response_alg: RS256 (default), ES256 or Ed25519 (needs an active key)"
    )
    create.add_argument(
        "--require-mfa", action="store_true", help="every sign-in to this client needs a second factor (TOTP)"
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=run_create)

    listing = actions.add_parser("list", help="list clients (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)


def run_create(settings: Settings, args: argparse.Namespace) -> int:
    client, secret = asyncio.run(_create(settings, args))
    if args.json:
        shown = {"client_secret": secret} if secret else {}
        print(json.dumps({**_describe(client), **shown}, indent=2))
    else:
        print(f"client_id:     {client.client_id}")
        if secret:
            print(f"client_secret: {secret}")
            print("The secret is shown only this once: store it now.")
    return 0


async def _create(settings: Settings, args: argparse.Namespace) -> tuple[StoredClient, str | None]:
    async with open_database(settings) as engine, create_sessionmaker(engine).begin() as session:
        return await session.run_sync(
            lambda s: register_client(
                s,
                name=args.name,
                grant_types=args.grant_types or ["client_credentials"],
                scopes=args.scopes,
                redirect_uris=args.redirect_uris,
                audiences=args.audiences,
                post_logout_redirect_uris=args.post_logout_redirect_uris,
                public=args.public,
                first_party=args.first_party,
                introspection=args.introspection,
                id_token_alg=args.id_token_alg,
                require_mfa=args.require_mfa,
            )
        )


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    clients = asyncio.run(_list(settings))
    if args.json:
        print(json.dumps([_describe(c) for c in clients], indent=2))
        return 0
    if not clients:
        print("no clients")
    for c in clients:
        state = "disabled" if c.disabled_at else "active"
        print(f"{c.client_id}  {c.name!r}  {state}  grants={','.join(c.grant_types)}  scopes={' '.join(c.scopes)}")
    return 0


async def _list(settings: Settings) -> list[StoredClient]:
    async with open_database(settings) as engine, create_sessionmaker(engine)() as session:
        return await session.run_sync(client_store.list_clients)


def _describe(client: StoredClient) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "grant_types": list(client.grant_types),
        "scope": " ".join(client.scopes),
        "redirect_uris": list(client.redirect_uris),
        "audiences": list(client.audiences),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "public": client.is_public,
        "first_party": client.first_party,
        "introspection": client.introspection,
        "id_token_signed_response_alg": client.id_token_alg or "RS256",
        "require_mfa": client.require_mfa,
        "created_at": client.created_at.isoformat(),
        "disabled": client.disabled_at is not None,
    }
