"""OpenTelemetry tracing: one TracerProvider per process, Temporal's TracingInterceptor on the
client (and so on every worker built from it), so a webhook's span continues into the workflow
and its activities."""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from models.settings import Settings

log = logging.getLogger("leadflow.telemetry")


def _exporter(settings: Settings) -> SpanExporter:
    if settings.otel_exporter_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        return OTLPSpanExporter(endpoint=endpoint)
    return ConsoleSpanExporter()


def tracing_interceptors(settings: Settings, *, role: str) -> list[Interceptor]:
    """Interceptors for `Client.connect`; empty unless `LEADFLOW_OTEL_ENABLED` is set."""
    if not settings.otel_enabled:
        return []
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        # An SDK provider installed earlier (by the embedding process or a test) is kept.
        provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: f"{settings.otel_service_name}-{role}"})
        )
        provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
        trace.set_tracer_provider(provider)
        log.info(
            "tracing to %s",
            settings.otel_exporter_otlp_endpoint or "the console (no OTLP endpoint)",
        )
    return [TracingInterceptor()]
