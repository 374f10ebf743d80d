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
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState

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


DETAIL_ROWS_SHOWN = 8
"""Rows in flight named in the current details; a window of 200 is summarised after these."""


def _reason(error: ActivityError) -> str:
    """The readable cause of a record's last failed attempt."""
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    if cause is not None:
        return str(cause) or type(cause).__name__
    return str(error)


def _gave_up(error: ActivityError, attempts: int | None) -> str:
    """Why Temporal stopped retrying a record, in words (for the activity summary)."""
    if error.retry_state == RetryState.NON_RETRYABLE_FAILURE:
        return "not retryable"
    if error.retry_state == RetryState.TIMEOUT:
        return "out of time"
    return f"after {attempts} attempts"


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
        # For people reading the run (current details): what this run finished, since when,
        # which record failed last and what the workflow waits for besides its records.
        self._run_started = workflow.now()
        self._finished_here = 0
        self._in_flight_since: dict[int, str] = {}
        self._last_failure: str | None = None
        self._recent: list[str] = []  # the last rows finished, newest first, with their company
        self._step: str | None = None

    # -- updates ---------------------------------------------------------------------------

    @workflow.update(name=UPDATE_PAUSE)
    async def pause_job(self, _: PauseJob) -> JobControlResult:
        """No new records start; those in flight finish."""
        if self._first_time():
            self._paused = True
        self._show()
        return await self._settled()

    @pause_job.validator
    def _validate_pause(self, _: PauseJob) -> None:
        self._refuse_unless_allowed(JobAction.PAUSE)

    @workflow.update(name=UPDATE_RESUME)
    async def resume_job(self, _: ResumeJob) -> JobControlResult:
        if self._first_time():
            self._paused = False
        self._show()
        return await self._settled()

    @resume_job.validator
    def _validate_resume(self, _: ResumeJob) -> None:
        self._refuse_unless_allowed(JobAction.RESUME)

    @workflow.update(name=UPDATE_CANCEL)
    async def cancel_job(self, _: CancelJob) -> JobControlResult:
        """No new records start, records in flight are cancelled, finished records are kept."""
        if self._first_time():
            self._cancelled = True
        self._show()
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
        self._show()

    @workflow.signal(name=SIGNAL_RESUME)
    def resume(self, _: ResumeJob) -> None:
        self._paused = False
        self._show()

    @workflow.signal(name=SIGNAL_CANCEL)
    def cancel(self, _: CancelJob) -> None:
        self._cancelled = True
        self._show()

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
            self._step = f"storing the {job.total} rows of the CSV"
            self._show()
            try:
                await workflow.execute_activity_method(
                    EnrichmentActivities.store_rows,
                    StoreRowsInput(tenant_id=job.tenant_id, job_id=job.job_id),
                    start_to_close_timeout=STORE_ROWS_TIMEOUT,
                    retry_policy=DATABASE_RETRY,
                    summary=f"store the {job.total} rows of job {job.job_id}",
                )
            except ActivityError as err:
                return await self._finish(JobStatus.FAILED, f"storing the rows: {_reason(err)}")
            self._step = None

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
            self._show()
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
            self._in_flight_since[row] = f"{workflow.now():%H:%M:%S}"
            self._in_flight[row] = asyncio.create_task(self._process(job, row))

        if self._cancelled:
            if workflow.patched(PATCH_CANCEL_REPORTED_FIRST):
                # Records in flight learn of the cancel with their next heartbeat (seconds): the
                # status is written first so the caller does not wait for that. The write after
                # they have stopped puts the unfinished ones back to pending.
                await self._report(JobStatus.CANCELLED)
            tasks = list(self._in_flight.values())
            self._show()
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
        steps = ", ".join(step.value for step in job.options.steps)
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
                summary=f"enrich row {row} of {job.total}: {steps}",
            )
            status = result.status
            if status != RecordStatus.DONE:
                self._last_failure = f"row {row}: {result.error or status.value}"
            self._finished_row(row, result.website, status.value)
        except (asyncio.CancelledError, CancelledError):
            self._forget(row)
            raise
        except ActivityError as err:
            if self._cancelled and isinstance(err.cause, CancelledError):
                self._forget(row)
                return
            attempts = RECORD_RETRY.maximum_attempts
            error = f"{_reason(err)} (gave up after {attempts} attempts)"
            self._last_failure = f"row {row}: {error}"
            self._finished_row(row, None, RecordStatus.FAILED.value)
            try:
                await workflow.execute_activity_method(
                    EnrichmentActivities.mark_record_failed,
                    MarkRecordFailedInput(
                        tenant_id=job.tenant_id, job_id=job.job_id, row_number=row, error=error
                    ),
                    start_to_close_timeout=STATUS_TIMEOUT,
                    retry_policy=DATABASE_RETRY,
                    summary=f"mark row {row} failed ({_gave_up(err, attempts)})",
                )
            except ActivityError:
                # The database stayed unreachable: the record is counted failed here and shows
                # as running there; the job must still move on.
                workflow.logger.warning("could not mark record %s failed", row)
        if status == RecordStatus.DONE:
            self._done += 1
        else:
            self._failed += 1
        self._finished_here += 1
        self._forget(row)

    def _forget(self, row: int) -> None:
        self._in_flight.pop(row, None)
        self._in_flight_since.pop(row, None)
        self._show()

    async def _report(self, status: JobStatus, error: str | None = None) -> None:
        """The one writer of the job's status (database and search attribute)."""
        self._reported = status
        workflow.upsert_search_attributes([search_attributes.JOB_STATUS.value_set(status.value)])
        self._step = f"writing the job's status ({status.value}) to the database"
        self._show()
        await workflow.execute_activity_method(
            EnrichmentActivities.set_job_status,
            JobStatusUpdate(
                tenant_id=self._job.tenant_id, job_id=self._job.job_id, status=status, error=error
            ),
            start_to_close_timeout=STATUS_TIMEOUT,
            retry_policy=DATABASE_RETRY,
            summary=f"job {self._job.job_id} status: {status.value}",
        )
        self._step = None
        self._persisted = status
        self._show()

    async def _finish(self, status: JobStatus, error: str | None) -> JobProgress:
        self._finished_status = status
        await self._report(status, error)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress()

    # -- what the Temporal UI shows ---------------------------------------------------------

    def _show(self) -> None:
        """The run's current details (markdown in the Temporal UI): progress, rate and what the
        job waits for. Row numbers, counts and failure causes only: no cell of the CSV, so no
        contact detail (docs/security.md). Not a command: replays are unchanged."""
        total = self._job.total
        finished = self._done + self._failed
        status = self._status()
        headline = {
            JobStatus.RUNNING: "Enriching",
            JobStatus.PAUSED: "Paused",
            JobStatus.CANCELLED: "Cancelled" if self._finished_status else "Cancelling",
            JobStatus.COMPLETED: "Completed",
            JobStatus.FAILED: "Failed",
        }[status]
        lines = [
            f"**{headline}: {finished}/{total} rows** "
            f"(job {self._job.job_id}, run {self._job.run})",
            f"- done {self._done}, failed {self._failed}, in flight {len(self._in_flight)}"
            + (f", next row {self._next_row}" if self._next_row <= total else ""),
        ]
        minutes = (workflow.now() - self._run_started).total_seconds() / 60
        if self._finished_here and minutes > 0:
            rate = self._finished_here / minutes
            line = f"- rate: {rate:.1f} rows/min in this run"
            left = (total - finished) / rate
            if total > finished and status is JobStatus.RUNNING:
                line += "; under a minute left" if left < 1 else f"; about {left:.0f} min left"
            lines.append(line)
        lines.append(f"- waiting on: {self._waiting_on(status)}")
        if self._recent:
            lines.append(f"- latest: {', '.join(self._recent)}")
        if self._last_failure is not None:
            lines.append(f"- last failure: {self._last_failure[:200]}")
        workflow.set_current_details("\n".join(lines))

    def _finished_row(self, row: int, website: str | None, outcome: str) -> None:
        """Remember a finished row for the details: its number, the company website's host
        the activity reported, and how it ended."""
        finished = f"row {row}" + (f" {website}" if website else "")
        self._recent = [f"{finished} ({outcome})", *self._recent][:DETAIL_ROWS_SHOWN]

    def _waiting_on(self, status: JobStatus) -> str:
        rows = sorted(self._in_flight_since)
        named = ("row " if len(rows) == 1 else "rows ") + ", ".join(
            str(r) for r in rows[:DETAIL_ROWS_SHOWN]
        )
        if len(rows) > DETAIL_ROWS_SHOWN:
            named += f" and {len(rows) - DETAIL_ROWS_SHOWN} more"
        in_flight = (
            f"{named} (oldest since {self._in_flight_since[rows[0]]} UTC; a row being "
            "retried shows its attempt and last failure under Pending Activities)"
            if rows
            else ""
        )
        if self._step is not None:
            return self._step + (f"; {in_flight}" if in_flight else "")
        if status is JobStatus.PAUSED:
            return "a resume (no new row starts)" + (
                f"; finishing {in_flight}" if in_flight else ""
            )
        if status is JobStatus.CANCELLED and self._finished_status is None:
            return f"the cancel of {in_flight}" if in_flight else "the cancel"
        if self._finished_status is not None:
            return "nothing: the job is over"
        if not rows:
            return "the next row"
        full = len(rows) >= self._job.concurrency
        return (f"window full ({len(rows)}/{self._job.concurrency}): " if full else "") + in_flight
