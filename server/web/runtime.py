"""What one server process holds while it runs: built at startup, shared by the endpoints."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from ..admin.calls import Services as AdminServices
from ..authn.devices import DeviceCookies
from ..authn.lockout import Lockout
from ..authn.login import LoginGuard
from ..authn.places import Places
from ..authn.ratelimit import DatabaseCounter, RateLimiter, RedisCounter
from ..authn.secrets import CsrfTokens
from ..keys import service as key_service
from ..keys.errors import KeyMaterialError
from ..keys.holder import KeyRingHolder
from ..keys.ring import KeyRing, build_keyring, strong_etag
from ..keys.secret import resolve_secret
from ..keys.wrapping import KeyWrappers, derive_key, key_wrappers
from ..mail.sender import OutboxSender
from ..mfa.passkeys import Passkeys
from ..mfa.service import SecondFactor
from ..notify.backchannel import LogoutNotifier
from ..oauth.calls import Threads
from ..oauth.dpop import DPoP
from ..oauth.endpoints.registration import Registration
from ..oauth.metadata import server_metadata
from ..oauth.server import OstiaryAuthorizationServer
from ..oauth.token_endpoint import TokenEndpoints
from ..settings import Settings
from ..signin.authorizer import Authorizer
from ..storage import AsyncEngine, AsyncSession, async_sessionmaker, keys as key_store, mfa as mfa_store, transactions
from ..storage.engine import create_sessionmaker
from ..users.account import Account
from ..users.breached import BreachedPasswords
from ..users.passwords import Passwords
from ..users.reset import PasswordResets
from ..users.signup import SignUps
from .pages import Pages
from .responses import json_bytes


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
    userinfo_uri: str
    #: DPoP proofs (RFC 9449): checked at the token endpoint and at resource requests
    dpop: DPoP
    csrf: CsrfTokens
    pages: Pages
    passwords: Passwords
    authorizer: Authorizer
    wrappers: KeyWrappers
    second_factor: SecondFactor
    account: Account
    devices: DeviceCookies
    login_guard: LoginGuard
    limiter: RateLimiter
    breached: BreachedPasswords
    resets: PasswordResets
    #: self-service sign-up, invitations, and the links that prove an address
    signups: SignUps
    token_endpoints: TokenEndpoints
    #: what the admin API's resources use (``server/admin``)
    admin: AdminServices
    #: RFC 7591/7592 registration (``/register``), offering the scopes discovery lists
    registration: Registration
    #: the mail sender and its task, when this process sends mail (OSTIARY_MAIL_POLL_INTERVAL)
    sender: OutboxSender | None = None
    sender_task: asyncio.Task[None] | None = None
    #: the back-channel logout sender, when this process posts notices
    notifier: LogoutNotifier | None = None
    #: places of sessions' addresses, from the local database OSTIARY_GEOIP_DATABASE names
    places: Places | None = None

    def announce_logouts(self) -> None:
        """Sessions may just have ended here: post their back-channel logout notices now
        rather than at the sender's next look."""
        if self.notifier is not None:
            self.notifier.wake()

    def on_key_change(self, ring: KeyRing) -> None:
        """A new key ring: the metadata lists the algorithms that now have an active key."""
        self.metadata_json = json_bytes(server_metadata(self.settings, ring.algorithms))
        self.metadata_etag = strong_etag(self.metadata_json)

    async def close(self) -> None:
        await self.limiter.close()
        if self.places is not None:
            self.places.close()
        if self.token_endpoints.threads is not None:
            self.token_endpoints.threads.close()

    @classmethod
    async def start(cls, settings: Settings, engine: AsyncEngine) -> Runtime:
        sessionmaker = create_sessionmaker(engine)
        ring, secret, wrappers = await _load_keys(sessionmaker, settings)
        keys = KeyRingHolder(ring)
        discovery = server_metadata(settings, keys.current.algorithms)
        metadata = json_bytes(discovery)
        oauth = OstiaryAuthorizationServer(settings, keys)
        csrf = CsrfTokens(derive_key(secret, "csrf"))
        lockout = Lockout(settings.lockout_threshold, settings.lockout_window_seconds)
        second_factor = SecondFactor(wrappers, lockout, settings.authenticator_issuer)
        passwords = Passwords(settings)
        devices = DeviceCookies(derive_key(secret, "devices"))
        login_guard = LoginGuard(lockout, devices, sessionmaker)
        counter = RedisCounter(settings.redis_url) if settings.redis_url else DatabaseCounter(sessionmaker)
        breached = BreachedPasswords(settings)
        dpop = DPoP(settings, derive_key(secret, "dpop"), sessionmaker)
        authorizer = Authorizer(oauth, settings, sessionmaker, second_factor, login_guard, keys, Passkeys(settings))
        # /par (oauth/) holds pushes to the sign-in flow's rules for the authorization endpoint
        oauth.pushed_authorization.install(authorizer.check_pushed)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            keys=keys,
            oauth=oauth,
            metadata_json=metadata,
            metadata_etag=strong_etag(metadata),
            token_uri=settings.endpoint("/token"),
            userinfo_uri=settings.endpoint("/userinfo"),
            csrf=csrf,
            pages=Pages(settings, csrf),
            passwords=passwords,
            authorizer=authorizer,
            wrappers=wrappers,
            second_factor=second_factor,
            account=Account(settings, sessionmaker, passwords, second_factor, login_guard, breached, wrappers),
            devices=devices,
            login_guard=login_guard,
            limiter=RateLimiter(counter),
            breached=breached,
            resets=PasswordResets(settings, sessionmaker, wrappers, passwords, breached),
            signups=SignUps(settings, sessionmaker, wrappers, passwords, breached),
            token_endpoints=TokenEndpoints(oauth, sessionmaker, _token_threads(settings), dpop),
            dpop=dpop,
            admin=AdminServices(
                settings, sessionmaker, keys, wrappers, passwords, breached, lockout, oauth.client_cache
            ),
            registration=Registration(settings, discovery["scopes_supported"]),
            places=Places(settings.geoip_database) if settings.geoip_database else None,
        )


async def _load_keys(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> tuple[KeyRing, str, KeyWrappers]:
    """The signing keys, the key-encryption secret and its wrappers; KeyMaterialError unless
    every key and every TOTP secret can be decrypted with them."""
    stored = await transactions.run(sessionmaker, key_store.list_keys)
    if not stored:
        raise KeyMaterialError("the database holds no signing key: start with `ostiary serve`")
    secret = resolve_secret(settings, keys_exist=True)
    wrappers = key_wrappers(settings, secret)
    key_service.check_wrapping(stored, wrappers)
    orphans = await transactions.run(sessionmaker, lambda db: mfa_store.count_wrapped_by_others(db, wrappers.key_ids))
    if orphans:
        raise KeyMaterialError(
            f"{orphans} TOTP secret(s) are encrypted under a key-encryption secret that is not configured: "
            "set the old one in OSTIARY_KEYS_SECRET_PREVIOUS and run `ostiary keys rewrap`"
        )
    return build_keyring(stored, wrappers), secret, wrappers


def _token_threads(settings: Settings) -> Threads | None:
    count = signing_thread_count(settings.signing_threads, settings.workers, len(os.sched_getaffinity(0)))
    return Threads(count, "ostiary-sign") if count else None


def signing_thread_count(requested: int, workers: int, cores: int) -> int:
    """``OSTIARY_SIGNING_THREADS`` (``requested``), or for ``auto`` (-1), when there are fewer
    workers than cores, enough threads per worker for their signatures to fill every core.

    Measured on 2 cores (docs/benchmarks.md): one worker signing on a thread served about a
    third more client_credentials grants than signing on its loop, and on two threads more
    again when signatures were slow; two workers did better signing on their loops, the hop
    to a thread costing CPU that no idle core repaid.
    """
    if requested >= 0:
        return requested
    return -(-cores // workers) if workers < cores else 0
