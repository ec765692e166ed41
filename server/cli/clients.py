"""``ostiary clients create | list | show | update | disable | enable | rotate-secret | delete``
(``registration-token``: :mod:`.registration_tokens`).

Client metadata goes in as options or as a JSON document of RFC 7591 names
(``--metadata FILE``, ``server/clients/metadata.py``) and comes out in those names.

A client id may begin with ``-`` (one in 64 do): put ``--`` before it, as in
``ostiary clients disable -- -x4...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ..bootstrap import open_database
from ..clients import fapi2, metadata, service as client_service
from ..clients.errors import ClientRegistrationError
from ..clients.jwks import ASSERTION_ALGS
from ..clients.service import AUTH_METHODS, GRANT_TYPES, register_client
from ..settings import ACCESS_TOKEN_ALGS, Settings
from ..storage import clients as client_store, transactions
from ..storage.clients import StoredClient
from ..storage.engine import create_sessionmaker
from . import registration_tokens
from .database import in_transaction
from .options import duration

T = TypeVar("T")

#: who the audit rows of these commands name
ACTOR = "cli"
#: ``clients update`` options that hold a list: each replaces the client field of its name
_LISTS = ("grant_types", "scopes", "redirect_uris", "audiences", "post_logout_redirect_uris", "allowed_cors_origins")
#: the on/off options of ``clients create`` and ``update`` (with ``--no-...`` there), as the
#: client fields they set, with their help
_FLAG_HELP = {
    "first_party": "trusted: users are not asked for consent",
    "introspection": "a resource server: may introspect any token (RFC 7662)",
    "require_mfa": "every sign-in to this client needs a second factor (TOTP)",
    "require_pushed_authorization_requests": "authorization requests only through /par (RFC 9126)",
    "dpop_bound_access_tokens": "every access token of this client is bound to a DPoP key (RFC 9449)",
    "fapi2": "hold this client to the FAPI 2.0 Security Profile: private_key_jwt, PAR, DPoP, PS256/ES256",
}
_FLAGS = tuple(_FLAG_HELP)
#: options that hold one value, named as the client field they set
_VALUES = (
    "name",
    "id_token_alg",
    "token_endpoint_auth_method",
    "logo_uri",
    "policy_uri",
    "tos_uri",
    "jwks_uri",
    "token_endpoint_auth_signing_alg",
    "access_token_alg",
)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("clients", help="OAuth clients")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    _add_create_parser(actions)

    listing = actions.add_parser("list", help="list clients (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)

    show = actions.add_parser("show", help="one client's metadata as JSON, in RFC 7591 names")
    show.add_argument("client_id", metavar="CLIENT_ID")
    show.set_defaults(run=run_show)
    _add_admin_parsers(actions)
    registration_tokens.add_parser(actions)


def _add_create_parser(actions: Any) -> None:
    create = actions.add_parser("create", help="register a client; prints its secret once")
    create.add_argument("--name", help="client_name (required here or in --metadata)")
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
    create.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        dest="allowed_cors_origins",
        help="web origin whose pages call the token endpoints (https://app.example.com); repeatable",
    )
    create.add_argument("--public", action="store_true", help="no secret: a browser or native app (PKCE only)")
    create.add_argument(
        "--id-token-alg",
        help="id_token_signed_response_alg: RS256 (default), PS256, ES256 or Ed25519 (Ed25519 needs a key)",
    )
    for flag, text in _FLAG_HELP.items():
        create.add_argument(f"--{flag.replace('_', '-')}", action="store_true", help=text)
    _add_metadata_options(create)
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=run_create)


def _add_metadata_options(parser: Any) -> None:
    """Options of ``create`` and ``update`` beyond the original ones."""
    parser.add_argument(
        "--metadata",
        metavar="FILE",
        help=f"a JSON object of RFC 7591 client metadata ('-': standard input): {', '.join(metadata.NAMES)}; "
        "options given as well win",
    )
    parser.add_argument(
        "--token-endpoint-auth-method",
        choices=AUTH_METHODS,
        help="how the client authenticates: a secret (basic or post), private_key_jwt (its own key), none (public)",
    )
    parser.add_argument(
        "--access-token-alg",
        choices=ACCESS_TOKEN_ALGS,
        help="access_token_signed_response_alg: the algorithm of its access tokens (default OSTIARY_ACCESS_TOKEN_ALG)",
    )
    parser.add_argument(
        "--jwks-uri", help="private_key_jwt: https URI of the client's public keys (inline keys: jwks in --metadata)"
    )
    parser.add_argument(
        "--token-endpoint-auth-signing-alg",
        choices=ASSERTION_ALGS,
        help="private_key_jwt: the one algorithm its assertions are signed with (default: any of these)",
    )
    parser.add_argument("--logo-uri", help="https URI of a logo shown on the consent page")
    parser.add_argument("--policy-uri", help="https URI of the client's privacy policy, linked on the consent page")
    parser.add_argument("--tos-uri", help="https URI of the client's terms of service, linked on the consent page")


def _add_admin_parsers(actions: Any) -> None:
    update = actions.add_parser(
        "update", help="change a client's metadata (the rules of create apply); a list option replaces the list"
    )
    update.add_argument("client_id", metavar="CLIENT_ID")
    update.add_argument("--name")
    for option, dest, text in (
        ("--grant-type", "grant_types", f"repeatable: {', '.join(GRANT_TYPES)}"),
        ("--scope", "scopes", "repeatable, or space-separated"),
        ("--redirect-uri", "redirect_uris", "repeatable"),
        ("--audience", "audiences", "repeatable; '' clears the list"),
        ("--post-logout-redirect-uri", "post_logout_redirect_uris", "repeatable; '' clears the list"),
        ("--cors-origin", "allowed_cors_origins", "repeatable; '' clears the list"),
    ):
        update.add_argument(option, action="append", dest=dest, help=text)
    for flag in _FLAGS:
        update.add_argument(
            f"--{flag.replace('_', '-')}", action=argparse.BooleanOptionalAction, dest=flag, help=_FLAG_HELP[flag]
        )
    update.add_argument("--id-token-alg", help="RS256, PS256, ES256 or Ed25519")
    _add_metadata_options(update)
    update.add_argument("--json", action="store_true", help="print JSON")
    update.set_defaults(run=run_update)

    for action, text in (("disable", "refuse the client everywhere; its tokens go inactive"), ("enable", "undo")):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("client_id", metavar="CLIENT_ID")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(run=run_disable if action == "disable" else run_enable)

    rotate = actions.add_parser("rotate-secret", help="a new secret, printed once")
    rotate.add_argument("client_id", metavar="CLIENT_ID")
    rotate.add_argument(
        "--keep-old-for",
        default="0",
        metavar="DURATION",
        help="the old secret keeps working this long: seconds, or 15m, 1h, 1d (default 0: it stops now)",
    )
    rotate.add_argument("--json", action="store_true", help="print JSON")
    rotate.set_defaults(run=run_rotate_secret)

    remove = actions.add_parser("delete", help="delete a client; its grants and tokens end")
    remove.add_argument("client_id", metavar="CLIENT_ID")
    remove.add_argument("--json", action="store_true", help="print JSON")
    remove.set_defaults(run=run_delete)


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
    options = fapi2.under_profile(settings.profile, _create_options(args))
    async with open_database(settings) as engine:
        return await transactions.run(
            create_sessionmaker(engine),
            lambda s: _named(args, lambda: register_client(s, **options, actor=ACTOR)),
        )


def _create_options(args: argparse.Namespace) -> dict[str, Any]:
    """``register_client``'s options: the ``--metadata`` document (with RFC 7591's defaults
    for what it leaves out), then the options given, which win."""
    document = _metadata_document(args)
    options: dict[str, Any] = metadata.fields_from(metadata.with_defaults(document)) if document is not None else {}
    for field in _LISTS:
        if getattr(args, field):
            options[field] = getattr(args, field)
    for field in _VALUES:
        if getattr(args, field) is not None:
            options[field] = getattr(args, field)
    for flag in _FLAGS:
        if getattr(args, flag):
            options[flag] = True
    options.setdefault("grant_types", ["client_credentials"])
    options.setdefault("scopes", [])
    if "name" not in options:
        raise ClientRegistrationError("--name", "give the client's name (or client_name in --metadata)")
    if args.public:
        explicit = args.token_endpoint_auth_method or (document or {}).get("token_endpoint_auth_method")
        if explicit not in (None, "none"):
            raise ClientRegistrationError("--public", "a public client's token_endpoint_auth_method is none")
        options["token_endpoint_auth_method"] = "none"  # noqa: S105 (a method's name)
    return options


def _metadata_document(args: argparse.Namespace) -> dict[str, Any] | None:
    """The JSON object ``--metadata`` names, or None without the option."""
    if args.metadata is None:
        return None
    try:
        if args.metadata == "-":
            text = sys.stdin.read()
        else:
            with open(args.metadata, encoding="utf-8") as file:
                text = file.read()
        document = json.loads(text)
    except OSError as exc:
        raise ClientRegistrationError("--metadata", f"cannot read {args.metadata}: {exc.strerror}") from None
    except ValueError as exc:
        raise ClientRegistrationError("--metadata", f"{args.metadata} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ClientRegistrationError("--metadata", f"{args.metadata} must hold a JSON object of client metadata")
    metadata.fields_from(document)  # unknown names and wrong types are refused here, by name
    return document


def _named(args: argparse.Namespace, work: Callable[[], T]) -> T:
    """``work()``; with ``--metadata``, its errors name the metadata in RFC 7591 terms."""
    try:
        return work()
    except ClientRegistrationError as error:
        raise (error.in_metadata_terms() if args.metadata is not None else error) from None


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
    async with open_database(settings) as engine:
        return await transactions.run(create_sessionmaker(engine), client_store.list_clients)


#: the client in RFC 7591 names, with what only an administrator sets (as the admin API shows it)
_describe = metadata.describe


def run_show(settings: Settings, args: argparse.Namespace) -> int:
    client = in_transaction(settings, lambda db: client_service.find(db, args.client_id))
    print(json.dumps(_describe(client), indent=2))
    return 0


def run_update(settings: Settings, args: argparse.Namespace) -> int:
    document = _metadata_document(args)
    changes: dict[str, Any] = metadata.fields_from(document) if document is not None else {}
    for field in _LISTS:
        if getattr(args, field) is not None:
            changes[field] = tuple(getattr(args, field))
    for field in (*_FLAGS, *_VALUES):
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    if changes:
        changes = fapi2.under_profile(settings.profile, changes)
    client = in_transaction(
        settings, lambda db: _named(args, lambda: client_service.update(db, args.client_id, changes, actor=ACTOR))
    )
    if args.json:
        print(json.dumps(_describe(client), indent=2))
    else:
        print(f"client {client.client_id} updated")
    return 0


def run_disable(settings: Settings, args: argparse.Namespace) -> int:
    return _set_disabled(settings, args, True)


def run_enable(settings: Settings, args: argparse.Namespace) -> int:
    return _set_disabled(settings, args, False)


def _set_disabled(settings: Settings, args: argparse.Namespace, disabled: bool) -> int:
    changed = in_transaction(
        settings, lambda db: client_service.set_disabled(db, args.client_id, disabled, actor=ACTOR)
    )
    state = "disabled" if disabled else "enabled"
    if args.json:
        print(json.dumps({"client_id": args.client_id, "disabled": disabled, "changed": changed}, indent=2))
    elif changed:
        print(f"client {args.client_id} {state}; running servers see it within {settings.client_cache_ttl} s")
    else:
        print(f"client {args.client_id} was already {state}")
    return 0


def run_rotate_secret(settings: Settings, args: argparse.Namespace) -> int:
    keep = duration("--keep-old-for", args.keep_old_for)
    secret = in_transaction(
        settings, lambda db: client_service.rotate_secret(db, args.client_id, keep_old_for=keep, actor=ACTOR)
    )
    if args.json:
        print(json.dumps({"client_id": args.client_id, "client_secret": secret, "keep_old_for": keep}))
        return 0
    print(f"client_id:     {args.client_id}")
    print(f"client_secret: {secret}")
    print("The secret is shown only this once: store it now.")
    print(f"Running servers accept it within {settings.client_cache_ttl} s (OSTIARY_CLIENT_CACHE_TTL).")
    if keep:
        print(f"The old secret keeps working for {keep} s.")
    else:
        print("The old secret no longer works.")
    return 0


def run_delete(settings: Settings, args: argparse.Namespace) -> int:
    client = in_transaction(settings, lambda db: client_service.delete(db, args.client_id, actor=ACTOR))
    if args.json:
        print(json.dumps({"client_id": client.client_id, "client_name": client.name, "deleted": True}, indent=2))
    else:
        print(f"client {client.client_id} ({client.name!r}) deleted; its grants and tokens ended")
    return 0
