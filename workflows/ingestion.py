"""InventoryIngestionWorkflow: one run per fetch of an inventory source, started by the source's
Temporal Schedule (models/knowledge/schedules.py) or by hand (`POST .../sources/{id}/run`).

One activity does the work (fetch, parse, apply, record), so a run is one activity on the happy
path; the workflow decides what a failure means: it records the final error on the source's row
(also when the activity timed out and could not) and fails the run, so the schedule's recent
actions and the Temporal UI show it. The run's details say what changed."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.ingestion import IngestionActivities
    from models.knowledge.ingestion import (
        NON_RETRYABLE_ERRORS,
        WORKFLOW_NAME,
        IngestFailure,
        IngestResult,
        IngestSourceInput,
    )

INGEST_START_TO_CLOSE = timedelta(minutes=10)  # a 20 MB feed, 20,000 items written
INGEST_HEARTBEAT = timedelta(seconds=60)
INGEST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    # About 2.5 minutes of retries: a source still down after that is tried again by the
    # schedule's next run, which (overlap SKIP) this run would otherwise keep from starting.
    maximum_attempts=5,
    non_retryable_error_types=list(NON_RETRYABLE_ERRORS),
)
RECORD_TIMEOUT = timedelta(seconds=30)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
ERROR_RUN_FAILED = "InventoryIngestionFailed"


def _reason(error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    if cause is not None:
        return str(cause) or type(cause).__name__
    return str(error)


@workflow.defn(name=WORKFLOW_NAME)
class InventoryIngestionWorkflow:
    @workflow.run
    async def run(self, input: IngestSourceInput) -> IngestResult:
        workflow.set_current_details(f"Fetching inventory source `{input.source_id}`…")
        try:
            result = await workflow.execute_activity_method(
                IngestionActivities.ingest_inventory_source,
                input,
                start_to_close_timeout=INGEST_START_TO_CLOSE,
                heartbeat_timeout=INGEST_HEARTBEAT,
                retry_policy=INGEST_RETRY,
                summary=f"fetch, parse and apply source {input.source_id}",
            )
        except ActivityError as error:
            reason = _reason(error)
            workflow.set_current_details(f"**Failed** (source `{input.source_id}`): {reason}")
            await workflow.execute_activity_method(
                IngestionActivities.record_ingestion_failure,
                IngestFailure(tenant_id=input.tenant_id, source_id=input.source_id, error=reason),
                start_to_close_timeout=RECORD_TIMEOUT,
                retry_policy=RECORD_RETRY,
                summary=f"record the failure on source {input.source_id}",
            )
            raise ApplicationError(reason, type=ERROR_RUN_FAILED, non_retryable=True) from error
        workflow.set_current_details(result.markdown())
        return result
