"""LEADFLOW_OTEL_ENABLED is the one switch: off, the API is not instrumented and clients get no
interceptor (so the webhook's raw signal-with-start adds nothing); on, both are."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import create_app
from workers.telemetry import MessageTracingInterceptor, tracing_interceptors


def instrumented(app: object) -> bool:
    return bool(getattr(app, "_is_instrumented_by_opentelemetry", False))


def test_tracing_off_instruments_nothing(settings_factory: Any, sqlite_url: str) -> None:
    settings = settings_factory(sqlite_url)
    assert not settings.otel_enabled
    assert tracing_interceptors(settings, role="api") == []
    assert not instrumented(create_app(settings))


def test_tracing_on_instruments_the_api_and_the_client(
    spans: InMemorySpanExporter, settings_factory: Any, sqlite_url: str
) -> None:
    settings = settings_factory(sqlite_url, otel_enabled=True)
    [interceptor] = tracing_interceptors(settings, role="api")
    assert isinstance(interceptor, MessageTracingInterceptor)
    assert instrumented(create_app(settings))
