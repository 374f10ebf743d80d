"""InventoryIngestionWorkflow's decisions on the time-skipping server, with stub activities under
the real activity names (the activities have their own tests): the result and the run's details,
a final failure recorded and not retried, a transient one retried (the backoff skipped)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models.inventory import IngestDiff
from models.knowledge.ingestion import (
    ERROR_SOURCE_FORMAT,
    ERROR_SOURCE_UNAVAILABLE,
    IngestFailure,
    IngestResult,
    IngestSourceInput,
    ingestion_workflow_id,
)
from workflows.ingestion import INGEST_RETRY, InventoryIngestionWorkflow

pytestmark = pytest.mark.timeout(120)

RESULT = IngestResult(
    source_id="src1",
    source_name="Occasions",
    format="json-ld",
    diff=IngestDiff(
        received=12,
        added=2,
        updated=1,
        removed=1,
        unchanged=8,
        added_keys=("VD-11", "VD-12"),
        updated_keys=("VD-3",),
        removed_keys=("VD-7",),
    ),
    skipped=1,
    skipped_reasons=("item 4: no make",),
    bytes=48_213,
    seconds=0.42,
)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    yield environment
    await environment.shutdown()


class Stubs:
    """The two activities, answering as `behaviour(attempt)` says; what they were called with."""

    def __init__(self, behaviour: Callable[[int], IngestResult]) -> None:
        self.behaviour = behaviour
        self.attempts = 0
        self.failures: list[IngestFailure] = []

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="ingest_inventory_source")
        async def ingest(input: IngestSourceInput) -> IngestResult:
            self.attempts += 1
            assert activity.info().attempt == self.attempts
            return self.behaviour(self.attempts)

        @activity.defn(name="record_ingestion_failure")
        async def record(input: IngestFailure) -> None:
            self.failures.append(input)

        return [ingest, record]


async def _run(
    env: WorkflowEnvironment, stubs: Stubs
) -> tuple[WorkflowHandle[Any, IngestResult], IngestResult | BaseException, str]:
    """Runs the workflow to its end; returns its handle, result (or failure) and the current
    details it left (read while the worker still runs: the query replays the history)."""
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    source = IngestSourceInput(tenant_id="t-dealer", source_id=f"src{uuid.uuid4().hex[:6]}")
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[InventoryIngestionWorkflow],
        activities=stubs.activities(),
    ):
        handle = await env.client.start_workflow(
            InventoryIngestionWorkflow.run,
            source,
            id=ingestion_workflow_id(source.tenant_id, source.source_id),
            task_queue=queue,
        )
        try:
            outcome: IngestResult | BaseException = await handle.result()
        except WorkflowFailureError as exc:
            outcome = exc
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        return handle, outcome, metadata.current_details


async def _summaries(handle: WorkflowHandle[Any, Any]) -> list[str]:
    history = await handle.fetch_history()
    return [
        pydantic_data_converter.payload_converter.from_payload(e.user_metadata.summary, str)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_a_run_returns_what_changed_and_shows_it_in_its_details(
    env: WorkflowEnvironment,
) -> None:
    stubs = Stubs(lambda _: RESULT)
    handle, outcome, details = await _run(env, stubs)
    assert outcome == RESULT
    assert stubs.attempts == 1 and stubs.failures == []
    assert details == RESULT.markdown()
    # The Temporal UI's view of the run: what the activity did, and what changed.
    assert await _summaries(handle) == [
        f"fetch, parse and apply source {handle.id.rsplit(':', 1)[1]}"
    ]
    assert "**Occasions** (json-ld, 48,213 bytes" in details
    assert "**2 added, 1 updated, 1 removed**, 8 unchanged" in details
    assert "- removed: VD-7" in details and "item 4: no make" in details


async def test_a_final_failure_is_recorded_on_the_source_and_not_retried(
    env: WorkflowEnvironment,
) -> None:
    def unreadable(_: int) -> IngestResult:
        raise ApplicationError(
            "Occasions: cannot read the page: no JSON-LD items and no selectors",
            type=ERROR_SOURCE_FORMAT,
            non_retryable=True,
        )

    stubs = Stubs(unreadable)
    handle, outcome, details = await _run(env, stubs)
    assert isinstance(outcome, WorkflowFailureError)
    assert isinstance(outcome.cause, ApplicationError)
    assert (
        details == f"**Failed** (source `{stubs.failures[0].source_id}`): {outcome.cause.message}"
    )
    assert outcome.cause.message.startswith("Occasions: cannot read the page")
    assert stubs.attempts == 1
    assert [f.error for f in stubs.failures] == [outcome.cause.message]
    assert stubs.failures[0].source_id == handle.id.rsplit(":", 1)[1]
    assert await _summaries(handle) == [
        f"fetch, parse and apply source {stubs.failures[0].source_id}",
        f"record the failure on source {stubs.failures[0].source_id}",
    ]


async def test_a_transient_failure_is_retried_and_the_run_succeeds(
    env: WorkflowEnvironment,
) -> None:
    def flaky(attempt: int) -> IngestResult:
        if attempt < 3:
            raise ApplicationError("Occasions: HTTP 503", type=ERROR_SOURCE_UNAVAILABLE)
        return RESULT

    stubs = Stubs(flaky)
    _, outcome, _ = await _run(env, stubs)
    assert outcome == RESULT
    assert stubs.attempts == 3 and stubs.failures == []


async def test_a_source_down_through_every_retry_fails_the_run_and_is_recorded(
    env: WorkflowEnvironment,
) -> None:
    def down(_: int) -> IngestResult:
        raise ApplicationError("Occasions: connection failed", type=ERROR_SOURCE_UNAVAILABLE)

    stubs = Stubs(down)
    _, outcome, _ = await _run(env, stubs)
    assert isinstance(outcome, WorkflowFailureError)
    assert stubs.attempts == INGEST_RETRY.maximum_attempts
    assert [f.error for f in stubs.failures] == ["Occasions: connection failed"]
