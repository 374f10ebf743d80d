"""Tracing tests: every span this process finishes goes to one in-memory exporter; tests pick
their own trace out of it by trace id (other tests of the session may trace too)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_EXPORTER = InMemorySpanExporter()
_INSTALLED: list[TracerProvider] = []


def _provider() -> TracerProvider:
    """The process's SDK TracerProvider (installed here unless another test did), with the
    in-memory exporter attached once."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if provider not in _INSTALLED:
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        _INSTALLED.append(provider)
    return provider


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The exporter, emptied; httpx instrumentation (which `install_tracing` switches on for the
    process) is switched off again afterwards, so later tests in this process send plain HTTP."""
    _provider()
    _EXPORTER.clear()
    try:
        yield _EXPORTER
    finally:
        instrumentor = HTTPXClientInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def of_trace(finished: Sequence[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in finished if s.context is not None and s.context.trace_id == trace_id]


def named(finished: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def children(finished: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return sorted(
        (
            s
            for s in finished
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ),
        key=lambda s: s.start_time or 0,
    )


def render_tree(finished: Sequence[ReadableSpan], root: ReadableSpan) -> str:
    """The span tree under `root`, one span a line, with its kind and telling attributes."""
    lines: list[str] = []
    telling = (
        "temporalWorkflowID",
        "http.route",
        "http.method",
        "http.url",
        "http.status_code",
        "url.full",
        "http.response.status_code",
        "gen_ai.provider.name",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "leadflow.llm.cost_usd",
        "leadflow.llm.outcome",
    )

    def walk(span: ReadableSpan, depth: int, seen: dict[str, str]) -> None:
        attrs = {k: str(v) for k, v in (span.attributes or {}).items()}
        # An attribute equal to its parent's (the workflow id on every workflow span) once.
        shown = ", ".join(
            f"{k}={attrs[k]}" for k in telling if k in attrs and seen.get(k) != attrs[k]
        )
        kind = span.kind.name if span.kind is not None else "?"
        lines.append(f"{'  ' * depth}{span.name} [{kind}]" + (f" {{{shown}}}" if shown else ""))
        for child in children(finished, span):
            walk(child, depth + 1, {**seen, **attrs})

    walk(root, 0, {})
    return "\n".join(lines)
