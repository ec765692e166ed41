"""OpenTelemetry traces (the ``otel`` extra): a request is one trace, its database calls
spans inside it. Recorded with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from server.app import create_app
from server.bootstrap import prepare
from server.observe import tracing
from server.settings import Settings
from tests.helpers import TestDatabase, create_client, make_settings

pytestmark = pytest.mark.anyio


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


def database_spans(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [span for span in spans if span.attributes and "db.system" in span.attributes]


async def test_one_token_request_is_one_trace_with_the_database_inside(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    await prepare(settings)
    client = await create_client(settings)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, tracer_provider=provider)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as http,
    ):
        exporter.clear()  # what the start-up did (the key set read, say) is no request's
        response = await http.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "api:read"},
            auth=(client.client_id, client.client_secret),
        )
        assert response.status_code == 200, response.text
        spans = exporter.get_finished_spans()

    (server,) = [span for span in spans if span.kind is SpanKind.SERVER]
    assert server.attributes is not None
    assert server.attributes.get("http.route", "/token") == "/token"
    assert server.status.is_ok
    # Only the request's spans: nothing else ran in between (no background task is due).
    assert {span.context.trace_id for span in spans} == {server.context.trace_id}
    queries = database_spans(spans)
    assert queries, [span.name for span in spans]  # the client looked up at least
    by_id = {span.context.span_id: span for span in spans}
    for query in queries:
        assert server in ancestors(query, by_id), f"{query.name} is outside the request's span"
        assert query.attributes is not None
        assert query.attributes["db.system"] in ("sqlite", "postgresql")
        # Statements, never their parameters (a client secret's digest, a token's hash).
        assert client.client_secret not in str(query.attributes)


async def test_no_span_holds_a_query_string(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    await prepare(settings)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, tracer_provider=provider)
    secret = "reset-token-Zk9v3Qw8"
    hint = "alice.hint@example.com"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as http,
    ):
        exporter.clear()
        reset = await http.get("/password/reset", params={"token": secret})
        assert reset.status_code == 200  # the app still got the token (and found it unknown)
        await http.get("/authorize", params={"client_id": "nobody", "login_hint": hint})
        spans = exporter.get_finished_spans()
    servers = [span for span in spans if span.kind is SpanKind.SERVER]
    assert len(servers) == 2
    recorded = " ".join(f"{span.name} {dict(span.attributes or {})}" for span in spans)
    assert "/password/reset" in recorded
    assert secret not in recorded and "token=" not in recorded
    assert hint not in recorded and "alice.hint" not in recorded


async def test_traces_are_off_unless_the_otel_variables_ask_for_them() -> None:
    assert not tracing.wanted({})
    assert not tracing.wanted({"OTEL_SERVICE_NAME": "ostiary"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert not tracing.wanted({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    # Off: no tracing middleware at all, so a request costs nothing for it.
    app = create_app(Settings.from_env({}))
    assert not any("OpenTelemetry" in middleware.cls.__name__ for middleware in app.user_middleware)
