"""workers/logs.py on a real worker and the real dev server: every record carries its tenant,
workflow, run and activity; an expected, retried activity failure is one line with its cause;
an unexpected or final one keeps its traceback; JSON lines parse; text lines read."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from tests.logs.conftest import Captured
from workers import logs
from workers.worker import workflow_runner

pytestmark = pytest.mark.timeout(120)

TENANT = "acme-logs"
plain = logging.getLogger("leadflow.tests.logs")


def _refused_url() -> str:
    """A loopback URL nothing listens on: the port of a socket bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@activity.defn
async def probe(kind: str) -> str:
    attempt = activity.info().attempt
    if kind == "ok":
        activity.logger.info("probe ran")
        plain.info("plain logger in an activity")
        with logs.bind_tenant("bound-tenant"):
            plain.info("with a bound tenant")
        return "ok"
    if kind == "expected" and attempt < 3:
        raise ApplicationError("the CRM answered 503", type="CrmUnavailable")
    if kind == "http" and attempt < 2:
        async with httpx.AsyncClient() as client:
            await client.get(_refused_url())
    if kind == "unexpected" and attempt < 2:
        try:
            int("not a number")
        except ValueError:
            raise KeyError("no-such-field")  # noqa: B904 - a bug's chain, as bugs have them
    if kind == "final":
        try:
            raise ConnectionRefusedError("refused")
        except ConnectionRefusedError as exc:
            raise ApplicationError("the CRM answered 503", type="CrmUnavailable") from exc
    if kind == "non_retryable":
        raise ApplicationError("the CRM refused the record", type="CrmRejected", non_retryable=True)
    return "done"


@workflow.defn
class LogProbeWorkflow:
    @workflow.run
    async def run(self, kind: str) -> str:
        workflow.logger.info("workflow started")
        if kind == "ok":
            plain.info("plain logger in a workflow")
        try:
            return await workflow.execute_activity(
                probe,
                kind,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=50),
                    backoff_coefficient=1.0,
                    maximum_attempts=2 if kind == "final" else 4,
                ),
            )
        except ActivityError:
            return "gave up"


@pytest.fixture
async def run_probe(temporal_client: Client, task_queue: str) -> AsyncIterator[Any]:
    """Runs LogProbeWorkflow(kind) on a real worker; returns (workflow id, run id, result)."""
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[LogProbeWorkflow],
        activities=[probe],
        workflow_runner=workflow_runner("passthrough"),
    ):

        async def run(kind: str) -> tuple[str, str, str]:
            workflow_id = f"enrich:{TENANT}:{uuid.uuid4().hex[:12]}"
            handle = await temporal_client.start_workflow(
                LogProbeWorkflow.run, kind, id=workflow_id, task_queue=task_queue
            )
            result = await handle.result()
            assert handle.result_run_id is not None
            return workflow_id, handle.result_run_id, result

        yield run


def _lines_of(text: str, workflow_id: str) -> list[str]:
    return [line for line in text.splitlines() if workflow_id in line]


async def test_json_records_carry_tenant_workflow_run_and_activity(
    captured: Captured, run_probe: Any
) -> None:
    captured.configure("json")
    workflow_id, run_id, result = await run_probe("ok")
    assert result == "ok"
    records = captured.json_lines()  # every line is one JSON object
    by_message = {r["message"]: r for r in records if r.get("workflow_id") == workflow_id}

    started = by_message["workflow started"]
    assert started["logger"] == "temporalio.workflow"
    assert started["level"] == "INFO"
    assert started["time"].endswith("+00:00")
    assert (started["tenant"], started["run_id"]) == (TENANT, run_id)
    assert started["workflow_type"] == "LogProbeWorkflow"
    assert "activity_type" not in started

    in_workflow = by_message["plain logger in a workflow"]
    assert (in_workflow["tenant"], in_workflow["run_id"]) == (TENANT, run_id)
    assert in_workflow["workflow_type"] == "LogProbeWorkflow"

    for message in ("probe ran", "plain logger in an activity"):
        record = by_message[message]  # the SDK's activity logger and a plain one alike
        assert record["tenant"] == TENANT
        assert record["run_id"] == run_id
        assert record["workflow_type"] == "LogProbeWorkflow"
        assert (record["activity_type"], record["attempt"]) == ("probe", 1)
        # The context is in fields, not appended to the message as the SDK does by default.
        assert record["message"] == message
        assert "temporal_activity" not in record
    assert by_message["with a bound tenant"]["tenant"] == "bound-tenant"


async def test_expected_retried_failure_is_one_line_with_its_cause(
    captured: Captured, run_probe: Any
) -> None:
    captured.configure("text")
    workflow_id, _, result = await run_probe("expected")
    assert result == "done"
    failures = [line for line in _lines_of(captured.text, workflow_id) if "failed" in line]
    assert len(failures) == 2, captured.text  # attempts 1 and 2; the third succeeded
    for attempt, line in enumerate(failures, start=1):
        assert f"activity failed on attempt {attempt} of 4, will retry" in line
        assert "ApplicationError[CrmUnavailable]: the CRM answered 503" in line
        assert f"tenant={TENANT}" in line and "activity=probe" in line
    assert "Traceback" not in captured.text


async def test_refused_connection_is_one_line_naming_the_remote_error(
    captured: Captured, run_probe: Any
) -> None:
    captured.configure("json")
    workflow_id, _, result = await run_probe("http")
    assert result == "done"
    failures = [
        r for r in captured.json_lines() if r.get("workflow_id") == workflow_id and "error" in r
    ]
    assert len(failures) == 1
    failure = failures[0]
    assert failure["level"] == "WARNING"
    assert failure["retrying"] is True
    assert failure["error"].startswith("httpx.ConnectError: All connection attempts failed")
    # The innermost cause, named: here the socket's refusal under httpx's and httpcore's errors.
    assert "(from ConnectionRefusedError: [Errno 111]" in failure["error"]
    assert "exc_info" not in failure
    assert (failure["tenant"], failure["activity_type"], failure["attempt"]) == (TENANT, "probe", 1)


async def test_unexpected_failure_keeps_its_traceback(captured: Captured, run_probe: Any) -> None:
    captured.configure("text")
    workflow_id, _, result = await run_probe("unexpected")
    assert result == "done"
    [failure] = [line for line in _lines_of(captured.text, workflow_id) if "failed" in line]
    assert "activity failed on attempt 1 of 4 (unexpected error): KeyError: 'no-such-field'" in (
        failure
    )
    traceback = captured.text.split(failure, 1)[1]
    assert traceback.lstrip("\n").startswith("Traceback (most recent call last):")
    # All of it: the exception it happened in too.
    assert "ValueError: invalid literal for int()" in traceback
    assert "During handling of the above exception, another exception occurred" in traceback
    assert "KeyError: 'no-such-field'" in traceback


async def test_last_attempt_and_non_retryable_failures_keep_their_traceback(
    captured: Captured, run_probe: Any
) -> None:
    captured.configure("json")
    final_id, _, final = await run_probe("final")
    rejected_id, _, rejected = await run_probe("non_retryable")
    assert (final, rejected) == ("gave up", "gave up")
    records = captured.json_lines()

    first, last = [r for r in records if r.get("workflow_id") == final_id and "error" in r]
    assert first["retrying"] is True and "exc_info" not in first
    assert last["retrying"] is False
    assert "attempt 2 of 2 (last attempt)" in last["message"]
    assert last["error"] == (
        "ApplicationError[CrmUnavailable]: the CRM answered 503 (from ConnectionRefusedError: "
        "refused)"
    )
    # The traceback of where it was raised; the chain under it is the `error`'s "from".
    assert last["exc_info"].startswith("Traceback (most recent call last):")
    assert 'raise ApplicationError("the CRM answered 503"' in last["exc_info"]
    assert last["exc_info"].endswith("ApplicationError: CrmUnavailable: the CRM answered 503")
    assert "The above exception" not in last["exc_info"]

    [refusal] = [r for r in records if r.get("workflow_id") == rejected_id and "error" in r]
    assert "activity failed on attempt 1 of 4 (not retryable)" in refusal["message"]
    assert refusal["error"] == "ApplicationError[CrmRejected]: the CRM refused the record"
    assert "Traceback" in refusal["exc_info"]


async def test_text_lines_read_as_sentences_with_the_context_at_the_end(
    captured: Captured, run_probe: Any
) -> None:
    captured.configure("text")
    workflow_id, run_id, _ = await run_probe("ok")
    [line] = [line for line in _lines_of(captured.text, workflow_id) if "probe ran" in line]
    # e.g. 2026-11-28 23:37:56,163 INFO temporalio.activity: probe ran  [tenant=… attempt=1]
    prefix, context = line.split("  [", 1)
    assert prefix.split(" ", 3)[2:] == ["INFO", "temporalio.activity: probe ran"]
    assert context == (
        f"tenant={TENANT} workflow={workflow_id} run={run_id[:8]} activity=probe attempt=1]"
    )


def test_records_outside_temporal_have_no_context(captured: Captured) -> None:
    captured.configure("json")
    plain.warning("nothing to place %s", "here")
    [record] = [r for r in captured.json_lines() if r["logger"] == plain.name]
    assert record["message"] == "nothing to place here"
    assert {"tenant", "workflow_id", "run_id", "activity_type"}.isdisjoint(record)
    captured.configure("text")
    plain.warning("plain line")
    assert captured.text.splitlines()[-1].endswith("WARNING leadflow.tests.logs: plain line")


def test_an_explicit_extra_wins_over_the_context(captured: Captured) -> None:
    captured.configure("json")
    with logs.bind_tenant("from-context"):
        plain.info("explicit", extra={"tenant": "from-caller"})
    [record] = [r for r in captured.json_lines() if r["message"] == "explicit"]
    assert record["tenant"] == "from-caller"


@pytest.mark.parametrize(
    ("workflow_id", "tenant"),
    [
        ("conv:acme:waha:abcdefabcdefabcdefabcdef", "acme"),
        ("crm:acme:abcdef", "acme"),
        ("erase:acme:abcdef", "acme"),
        ("enrich:acme:1234", "acme"),
        ("crm-test:acme:int-1:abcd", "acme"),
        ("conv:", None),  # truncated
        ("conv::waha:x", None),  # empty tenant
        ("enrich", None),
        ("some-other-workflow", None),
        ("other:acme:x", None),  # not a kind leadflow makes
        ("", None),
        (None, None),
    ],
)
def test_tenant_of_workflow_id(workflow_id: str | None, tenant: str | None) -> None:
    assert logs.tenant_of_workflow_id(workflow_id) == tenant


def test_describe_names_the_innermost_cause_once() -> None:
    try:
        try:
            raise ConnectionRefusedError("refused")
        except ConnectionRefusedError as inner:
            raise ApplicationError("fetching http://x: refused", type="FetchError") from inner
    except ApplicationError as exc:
        line = logs.describe(exc)
    assert (
        line
        == "ApplicationError[FetchError]: fetching http://x: refused (from ConnectionRefusedError)"
    )
    long = logs.describe(ValueError("x\n" * 1000), limit=50)
    assert len(long) == 50 and "\n" not in long and long.endswith("…")


async def test_uvicorn_access_lines_are_records_with_fields(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `leadflow api` runs: uvicorn with log_config=None, its records through our handler."""
    # Other tests of this process ran uvicorn with its default log_config, whose dictConfig
    # gives the module-wide "uvicorn" loggers their own handlers and propagate=False;
    # `leadflow api` and `up` (log_config=None) never apply it.
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
    captured.configure("json")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # listening before the request: it waits in the backlog, no retries
        # log_level: other tests of this process ran uvicorn at "warning", which uvicorn sets on
        # its module-wide loggers; `leadflow api` runs at the root's INFO.
        config = uvicorn.Config(app, log_config=None, log_level="info", lifespan="off")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        port = sock.getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post("/webhooks/waha/acme?x=1", json={})
        assert response.status_code == 202
        server.should_exit = True
        await serving
    [access] = [r for r in captured.json_lines() if r["logger"] == "uvicorn.access"]
    assert access["method"] == "POST"
    assert access["path"] == "/webhooks/waha/acme?x=1"
    assert access["status"] == 202
    assert access["tenant"] == "acme"
    assert "color_message" not in access


def test_records_in_a_span_carry_its_trace_when_tracing_is_on(captured: Captured) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("tests.logs")
    logs.configure("json", traces=True, stream=captured.stream)
    with tracer.start_as_current_span("webhook") as span:
        plain.info("in a span")
    plain.info("after it")
    logs.configure("json", stream=captured.stream)  # tracing off: nothing looked up
    with tracer.start_as_current_span("another"):
        plain.info("tracing off")
    records = {r["message"]: r for r in captured.json_lines()}
    context = span.get_span_context()
    assert records["in a span"]["trace_id"] == format(context.trace_id, "032x")
    assert records["in a span"]["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in records["after it"]
    assert "trace_id" not in records["tracing off"]
