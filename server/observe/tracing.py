"""OpenTelemetry traces: a span per request (ASGI) with the database's spans inside it
(SQLAlchemy's, and asyncpg's for the statements that bypass SQLAlchemy on the hot paths).

Optional twice over: the packages come with ``pip install ostiary[otel]``, and tracing is
on only when the standard variables ask for it (:func:`wanted`). Everything else (the
exporter's endpoint and headers, the service name, the sampler) is read by the
OpenTelemetry SDK itself from its ``OTEL_*`` variables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ..storage import AsyncEngine

log = logging.getLogger("ostiary.tracing")

INSTALL_HINT = "OTEL_* variables ask for traces, which need the otel extra: pip install 'ostiary[otel]'"


#: any of these set (and no "none" exporter, no disabled SDK) asks for traces
_ENABLING = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER")


class TracingUnavailable(Exception):
    """The OTEL_* variables ask for traces, and the otel extra is not installed."""


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces. These are OpenTelemetry's variables, not
    settings of ours: the SDK reads the rest of them itself."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in _ENABLING)


def check_available() -> None:
    """Raise :class:`TracingUnavailable` unless the otel extra is installed."""
    import importlib.util

    for module in ("opentelemetry.sdk", "opentelemetry.instrumentation.asgi", "opentelemetry.exporter.otlp"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise TracingUnavailable(INSTALL_HINT)


def provider_from_environment() -> Any:
    """The SDK's tracer provider, exporting as the ``OTEL_*`` variables say (OTLP over
    HTTP by default, or ``console``), made the process's global one."""
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError as exc:
        raise TracingUnavailable(INSTALL_HINT) from exc
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over this default
    provider = TracerProvider(resource=Resource.create({"service.name": "ostiary"}))
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    for name in (part.strip() for part in names.split(",")):
        exporter: SpanExporter = ConsoleSpanExporter() if name == "console" else OTLPSpanExporter()
        if name not in ("otlp", "console"):
            log.warning("OTEL_TRACES_EXPORTER=%s is not supported; exporting with otlp", name)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def middleware(provider: Any) -> Middleware:
    """The outermost middleware: one server span per request, around everything else."""
    return Middleware(_SpanWithoutQuery, provider=provider)


class _SpanWithoutQuery:
    """OpenTelemetry's ASGI middleware, shown each request without its query string.

    It records the URL with its query (``http.url``, ``url.query``), and the query carries
    what must not leave the server: a password-reset token, an ``id_token_hint``, a
    ``login_hint``. The span gets the path; the app gets the whole request.
    """

    def __init__(self, app: ASGIApp, *, provider: Any) -> None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        self.app = app
        self.traced = OpenTelemetryMiddleware(
            self._restored, tracer_provider=provider, exclude_spans=["receive", "send"]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("query_string"):
            await self.traced(scope, receive, send)
            return
        await self.traced({**scope, "query_string": b"", _QUERY: scope["query_string"]}, receive, send)

    async def _restored(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.pop(_QUERY, None)
        if query is not None:
            scope["query_string"] = query
        await self.app(scope, receive, send)


#: where the query string waits while the tracing middleware looks at the request
_QUERY = "ostiary.query_string"


class DatabaseSpans:
    """Spans for the database calls of one engine, from :meth:`start` to :meth:`stop`."""

    def __init__(self, provider: Any, engine: AsyncEngine) -> None:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        self.provider = provider
        self.engine = engine
        self.sqlalchemy = SQLAlchemyInstrumentor()
        self.asyncpg: Any = None
        if engine.dialect.name == "postgresql":
            from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

            self.asyncpg = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]

    def start(self) -> None:
        # The instrumentation declares SQLAlchemy < 2.1 and would refuse ours; it hooks only
        # the engine's public before/after_cursor_execute events, unchanged in 2.1 (the
        # traces test checks the spans are there).
        self.sqlalchemy.instrument(engine=self.engine.sync_engine, tracer_provider=self.provider, skip_dep_check=True)
        if self.asyncpg is not None:
            self.asyncpg.instrument(tracer_provider=self.provider)

    def stop(self) -> None:
        self.sqlalchemy.uninstrument()
        if self.asyncpg is not None:
            self.asyncpg.uninstrument()
