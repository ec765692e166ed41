"""Startup: connect, bring the schema up, check the key material, create the first key.

``ostiary serve`` runs :func:`prepare` once before it starts any worker, so an operator
sees one clear message, not a traceback per worker. Other commands use
:func:`open_database`, which also migrates an empty database.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .keys import service as key_service
from .keys.errors import KeyMaterialError
from .keys.secret import resolve_secret
from .keys.wrapping import KeyWrappers, key_wrappers
from .settings import Settings
from .storage import (
    AsyncEngine,
    IntegrityError,
    Session,
    async_sessionmaker,
    keys as key_store,
    migrate,
    transactions,
    users,
)
from .storage.engine import create_engine, create_sessionmaker, describe_url, ping
from .users.errors import UserError
from .users.passwords import Passwords
from .users.service import bootstrap_admin

log = logging.getLogger("ostiary")


class StartupError(Exception):
    """The server cannot start; the message says why and what to do."""


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on a reachable database with the current schema (an empty one is migrated)."""
    engine = create_engine(settings)
    try:
        await connect_checked(engine, settings)
        await ensure_schema(engine)
        yield engine
    finally:
        await engine.dispose()


async def prepare(settings: Settings) -> None:
    """Everything a server process needs before it can serve, checked once."""
    async with open_database(settings) as engine:
        sessionmaker = create_sessionmaker(engine)
        keys_exist = await transactions.run(sessionmaker, key_store.count_keys) > 0
        try:
            wrappers = key_wrappers(settings, resolve_secret(settings, keys_exist=keys_exist))
            await transactions.run(sessionmaker, functools.partial(_check_keys, settings=settings, wrappers=wrappers))
        except KeyMaterialError as exc:
            raise StartupError(str(exc)) from None
        if settings.admin_email and settings.admin_password:
            await ensure_admin(settings, settings.admin_email, settings.admin_password, sessionmaker)


def _check_keys(db: Session, *, settings: Settings, wrappers: KeyWrappers) -> None:
    """Every stored key decrypts, and each of ``settings.signing_algorithms`` has an active
    key (one transaction): a first start, or the first start of a release that signs with
    a new algorithm, makes it here, active at once (no token names its kid yet)."""
    key_service.verify_all(db, wrappers)
    for alg in settings.signing_algorithms:
        kid = key_service.ensure_active_key(db, wrappers=wrappers, alg=alg, bits=settings.rsa_key_bits)
        if kid:
            log.info("created signing key %s (%s)", kid, alg)


async def ensure_admin(settings: Settings, email: str, password: str, sessionmaker: async_sessionmaker[Any]) -> None:
    """The first administrator, once (``OSTIARY_ADMIN_EMAIL``/``OSTIARY_ADMIN_PASSWORD``)."""
    exists = await transactions.run(
        sessionmaker, lambda db: users.any_admin(db) or users.get_user_by_email(db, email) is not None
    )
    if exists:
        return
    passwords = Passwords(settings)
    try:
        passwords.check_policy(password, username=email, email=email, field="OSTIARY_ADMIN_PASSWORD")
    except UserError as error:
        raise StartupError(f"{error.field}: {error.message}") from None
    password_hash = await passwords.hash_async(password)
    try:
        created = await transactions.run(
            sessionmaker, lambda db: bootstrap_admin(db, email=email, password_hash=password_hash)
        )
    except IntegrityError:  # another process created it at the same moment
        return
    if created is not None:
        log.info("created the first administrator %s; they choose a new password at first sign-in", email)


async def connect_checked(engine: AsyncEngine, settings: Settings) -> None:
    try:
        await ping(engine)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StartupError(
            f"cannot connect to the database OSTIARY_DATABASE_URL={describe_url(settings.database_url)}: {reason}"
        ) from None


async def ensure_schema(engine: AsyncEngine) -> None:
    state, revision = await migrate.schema_state(engine)
    if state is migrate.SchemaState.EMPTY:
        log.info("empty database: applying migrations")
        await migrate.upgrade(engine)
    elif state is migrate.SchemaState.BEHIND:
        raise StartupError(
            f"the database schema is at revision {revision} but this Ostiary needs "
            f"{migrate.head_revision()}: run `ostiary db upgrade`"
        )
    elif state is migrate.SchemaState.UNKNOWN:
        raise StartupError(
            "the database holds tables that are not Ostiary's, or a schema newer than this "
            f"version (revision {revision}); point OSTIARY_DATABASE_URL at Ostiary's own database"
        )
