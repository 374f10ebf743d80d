"""OpenTelemetry tracing: one TracerProvider per process, Temporal's TracingInterceptor on the
client (and so on every worker built from it), FastAPI and httpx instrumentation, so one inbound
message is one trace: webhook → signal-with-start → workflow → activities → outgoing HTTP and
model calls (README.md, "Tracing").

Everything here is inert unless `LEADFLOW_OTEL_ENABLED` is set: no provider, no instrumentation,
no interceptor, and the webhook's raw signal-with-start adds nothing (`client_tracing` is None).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import temporalio.worker
import temporalio.workflow
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from temporalio.api.common.v1 import Header, Payload
from temporalio.client import Client, HeaderCodecBehavior, Interceptor
from temporalio.client._helpers import _apply_headers
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
from temporalio.contrib.opentelemetry._context import attached_context
from temporalio.contrib.opentelemetry._interceptor import _TracingWorkflowOutboundInterceptor

from models.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("leadflow.telemetry")

T = TypeVar("T")

# Paths probed every few seconds by orchestrators and Prometheus: a span each would drown the
# traces people look for.
UNTRACED_PATHS = "/health,/ready,/metrics"


def _exporter(settings: Settings) -> SpanExporter:
    if settings.otel_exporter_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        return OTLPSpanExporter(endpoint=endpoint)
    return ConsoleSpanExporter()


def install_tracing(settings: Settings, *, role: str) -> bool:
    """Set up the process's tracing once (idempotent); False when tracing is off.

    The TracerProvider exports to the OTLP endpoint (else the console); an SDK provider
    installed earlier (by the embedding process or a test) is kept. Outgoing httpx requests
    (channels, CRMs, the scraper, Anthropic's SDK) get client spans and carry `traceparent`.
    The OpenAI SDK 3.x speaks httpx2, which this instrumentation does not see: model calls have
    their own span (activities/llm/agent.py, `observe_model_calls`)."""
    if not settings.otel_enabled:
        return False
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: f"{settings.otel_service_name}-{role}"})
        )
        provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
        trace.set_tracer_provider(provider)
        log.info(
            "tracing to %s",
            settings.otel_exporter_otlp_endpoint or "the console (no OTLP endpoint)",
        )
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    return True


def tracing_interceptors(settings: Settings, *, role: str) -> list[Interceptor]:
    """Interceptors for `Client.connect`; empty unless `LEADFLOW_OTEL_ENABLED` is set."""
    if not install_tracing(settings, role=role):
        return []
    return [MessageTracingInterceptor()]


# ---- workflows: each message continues its own trace ------------------------------------

# Signals that bring a lead's message: what the workflow does after one belongs to its trace.
MESSAGE_SIGNALS = frozenset({"inbound"})


class MessageTracingInterceptor(TracingInterceptor):
    """Temporal's TracingInterceptor, except that in a workflow the activities started after a
    message signal (MESSAGE_SIGNALS) continue the trace that signal carried, instead of the trace
    of the request that started the run. A conversation runs for weeks: with the SDK's default
    its second message's webhook trace would end at the signal, and every later turn would hang
    under the first message. Client and activity sides are the SDK's own."""

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)  # registers the span-making extern function
        return _MessageTracingWorkflowInbound


class _MessageTracingWorkflowInbound(TracingWorkflowInboundInterceptor):
    """Keeps the trace context of the latest message signal; the outbound side starts
    activities (and so their spans and headers) under it. Replay sets the same state from the
    same history; spans themselves are not made on replay (the SDK's rule)."""

    def __init__(self, next: temporalio.worker.WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        self.message_carrier: dict[str, Any] | None = None

    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        # The SDK's init wraps `outbound` in its tracing outbound; ours is that one, extended.
        temporalio.worker.WorkflowInboundInterceptor.init(
            self, _MessageTracingWorkflowOutbound(outbound, self)
        )

    async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
        header = input.headers.get(self.header_key)
        if input.signal not in MESSAGE_SIGNALS or not header:
            return await super().handle_signal(input)
        carrier: dict[str, Any] = self.payload_converter.from_payloads([header])[0]
        self.message_carrier = carrier
        # The signal's span in the message's own trace (the SDK puts it in the run's trace
        # with a link to the message's).
        with attached_context(self._set_on_context(self.text_map_propagator.extract(carrier))):
            self._completed_span(f"HandleSignal:{input.signal}", kind=trace.SpanKind.SERVER)
            await temporalio.worker.WorkflowInboundInterceptor.handle_signal(self, input)

    def message_context(self) -> Any:
        if self.message_carrier is None:
            return None
        return self._set_on_context(self.text_map_propagator.extract(self.message_carrier))


class _MessageTracingWorkflowOutbound(_TracingWorkflowOutboundInterceptor):
    root: _MessageTracingWorkflowInbound

    def start_activity(
        self, input: temporalio.worker.StartActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        with attached_context(self.root.message_context()):
            return super().start_activity(input)

    def start_local_activity(
        self, input: temporalio.worker.StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        with attached_context(self.root.message_context()):
            return super().start_local_activity(input)

    async def start_child_workflow(
        self, input: temporalio.worker.StartChildWorkflowInput
    ) -> temporalio.workflow.ChildWorkflowHandle[Any, Any]:
        with attached_context(self.root.message_context()):
            return await super().start_child_workflow(input)


def instrument_app(app: FastAPI, settings: Settings) -> None:
    """A server span per API request (the root of a webhook's trace); nothing when tracing is
    off. The ASGI receive/send sub-spans are left out: two more spans per request, no news."""
    if not install_tracing(settings, role="api"):
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=UNTRACED_PATHS, exclude_spans=["receive", "send"]
    )


# ---- the webhook's raw signal-with-start --------------------------------------------------

_TRACING: weakref.WeakKeyDictionary[Client, TracingInterceptor | None] = weakref.WeakKeyDictionary()


def client_tracing(client: Client) -> TracingInterceptor | None:
    """The TracingInterceptor `client` was connected with (None: the client is not traced).
    Looked up once per client: the webhook's path asks on every message."""
    try:
        return _TRACING[client]
    except KeyError:
        pass
    found = next(
        (i for i in client.config()["interceptors"] if isinstance(i, TracingInterceptor)), None
    )
    _TRACING[client] = found
    return found


class _Headers:
    """What TracingInterceptor writes its header into (an SDK input has `headers` too)."""

    def __init__(self) -> None:
        self.headers: Mapping[str, Payload] = {}


async def traced_start(
    client: Client,
    tracing: TracingInterceptor,
    *,
    workflow: str,
    workflow_id: str,
    start_signal: bool,
    header: Header,
    send: Callable[[], Awaitable[T]],
) -> T:
    """Run `send` (a raw start or signal-with-start RPC of `header`'s request) as the SDK's
    client interceptor runs `client.start_workflow`: the same client span
    (`StartWorkflow:`/`SignalWithStartWorkflow:<type>`, kind CLIENT, `temporalWorkflowID`,
    error status on failure) and the same header (`_tracer-data`: the W3C trace context as a
    JSON payload, through the codec when the client encodes headers), so the worker's
    TracingInterceptor continues the trace. Built from the interceptor's own helpers:
    tests/tracing/test_signal_with_start_header.py compares it with the SDK's start."""
    prefix = "SignalWithStartWorkflow" if start_signal else "StartWorkflow"
    holder = _Headers()
    with tracing._start_as_current_span(
        f"{prefix}:{workflow}",
        attributes={"temporalWorkflowID": workflow_id},
        input_with_headers=holder,
        kind=trace.SpanKind.CLIENT,
    ):
        await _apply_headers(
            holder.headers,
            header.fields,
            client.config()["header_codec_behavior"] == HeaderCodecBehavior.CODEC,
            client.data_converter,
        )
        return await send()
