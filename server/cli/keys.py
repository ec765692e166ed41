"""``ostiary keys list | rotate [--now] | revoke KID | rewrap``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TypeVar

from ..keys import service
from ..keys.lifecycle import activates_at, describe
from ..keys.secret import resolve_secret
from ..keys.wrapping import key_wrappers
from ..mfa.service import rewrap_all
from ..settings import SIGNING_ALGS, Settings
from ..storage import Session, keys as key_store
from ..storage.keys import StoredKey
from .database import in_transaction

T = TypeVar("T")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("keys", help="signing keys")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every key, its state, and until when it stays published")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)
    rotate = actions.add_parser("rotate", help="stage a new key; it signs once every JWKS cache has seen it")
    rotate.add_argument("--alg", default="RS256", choices=SIGNING_ALGS)
    rotate.add_argument("--now", action="store_true", help="emergency: sign with the new key at once")
    rotate.add_argument("--json", action="store_true", help="print the new key as JSON")
    rotate.set_defaults(run=run_rotate)
    revoke = actions.add_parser("revoke", help="compromised key: unpublish at once, activate a replacement")
    revoke.add_argument("kid")
    revoke.add_argument("--json", action="store_true", help="print JSON")
    revoke.set_defaults(run=run_revoke)
    rewrap = actions.add_parser(
        "rewrap",
        help="re-encrypt keys and TOTP secrets under OSTIARY_KEYS_SECRET (the old one: OSTIARY_KEYS_SECRET_PREVIOUS)",
    )
    rewrap.set_defaults(run=run_rewrap)


_HELP = ("-h", "--help")
#: the options of ``keys revoke``, which stay options when a KID beginning with ``-`` follows
_REVOKE_OPTIONS = frozenset({*_HELP, "--json"})


def separate_kid(argv: list[str]) -> list[str]:
    """``keys revoke KID`` with ``--`` put before a KID that begins with ``-``.

    Key ids are base64url thumbprints, and one in 64 begins with ``-``, which argparse
    would take for an option ("the following arguments are required: kid"), in the middle
    of revoking a compromised key.
    """
    if argv[:2] != ["keys", "revoke"] or "--" in argv:
        return argv
    options = [arg for arg in argv[2:] if arg in _REVOKE_OPTIONS]
    others = [arg for arg in argv[2:] if arg not in _REVOKE_OPTIONS]
    if len(others) == 1 and others[0].startswith("-"):
        return [*argv[:2], *options, "--", others[0]]
    return argv


def _with_keys(settings: Settings, work: Callable[[Session, Any], T]) -> T:
    """``work`` with the key wrappers, in the same transaction that decided whether keys exist."""

    def with_wrappers(db: Session) -> T:
        keys_exist = key_store.count_keys(db) > 0
        return work(db, key_wrappers(settings, resolve_secret(settings, keys_exist=keys_exist)))

    return in_transaction(settings, with_wrappers)


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    rows = _with_keys(settings, lambda db, _w: key_store.list_keys(db))
    described = [describe(row, settings) for row in rows]
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    print(
        f"{'kid':<44} {'alg':<6} {'state':<8} {'created':<20} {'activated (due)':<20} {'retired':<20} published until"
    )
    for d in described:
        print(
            f"{d['kid']:<44} {d['alg']:<6} {d['state']:<8} {d['created_at'][:19]:<20} "
            f"{(d['activated_at'] or d.get('activates_at') or '-')[:19]:<20} {(d['retired_at'] or '-')[:19]:<20} "
            f"{(d['published_until'] or '-')[:19]}"
        )
    return 0


def run_rotate(settings: Settings, args: argparse.Namespace) -> int:
    def rotate(db: Session, wrappers: Any) -> StoredKey:
        if args.now:
            return service.rotate_now(db, wrappers, alg=args.alg, bits=settings.rsa_key_bits, actor="cli")
        return service.stage(db, wrappers, alg=args.alg, bits=settings.rsa_key_bits, actor="cli")

    key = _with_keys(settings, rotate)
    if args.json:
        current = _with_keys(settings, lambda db, _w: key_store.get_key(db, key.kid)) or key
        print(json.dumps(describe(current, settings), indent=2))
        return 0
    if args.now:
        print(f"{key.kid} ({key.alg}) is active now; any previous {key.alg} key is retired")
    else:
        print(f"{key.kid} ({key.alg}) is published; it signs from {activates_at(key, settings).isoformat()[:19]} UTC")
    return 0


def run_revoke(settings: Settings, args: argparse.Namespace) -> int:
    replacement = _with_keys(
        settings, lambda db, wrappers: service.revoke(db, wrappers, args.kid, bits=settings.rsa_key_bits, actor="cli")
    )
    if args.json:
        print(json.dumps({"kid": args.kid, "state": "removed", "replaced_by": replacement}, indent=2))
        return 0
    print(f"{args.kid} is revoked: unpublished, and tokens it signed no longer verify")
    if replacement:
        print(f"{replacement} signs from now on")
    return 0


def run_rewrap(settings: Settings, args: argparse.Namespace) -> int:
    moved, secrets = _with_keys(settings, lambda db, wrappers: (service.rewrap(db, wrappers), rewrap_all(db, wrappers)))
    print(f"re-encrypted {len(moved)} key(s) and {secrets} TOTP secret(s) under the current secret")
    return 0
