"""The ``ostiary`` command: serve, db, clients, users, sessions, grants, keys.

Every command reads the same ``OSTIARY_*`` settings as the server. Problems an operator
can fix (bad settings, an unreachable database, wrong key material) end with one line on
stderr and a non-zero exit status, never a traceback; so does any database error a command
meets (a constraint, a connection lost midway).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..bootstrap import StartupError
from ..clients.errors import ClientRegistrationError
from ..keys.errors import KeyMaterialError
from ..settings import Settings, SettingsError
from ..storage.errors import DATABASE_ERRORS, describe
from ..users.errors import UserError
from . import audit, clients, db, grants, invitations, keys, serve, sessions, users

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ostiary", description="Ostiary: OpenID Connect provider and OAuth 2 server.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(commands)
    db.add_parser(commands)
    clients.add_parser(commands)
    users.add_parser(commands)
    invitations.add_parser(commands)
    sessions.add_parser(commands)
    grants.add_parser(commands)
    keys.add_parser(commands)
    audit.add_parser(commands)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(keys.separate_kid(list(sys.argv[1:] if argv is None else argv)))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {name: getattr(args, name, None) for name in ("host", "port", "workers")}
    try:
        settings = Settings.from_env(os.environ, **overrides)
    except SettingsError as exc:
        print(f"ostiary: {exc.render()}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        result: int = args.run(settings, args)
        return result
    except (ClientRegistrationError, UserError) as exc:
        print(f"ostiary: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (StartupError, KeyMaterialError) as exc:
        print(f"ostiary: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except DATABASE_ERRORS as exc:  # any command, any statement: one line, never a traceback
        print(f"ostiary: {describe(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
