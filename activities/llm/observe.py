"""What operators see of a model call: the Prometheus series of models/metrics.py and, with
tracing on, one span per call under the activity that made it.

Called by the agent's ledger (activities/llm/agent.py, `Agent._ledger`), the one place every
model call of every provider passes with its tokens and its price: so the metrics, the spans and
the usage ledger cannot disagree. The span is made once the call is known (start and end from
the call's own clock), not around the vendor request: the OpenAI SDK 3.x speaks httpx2, which
the httpx instrumentation does not see, and the offline rules make no request at all. No
prompt, answer or lead data goes on a span or a label."""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from activities.llm.base import CallRecord
from models import metrics
from models.usage import CallOutcome

_tracer = trace.get_tracer("leadflow.llm")

# The ledger's outcomes as the MODEL_CALLS series counts them (ok, error, refused).
_METRIC_OUTCOMES = {
    CallOutcome.OK.value: "ok",
    CallOutcome.REPAIRED.value: "ok",
    CallOutcome.INVALID_OUTPUT.value: "error",
    CallOutcome.ERROR.value: "error",
    CallOutcome.BUDGET_EXHAUSTED.value: "refused",
}
_FAILED = frozenset({CallOutcome.INVALID_OUTPUT.value, CallOutcome.ERROR.value})

SPAN_PREFIX = "ModelCall:"


def observe_model_call(
    call: CallRecord, *, step: str, purpose: str | None, cost_usd: float, traced: bool
) -> None:
    """Count one model call (its tokens, cost and duration) and, when `traced`, record its span
    in the current trace (the activity's). A budget refusal (provider "-") reached no provider:
    it is counted as `refused` and has no span."""
    outcome = _METRIC_OUTCOMES.get(call.outcome, "error")
    model = call.model[:200]
    metrics.MODEL_CALLS.labels(call.provider, model, step, outcome).inc()
    if call.provider == "-":
        return
    # Incremented by zero too: an unpriced model (the offline rules) still has its series.
    metrics.MODEL_TOKENS.labels(call.provider, model, step, "input").inc(call.input_tokens)
    metrics.MODEL_TOKENS.labels(call.provider, model, step, "output").inc(call.output_tokens)
    metrics.MODEL_COST_USD.labels(call.provider, model, step).inc(cost_usd)
    metrics.MODEL_CALL_SECONDS.labels(call.provider, step).observe(call.latency_ms / 1000)
    if traced:
        _span(call, step=step, purpose=purpose, cost_usd=cost_usd)


def _span(call: CallRecord, *, step: str, purpose: str | None, cost_usd: float) -> None:
    duration_ns = call.latency_ms * 1_000_000
    start = call.started_ns or time.time_ns() - duration_ns
    span = _tracer.start_span(
        f"{SPAN_PREFIX}{step}",
        kind=SpanKind.CLIENT,
        start_time=start,
        attributes={
            # OpenTelemetry's GenAI conventions where they have a name; leadflow's otherwise.
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": call.provider,
            "gen_ai.response.model": call.model[:200],
            "gen_ai.usage.input_tokens": call.input_tokens,
            "gen_ai.usage.output_tokens": call.output_tokens,
            "leadflow.llm.step": step,
            "leadflow.llm.purpose": purpose or step,
            "leadflow.llm.outcome": call.outcome,
            "leadflow.llm.cached_tokens": call.cached_tokens,
            "leadflow.llm.cost_usd": cost_usd,
        },
    )
    if call.outcome in _FAILED:
        span.set_status(Status(StatusCode.ERROR, (call.error or call.outcome)[:200]))
        span.set_attribute("error.type", call.outcome)
    span.end(end_time=start + duration_ns)
