"""The ASGI application: routes, middleware and the lifespan that builds the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import StatelessLifespan

from .keys.watcher import watch
from .mail.sender import OutboxSender
from .mail.transport import transport_for
from .notify.backchannel import LogoutNotifier
from .observe import metrics, tracing
from .settings import Settings
from .storage import AsyncEngine
from .storage.engine import create_engine
from .storage.errors import UNAVAILABLE_TYPES
from .sweeper import run_periodically
from .users.reset import LOOKUP_TEMPLATE
from .web import (
    account,
    admin_api,
    admin_console,
    authorize,
    branding,
    cors,
    device,
    errors,
    health,
    home,
    logout,
    password,
    registration,
    signup,
    token,
    userinfo,
)
from .web.locales import LocaleMiddleware
from .web.middleware import EdgeMiddleware
from .web.proxies import TrustedProxies
from .web.runtime import Runtime
from .web.wellknown import PublishedDocuments

log = logging.getLogger("ostiary")

STATIC = Path(__file__).parent / "web" / "static"


def create_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    freeze_gc: bool = False,
    tracer_provider: Any = None,
) -> Starlette:
    """Build the app. The database must be prepared (``bootstrap.prepare``) beforehand.

    ``freeze_gc`` (for a process that runs only this app, as ``ostiary serve`` does): what
    start-up built (the key ring, compiled statements, templates, Authlib) lives as long as
    the process, so it is moved out of the garbage collector's way and a full collection
    under load scans only what requests allocate.

    ``tracer_provider``: trace requests and database calls to this OpenTelemetry provider
    (``ostiary serve`` passes the one the ``OTEL_*`` variables describe); None: no traces.
    """
    traced = [tracing.middleware(tracer_provider)] if tracer_provider is not None else []
    return Starlette(
        routes=[*branding.routes(settings), *_routes()],
        middleware=[*traced, *_proxies(settings), *_edge(settings)],
        exception_handlers=_exception_handlers(),
        lifespan=_lifespan(settings, engine, freeze_gc=freeze_gc, tracer_provider=tracer_provider),
    )


def _lifespan(
    settings: Settings, engine: AsyncEngine | None, *, freeze_gc: bool, tracer_provider: Any
) -> StatelessLifespan[Starlette]:
    """The runtime and the background tasks, for as long as the app serves: built at start,
    stopped at the end, and an engine made here (none was given) disposed of."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own_engine = engine is None
        active_engine = create_engine(settings) if engine is None else engine
        tasks: list[asyncio.Task[None]] = []
        runtime: Runtime | None = None
        spans = tracing.DatabaseSpans(tracer_provider, active_engine) if tracer_provider is not None else None
        if spans is not None:
            spans.start()
        if settings.metrics_port:
            metrics.observe_pool(active_engine)
        try:
            runtime = await Runtime.start(settings, active_engine)
            app.state.runtime = runtime
            _start_background(tasks, settings, active_engine, runtime)
            if freeze_gc:
                gc.collect()
                gc.freeze()
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if runtime is not None:
                await runtime.close()
            if own_engine:
                await active_engine.dispose()
            if spans is not None:
                spans.stop()

    return lifespan


def _start_background(
    tasks: list[asyncio.Task[None]], settings: Settings, engine: AsyncEngine, runtime: Runtime
) -> None:
    """Start the key watcher, the sweeper, the mail sender, the back-channel logout sender
    and the metrics' database reads
    (those configured), each added to ``tasks`` as soon as it runs, so that one failing to
    start leaves none behind."""
    tasks.append(
        asyncio.create_task(
            watch(runtime.sessionmaker, runtime.wrappers, settings, runtime.keys, runtime.on_key_change)
        )
    )
    if settings.cleanup_interval > 0:
        sweeping = run_periodically(
            engine, runtime.sessionmaker, settings.cleanup_interval, audit_retention_days=settings.audit_retention_days
        )
        tasks.append(asyncio.create_task(sweeping))
    if settings.mail_poll_interval > 0:
        runtime.sender = OutboxSender(
            settings,
            runtime.sessionmaker,
            runtime.wrappers,
            transport_for(settings),
            resolvers={LOOKUP_TEMPLATE: runtime.resets.resolve},
        )
        runtime.sender_task = asyncio.create_task(runtime.sender.run())
        tasks.append(runtime.sender_task)
    if settings.backchannel_logout_poll_interval > 0:
        runtime.notifier = LogoutNotifier(
            settings.issuer, runtime.sessionmaker, runtime.keys, interval=settings.backchannel_logout_poll_interval
        )
        tasks.append(asyncio.create_task(runtime.notifier.run()))
    if settings.metrics_port:
        tasks.append(asyncio.create_task(metrics.refresh_periodically(runtime.sessionmaker)))


def _exception_handlers() -> dict[Any, Any]:
    handlers: dict[Any, Any] = {exc_type: errors.unavailable_or_raise for exc_type in UNAVAILABLE_TYPES}
    handlers[HTTPException] = errors.http_error
    handlers[Exception] = errors.server_error
    return handlers


def _routes() -> list[BaseRoute]:
    return [
        Route("/", home.home, methods=["GET"]),
        Route("/token", token.token, methods=["POST"]),
        Route("/token", token.token_wrong_method, methods=["GET", "PUT", "DELETE", "PATCH"]),
        Route("/revoke", token.revoke, methods=["POST"]),
        Route("/introspect", token.introspect, methods=["POST"]),
        Route("/livez", health.livez, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/healthz", health.readyz, methods=["GET"]),
        Route("/authorize", authorize.authorize, methods=["GET", "POST"]),
        Route("/login", authorize.login, methods=["POST"]),
        Route("/login", authorize.login_page, methods=["GET"]),
        Route("/login/otp", authorize.second_factor, methods=["POST"]),
        Route("/login/otp", authorize.second_factor_page, methods=["GET"]),
        Route("/login/passkey/options", authorize.passkey_options, methods=["POST"]),
        Route("/login/passkey", authorize.passkey, methods=["POST"]),
        Route("/login/password", authorize.forced_password_change, methods=["POST"]),
        Route("/consent", authorize.consent, methods=["POST"]),
        Route("/device/authorize", token.device_authorization, methods=["POST"]),
        Route("/par", token.pushed_authorization, methods=["POST"]),
        Route("/par", token.par_wrong_method, methods=["GET", "PUT", "DELETE", "PATCH"]),
        Route("/device", device.device, methods=["GET"]),
        Route("/device/confirm", device.confirm, methods=["POST"]),
        Route("/password/forgot", password.forgot_page, methods=["GET"]),
        Route("/password/forgot", password.forgot, methods=["POST"]),
        Route("/password/reset", password.reset_page, methods=["GET"]),
        Route("/password/reset", password.reset, methods=["POST"]),
        Route("/signup", signup.signup_page, methods=["GET"]),
        Route("/signup", signup.signup, methods=["POST"]),
        Route("/email/verify", signup.verify_page, methods=["GET"]),
        Route("/email/verify", signup.verify, methods=["POST"]),
        *_account_routes(),
        Route("/userinfo", userinfo.userinfo, methods=["GET", "POST"]),
        Route("/register", registration.register, methods=["POST"]),
        Route("/register/{client_id}", registration.configure, methods=["GET", "PUT", "DELETE"]),
        *(Route(path, cors.preflight, methods=["OPTIONS"]) for path in cors.ENDPOINTS),
        Route("/logout", logout.logout, methods=["GET", "POST"]),
        *admin_api.routes(),
        *admin_console.routes(),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def _account_routes() -> list[BaseRoute]:
    """``/account`` and its forms (web/account.py)."""
    return [
        Route("/account", account.account, methods=["GET"]),
        Route("/account/email", account.change_email, methods=["POST"]),
        Route("/account/passkeys/new", account.new_passkey, methods=["POST"]),
        Route("/account/passkeys", account.add_passkey, methods=["POST"]),
        Route("/account/passkeys/remove", account.remove_passkey, methods=["POST"]),
        Route("/account/password", account.change_password, methods=["POST"]),
        Route("/account/totp/start", account.start_totp, methods=["POST"]),
        Route("/account/totp/confirm", account.confirm_totp, methods=["POST"]),
        Route("/account/totp/disable", account.disable_totp, methods=["POST"]),
        Route("/account/backup-codes", account.regenerate_codes, methods=["POST"]),
        Route("/account/sign-out-everywhere", account.end_everywhere, methods=["POST"]),
        Route("/account/sessions/end", account.end_session, methods=["POST"]),
        Route("/account/apps/revoke", account.revoke_app, methods=["POST"]),
        Route("/account/reauth", account.reauthenticate, methods=["POST"]),
    ]


def _proxies(settings: Settings) -> list[Middleware]:
    """The real client behind trusted proxies; nothing at all (no cost) when none is trusted."""
    if not settings.trusted_proxies:
        return []
    return [Middleware(TrustedProxies, networks=settings.trusted_proxies)]


def _edge(settings: Settings) -> list[Middleware]:
    return [
        Middleware(
            EdgeMiddleware,
            max_body_bytes=settings.max_body_bytes,
            log_access=settings.access_log,
            body_timeout=settings.body_timeout,
            hsts=settings.secure_cookies,
        ),
        # /jwks and discovery, answered before routing (web/wellknown.py)
        Middleware(PublishedDocuments, max_age=settings.jwks_max_age),
        Middleware(LocaleMiddleware, default=settings.default_locale, secure=settings.secure_cookies),
    ]
