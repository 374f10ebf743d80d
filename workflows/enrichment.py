"""EnrichmentJobWorkflow: one per uploaded CSV.

Stores the rows once, then keeps a sliding window of records in flight (the job's concurrency),
and continues as new every `records_per_run` records so a 100,000-row job keeps a small history.
Progress is a query and lives in the database. A record that fails is marked failed with a
reason and never fails the job.

Pause, resume and cancel are updates: a validator refuses what cannot apply (pause a paused or
ended job, resume a job that is not paused, cancel an ended one) and the accepted update answers
once the workflow has written the resulting status to the database. The workflow is the only
writer of the job status. The signals of the same names stay for jobs started before the updates.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.web.activities import EnrichmentActivities
    from models import search_attributes
    from models.enrichment import (
        CONTROL_IDS_KEPT,
        JOB_CONTROL_REFUSED,
        QUERY_PROGRESS,
        SIGNAL_CANCEL,
        SIGNAL_PAUSE,
        SIGNAL_RESUME,
        UPDATE_CANCEL,
        UPDATE_PAUSE,
        UPDATE_RESUME,
        WORKFLOW_NAME,
        CancelJob,
        EnrichmentJobInput,
        JobAction,
        JobControlResult,
        JobProgress,
        JobStatus,
        JobStatusUpdate,
        MarkRecordFailedInput,
        PauseJob,
        ProcessRecordInput,
        RecordStatus,
        ResumeJob,
        StoreRowsInput,
        control_refusal,
    )

PATCH_CANCEL_REPORTED_FIRST = "cancel-reported-first"
"""Since the cancel update: a cancelled job writes its status before its records in flight are
cancelled (which waits for their next heartbeat), so the caller is answered at once. Runs that
were cancelled before this change replay without the extra write."""

STORE_ROWS_TIMEOUT = timedelta(minutes=10)
STATUS_TIMEOUT = timedelta(seconds=30)
RECORD_START_TO_CLOSE = timedelta(minutes=5)
RECORD_SCHEDULE_TO_CLOSE = timedelta(minutes=30)
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=20,
)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
    non_retryable_error_types=["RecordNotFound", "ConfigurationError", "TenantNotFound"],
)


def _reason(error: ActivityError) -> str:
    """The readable cause of a record's last failed attempt."""
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    if cause is not None:
        return str(cause) or type(cause).__name__
    return str(error)


@workflow.defn(name=WORKFLOW_NAME)
class EnrichmentJobWorkflow:
    @workflow.init
    def __init__(self, job: EnrichmentJobInput) -> None:
        self._paused = job.paused
        self._cancelled = False
        self._next_row = job.next_row
        self._done = job.done
        self._failed = job.failed
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._job = job
        # The API creates the job as running; a later run inherits what the previous reported.
        self._reported = JobStatus.PAUSED if job.paused else JobStatus.RUNNING
        # What the database holds: `_reported` is set when the write starts, this when it is done.
        self._persisted = self._reported
        self._finished_status: JobStatus | None = None
        self._control_ids = list(job.control_ids)

    # -- updates ---------------------------------------------------------------------------

    @workflow.update(name=UPDATE_PAUSE)
    async def pause_job(self, _: PauseJob) -> JobControlResult:
        """No new records start; those in flight finish."""
        if self._first_time():
            self._paused = True
        return await self._settled()

    @pause_job.validator
    def _validate_pause(self, _: PauseJob) -> None:
        self._refuse_unless_allowed(JobAction.PAUSE)

    @workflow.update(name=UPDATE_RESUME)
    async def resume_job(self, _: ResumeJob) -> JobControlResult:
        if self._first_time():
            self._paused = False
        return await self._settled()

    @resume_job.validator
    def _validate_resume(self, _: ResumeJob) -> None:
        self._refuse_unless_allowed(JobAction.RESUME)

    @workflow.update(name=UPDATE_CANCEL)
    async def cancel_job(self, _: CancelJob) -> JobControlResult:
        """No new records start, records in flight are cancelled, finished records are kept."""
        if self._first_time():
            self._cancelled = True
        return await self._settled()

    @cancel_job.validator
    def _validate_cancel(self, _: CancelJob) -> None:
        self._refuse_unless_allowed(JobAction.CANCEL)

    def _retried(self) -> bool:
        """This update's id was applied by an earlier run (a client's retry that arrived after
        continue-as-new): it is answered, not applied again nor refused."""
        info = workflow.current_update_info()
        return info is not None and info.id in self._control_ids

    def _first_time(self) -> bool:
        """Remember this update's id for the runs to come; False for a retry."""
        if self._retried():
            return False
        info = workflow.current_update_info()
        if info is not None:
            self._control_ids.append(info.id)
            del self._control_ids[:-CONTROL_IDS_KEPT]
        return True

    def _refuse_unless_allowed(self, action: JobAction) -> None:
        if self._retried():
            return
        # Judged on the status the job is heading for, not the one stored: a job whose cancel
        # is being written is already cancelled for a pause that comes after it.
        reason = control_refusal(action, self._status())
        if reason is not None:
            raise ApplicationError(reason, type=JOB_CONTROL_REFUSED, non_retryable=True)

    async def _settled(self) -> JobControlResult:
        """Wait until the database holds the status the job is heading for. If another control
        lands meanwhile (a resume right after a pause), that later status is the answer."""
        await workflow.wait_condition(lambda: self._persisted == self._status())
        return JobControlResult(status=self._persisted)

    # -- signals (jobs started before the updates) and query -------------------------------

    @workflow.signal(name=SIGNAL_PAUSE)
    def pause(self, _: PauseJob) -> None:
        self._paused = True

    @workflow.signal(name=SIGNAL_RESUME)
    def resume(self, _: ResumeJob) -> None:
        self._paused = False

    @workflow.signal(name=SIGNAL_CANCEL)
    def cancel(self, _: CancelJob) -> None:
        self._cancelled = True

    @workflow.query(name=QUERY_PROGRESS)
    def progress(self) -> JobProgress:
        return JobProgress(
            status=self._status(),
            total=self._job.total,
            done=self._done,
            failed=self._failed,
            in_flight=len(self._in_flight),
            next_row=self._next_row,
            run=self._job.run,
        )

    def _status(self) -> JobStatus:
        if self._finished_status is not None:
            return self._finished_status
        if self._cancelled:
            return JobStatus.CANCELLED
        return JobStatus.PAUSED if self._paused else JobStatus.RUNNING

    # -- the job ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, job: EnrichmentJobInput) -> JobProgress:
        if not job.rows_stored:
            try:
                await workflow.execute_activity_method(
                    EnrichmentActivities.store_rows,
                    StoreRowsInput(tenant_id=job.tenant_id, job_id=job.job_id),
                    start_to_close_timeout=STORE_ROWS_TIMEOUT,
                    retry_policy=DATABASE_RETRY,
                )
            except ActivityError as err:
                return await self._finish(JobStatus.FAILED, f"storing the rows: {_reason(err)}")

        run_end = min(job.total, job.next_row + job.records_per_run - 1)

        def run_over() -> bool:
            # An update still waiting for its status to be written keeps the loop here (which
            # writes it) rather than in a wait for handlers that would never finish.
            return (
                self._next_row > run_end
                and not self._in_flight
                and workflow.all_handlers_finished()
            )

        def can_dispatch() -> bool:
            return (
                not self._paused
                and self._next_row <= run_end
                and len(self._in_flight) < job.concurrency
            )

        while True:
            await workflow.wait_condition(
                lambda: (
                    self._cancelled
                    or self._status() != self._reported
                    or run_over()
                    or can_dispatch()
                )
            )
            if self._cancelled:
                break
            if self._status() != self._reported:
                await self._report(self._status())
                continue
            if run_over():
                break
            if not can_dispatch():
                continue
            row = self._next_row
            self._next_row += 1
            self._in_flight[row] = asyncio.create_task(self._process(job, row))

        if self._cancelled:
            if workflow.patched(PATCH_CANCEL_REPORTED_FIRST):
                # Records in flight learn of the cancel with their next heartbeat (seconds): the
                # status is written first so the caller does not wait for that. The write after
                # they have stopped puts the unfinished ones back to pending.
                await self._report(JobStatus.CANCELLED)
            tasks = list(self._in_flight.values())
            for task in tasks:
                task.cancel()
            # Wait for the cancellations to land, so no record is still being written when the
            # unfinished ones go back to pending.
            await asyncio.gather(*tasks, return_exceptions=True)
            return await self._finish(JobStatus.CANCELLED, None)
        if run_end < job.total:
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                job.model_copy(
                    update={
                        "next_row": self._next_row,
                        "rows_stored": True,
                        "paused": self._paused,
                        "done": self._done,
                        "failed": self._failed,
                        "run": job.run + 1,
                        "control_ids": tuple(self._control_ids),
                    }
                )
            )
        return await self._finish(JobStatus.COMPLETED, None)

    async def _process(self, job: EnrichmentJobInput, row: int) -> None:
        status = RecordStatus.FAILED
        try:
            result = await workflow.execute_activity_method(
                EnrichmentActivities.process_record,
                ProcessRecordInput(
                    tenant_id=job.tenant_id, job_id=job.job_id, row_number=row, options=job.options
                ),
                start_to_close_timeout=RECORD_START_TO_CLOSE,
                schedule_to_close_timeout=RECORD_SCHEDULE_TO_CLOSE,
                heartbeat_timeout=timedelta(seconds=job.record_heartbeat_timeout_seconds),
                retry_policy=RECORD_RETRY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            status = result.status
        except (asyncio.CancelledError, CancelledError):
            self._in_flight.pop(row, None)
            raise
        except ActivityError as err:
            if self._cancelled and isinstance(err.cause, CancelledError):
                self._in_flight.pop(row, None)
                return
            attempts = RECORD_RETRY.maximum_attempts
            try:
                await workflow.execute_activity_method(
                    EnrichmentActivities.mark_record_failed,
                    MarkRecordFailedInput(
                        tenant_id=job.tenant_id,
                        job_id=job.job_id,
                        row_number=row,
                        error=f"{_reason(err)} (gave up after {attempts} attempts)",
                    ),
                    start_to_close_timeout=STATUS_TIMEOUT,
                    retry_policy=DATABASE_RETRY,
                )
            except ActivityError:
                # The database stayed unreachable: the record is counted failed here and shows
                # as running there; the job must still move on.
                workflow.logger.warning("could not mark record %s failed", row)
        if status == RecordStatus.DONE:
            self._done += 1
        else:
            self._failed += 1
        self._in_flight.pop(row, None)

    async def _report(self, status: JobStatus, error: str | None = None) -> None:
        """The one writer of the job's status (database and search attribute)."""
        self._reported = status
        workflow.upsert_search_attributes([search_attributes.JOB_STATUS.value_set(status.value)])
        await workflow.execute_activity_method(
            EnrichmentActivities.set_job_status,
            JobStatusUpdate(
                tenant_id=self._job.tenant_id, job_id=self._job.job_id, status=status, error=error
            ),
            start_to_close_timeout=STATUS_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        self._persisted = status

    async def _finish(self, status: JobStatus, error: str | None) -> JobProgress:
        self._finished_status = status
        await self._report(status, error)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress()
