"""One WAHA message is one trace (issue 11): the real API on loopback, the real worker, the dev
server, a fake WAHA and a fake model server over HTTP, LEADFLOW_OTEL_ENABLED as in production.
The span trees are asserted and printed: the message that starts the conversation, and the next
one, which signals the running workflow and still gets a trace of its own down to its reply."""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from temporalio.worker import Replayer

from models.conversation import conversation_workflow_id
from models.task_queues import CONVERSATIONS
from models.tenant import TenantSettings
from tests.fakes.llm import FakeOpenAI
from tests.fakes.llm_brain import rules_brain
from tests.fakes.waha import FakeWaha
from tests.stack import LiveStack, live_stack
from tests.tracing.conftest import children, named, of_trace, render_tree
from workers.client import connect
from workers.telemetry import MessageTracingInterceptor
from workers.worker import workflow_runner
from workflows.conversation import ConversationWorkflow

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


TEXTS = (
    "Hi, I'm looking for a Volkswagen Golf, budget around €25.000",
    "Could I come for a test drive this week?",
)


async def post_and_wait(
    stack: LiveStack, fake_waha: FakeWaha, spans: InMemorySpanExporter, n: int
) -> int:
    raw, headers = fake_waha.message_webhook(from_=LEAD, body=TEXTS[n - 1])
    # WAHA sends no trace context: the test's own client must not add one either.
    with suppress_http_instrumentation():
        response = await stack.http.post(
            f"/webhooks/waha/{stack.tenant_id}",
            content=raw,
            headers={**headers, "content-type": "application/json"},
        )
    assert response.status_code in (200, 202), response.text
    await stack.wait_for(lambda: len(fake_waha.sent) >= n, timeout=60, what=f"reply {n}")
    # The activity's span ends once it returned: after WAHA took the reply.
    await stack.wait_for(
        lambda: len(named(spans.get_finished_spans(), "RunActivity:send_and_record")) >= n,
        timeout=60,
        what=f"the send activity's span of turn {n}",
    )
    return response.status_code


def assert_message_tree(
    trace: list[ReadableSpan], root: ReadableSpan, status: int, workflow_id: str, waha_url: str
) -> None:
    assert root.name == "POST /webhooks/waha/{tenant}" and root.kind == SpanKind.SERVER
    assert attr(root, "http.response.status_code", "http.status_code") == status

    # Webhook -> signal-with-start (the raw RPC, traced as the SDK's interceptor would).
    start = child(trace, root, "SignalWithStartWorkflow:ConversationWorkflow")
    assert start.kind == SpanKind.CLIENT
    assert (start.attributes or {})["temporalWorkflowID"] == workflow_id

    # The worker continued the trace from the request's header: the signal and the activities.
    assert "HandleSignal:inbound" in {s.name for s in children(trace, start)}
    prepare = child(
        trace, child(trace, start, "StartActivity:prepare_turn"), "RunActivity:prepare_turn"
    )
    send = child(
        trace, child(trace, start, "StartActivity:send_and_record"), "RunActivity:send_and_record"
    )
    assert prepare.kind == send.kind == SpanKind.SERVER

    # Model calls: one span each under the activity that made them, with usage and cost.
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
        and str(attr(s, "url.full", "http.url")).startswith(f"{waha_url}/api/sendText")
    ]
    assert attr(waha_send, "http.response.status_code", "http.status_code") in (200, 201)


async def test_each_waha_message_is_one_trace(
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
        # which adds the tracing interceptor when tracing is on.
        client = await connect(settings, address=temporal_address, role="test")
        tenant = TenantSettings(playbook="car_dealership", waha=fake_waha.settings())
        async with live_stack(
            client, settings, tenant_settings=tenant, queues=[CONVERSATIONS]
        ) as stack:
            statuses = [await post_and_wait(stack, fake_waha, spans, n) for n in (1, 2)]
            conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
            history = await client.get_workflow_handle(conv_id).fetch_history()

    finished = list(spans.get_finished_spans())
    roots = sorted(
        (
            s
            for s in finished
            if s.parent is None
            and s.kind == SpanKind.SERVER
            and s.name.startswith("POST /webhooks/")
        ),
        key=lambda s: s.start_time or 0,
    )
    assert len(roots) == 2, [s.name for s in roots]
    trace_ids = []
    for n, (root, status) in enumerate(zip(roots, statuses, strict=True), start=1):
        assert root.context is not None
        trace = of_trace(finished, root.context.trace_id)
        print(
            f"\nthe span tree of WAHA message {n} (trace {root.context.trace_id:032x}):\n"
            + render_tree(trace, root)
        )
        assert_message_tree(trace, root, status, conv_id, fake_waha.url)
        trace_ids.append(root.context.trace_id)
    # The run's own span is in the first message's trace only (the second one signals it).
    [run] = named(finished, "RunWorkflow:ConversationWorkflow")
    assert run.context is not None and run.context.trace_id == trace_ids[0]

    # WAHA got each reply with its message's trace (traceparent), and no work of either message
    # went into another trace.
    sent = [r for r in fake_waha.requests if r.path.endswith("/api/sendText")]
    assert [r.headers.get("traceparent", "").split("-")[1] for r in sent] == [
        f"{t:032x}" for t in trace_ids
    ]
    for name in ("RunActivity:prepare_turn", "RunActivity:send_and_record", "ModelCall:analysis"):
        assert sorted(s.context.trace_id for s in named(finished, name) if s.context) == sorted(
            trace_ids
        ), name

    # The run replays with the tracing interceptor (its per-message state is rebuilt from the
    # signals' headers) and makes no span while replaying.
    before = len(spans.get_finished_spans())
    replayer = Replayer(
        workflows=[ConversationWorkflow],
        data_converter=client.data_converter,
        workflow_runner=workflow_runner("strict"),
        interceptors=[MessageTracingInterceptor()],
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
    assert len(spans.get_finished_spans()) == before
