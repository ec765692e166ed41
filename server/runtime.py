"""What one server process holds while it runs: built at startup, shared by the endpoints."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .authn.secrets import CsrfTokens
from .keys import service as key_service
from .keys.errors import KeyMaterialError
from .keys.holder import KeyRingHolder
from .keys.ring import build_keyring
from .keys.secret import resolve_secret
from .keys.wrapping import KeyWrapper, derive_key
from .oauth.authorize import Authorizer
from .oauth.metadata import server_metadata
from .oauth.server import OstiaryAuthorizationServer
from .settings import Settings
from .storage import AsyncEngine, AsyncSession, async_sessionmaker, keys as key_store
from .storage.engine import create_sessionmaker
from .users.passwords import Passwords
from .web.pages import Pages
from .web.responses import json_bytes


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    keys: KeyRingHolder
    oauth: OstiaryAuthorizationServer
    metadata_json: bytes
    metadata_etag: str
    token_uri: str
    csrf: CsrfTokens
    pages: Pages
    passwords: Passwords
    authorizer: Authorizer

    @classmethod
    async def start(cls, settings: Settings, engine: AsyncEngine) -> Runtime:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            stored = await session.run_sync(key_store.list_keys)
        if not stored:
            raise KeyMaterialError("the database holds no signing key: start with `ostiary serve`")
        secret = resolve_secret(settings, keys_exist=True)
        wrapper = KeyWrapper(secret)
        key_service.check_wrapping(stored, wrapper)
        keys = KeyRingHolder(build_keyring(stored, wrapper))
        metadata = json_bytes(server_metadata(settings))
        oauth = OstiaryAuthorizationServer(settings, keys)
        csrf = CsrfTokens(derive_key(secret, "csrf"))
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            keys=keys,
            oauth=oauth,
            metadata_json=metadata,
            metadata_etag='"' + hashlib.sha256(metadata).hexdigest()[:32] + '"',
            token_uri=settings.endpoint("/token"),
            csrf=csrf,
            pages=Pages(settings, csrf),
            passwords=Passwords(settings),
            authorizer=Authorizer(oauth, settings, sessionmaker),
        )
