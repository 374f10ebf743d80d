"""One WAHA message is one trace (issue 11): the real API on loopback, the real worker, the dev
server, a fake WAHA and a fake model server over HTTP, LEADFLOW_OTEL_ENABLED as in production.
The span tree is asserted and printed."""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from models.conversation import conversation_workflow_id
from models.task_queues import CONVERSATIONS
from models.tenant import TenantSettings
from tests.fakes.llm import FakeOpenAI
from tests.fakes.llm_brain import rules_brain
from tests.fakes.waha import FakeWaha
from tests.stack import live_stack
from tests.tracing.conftest import children, named, of_trace, render_tree
from workers.client import connect

LEAD = "31612345678@c.us"


def only(found: list[ReadableSpan], what: str) -> ReadableSpan:
    assert len(found) == 1, f"{what}: {[s.name for s in found]}"
    return found[0]


def attr(span: ReadableSpan, *names: str) -> object:
    """An attribute under its stable semantic-convention name or the older one (the
    instrumentations emit the older unless OTEL_SEMCONV_STABILITY_OPT_IN says otherwise)."""
    attrs = span.attributes or {}
    return next((attrs[n] for n in names if n in attrs), None)


def child(finished: list[ReadableSpan], parent: ReadableSpan, name: str) -> ReadableSpan:
    return only(
        [s for s in children(finished, parent) if s.name == name], f"{name} under {parent.name}"
    )


async def test_one_waha_message_is_one_trace(
    spans: InMemorySpanExporter,
    temporal_address: str,
    settings_factory: Any,
    sqlite_url: str,
    fake_waha: FakeWaha,
) -> None:
    with FakeOpenAI(api_key=None, brain=rules_brain) as model:
        settings = settings_factory(
            sqlite_url,
            debounce_seconds=0.3,
            otel_enabled=True,
            llm_provider="openai_compatible",
            openai_compatible_base_url=model.base_url,
            llm_model="fake-model",
        )
        # The API and the worker connect as in production: through the one client factory,
        # which adds Temporal's TracingInterceptor when tracing is on.
        client = await connect(settings, address=temporal_address, role="test")
        tenant = TenantSettings(playbook="car_dealership", waha=fake_waha.settings())
        async with live_stack(
            client, settings, tenant_settings=tenant, queues=[CONVERSATIONS]
        ) as stack:
            raw, headers = fake_waha.message_webhook(
                from_=LEAD, body="Hi, I'm looking for a Volkswagen Golf, budget around €25.000"
            )
            # WAHA sends no trace context: the test's own client must not add one either.
            with suppress_http_instrumentation():
                response = await stack.http.post(
                    f"/webhooks/waha/{stack.tenant_id}",
                    content=raw,
                    headers={**headers, "content-type": "application/json"},
                )
            assert response.status_code in (200, 202), response.text
            await stack.wait_for(lambda: fake_waha.sent, timeout=60, what="the reply via WAHA")
            # The activity's span ends once it returned: after WAHA took the reply.
            await stack.wait_for(
                lambda: named(spans.get_finished_spans(), "RunActivity:send_and_record"),
                timeout=60,
                what="the send activity's span",
            )

    finished = list(spans.get_finished_spans())
    roots = [
        s
        for s in finished
        if s.parent is None and s.kind == SpanKind.SERVER and s.name.startswith("POST /webhooks/")
    ]
    root = only(roots, "webhook server spans")
    assert root.context is not None
    trace = of_trace(finished, root.context.trace_id)
    tree = render_tree(trace, root)
    print(f"\nthe span tree of one WAHA message (trace {root.context.trace_id:032x}):\n{tree}")

    assert root.name == "POST /webhooks/waha/{tenant}"
    assert attr(root, "http.response.status_code", "http.status_code") == response.status_code

    # Webhook -> signal-with-start (the raw RPC, traced as the SDK's interceptor would).
    start = child(trace, root, "SignalWithStartWorkflow:ConversationWorkflow")
    assert start.kind == SpanKind.CLIENT
    conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
    assert (start.attributes or {})["temporalWorkflowID"] == conv_id

    # The worker continued the trace from the request's header: the run and its activities.
    under_start = {s.name for s in children(trace, start)}
    assert {"RunWorkflow:ConversationWorkflow", "HandleSignal:inbound"} <= under_start
    prepare = child(
        trace, child(trace, start, "StartActivity:prepare_turn"), "RunActivity:prepare_turn"
    )
    send = child(
        trace, child(trace, start, "StartActivity:send_and_record"), "RunActivity:send_and_record"
    )
    assert prepare.kind == send.kind == SpanKind.SERVER

    # Model calls: one span each under the activity that made them, priced and counted.
    calls = [s for s in children(trace, prepare) if s.name.startswith("ModelCall:")]
    assert [s.name for s in calls] == ["ModelCall:analysis", "ModelCall:reply"]
    for call in calls:
        attrs = call.attributes or {}
        assert attrs["gen_ai.provider.name"] == "openai_compatible"
        assert attrs["leadflow.llm.outcome"] == "ok"
        assert int(str(attrs["gen_ai.usage.input_tokens"])) > 0
        assert int(str(attrs["gen_ai.usage.output_tokens"])) > 0
        assert "leadflow.llm.cost_usd" in attrs
        assert call.status.status_code != StatusCode.ERROR

    # Outgoing HTTP: the reply to WAHA is a client span under the send activity.
    [waha_send] = [
        s
        for s in children(trace, send)
        if s.kind == SpanKind.CLIENT
        and str(attr(s, "url.full", "http.url")).startswith(f"{fake_waha.url}/api/sendText")
    ]
    assert attr(waha_send, "http.response.status_code", "http.status_code") in (200, 201)
    # ...and carried the trace on to WAHA (traceparent names the same trace).
    sent = [r for r in fake_waha.requests if r.path.endswith("/api/sendText")]
    assert sent and f"{root.context.trace_id:032x}" in sent[-1].headers.get("traceparent", "")

    # One trace: nothing of this message's work went into another one.
    for name in ("RunActivity:prepare_turn", "RunActivity:send_and_record", "ModelCall:analysis"):
        assert {s.context.trace_id for s in named(finished, name) if s.context} == {
            root.context.trace_id
        }, name
