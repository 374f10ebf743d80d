"""CrmSyncWorkflow: one per lead (id `crm:{tenant}:{keyed hash of the lead id}`, see
models/workflow_ids.py; older runs `crm:{tenant}:{lead}`), signalled on every change. It reads
its tenant and lead from its input, never from its id, so both id forms run the same code.

Changes are coalesced (a burst becomes one sync of the latest state). Each sync is a saga over
the tenant's connections in order: read what the CRM holds -> register the compensation
(restore those values, or delete what this step creates) -> write. When a saga-mode step fails
permanently, the registered compensations run in reverse; best-effort steps just report.
Deterministic: no I/O here, only activities, timers and signals.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.crm.activities import CrmActivities
    from models.crm import (
        CRM_CONNECTION_TEST_WORKFLOW,
        CRM_SYNC_WORKFLOW,
        SYNC_SIGNAL,
        CompensationAction,
        ConnectionCheckInput,
        ConnectionCheckResult,
        CrmCompensationInput,
        CrmConnectionView,
        CrmNoteInput,
        CrmReadInput,
        CrmSyncInput,
        CrmSyncState,
        CrmWriteInput,
        LeadSnapshot,
        LoadSyncPlanInput,
        RecordSyncInput,
        SagaStepOutcome,
        StepStatus,
        SyncMode,
        SyncOutcome,
        SyncRequest,
        SyncStatus,
        idempotency_key,
    )

# ---- timeouts and retry policies, named once ---------------------------------------------

# Database-only steps: fast, retried briefly.
LOCAL_STEP_TIMEOUT = timedelta(seconds=15)
LOCAL_STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)
# One CRM call (a few HTTP requests). 429s carry their own next_retry_delay.
CRM_CALL_TIMEOUT = timedelta(seconds=30)
CRM_STEP_DEADLINE = timedelta(minutes=30)  # schedule-to-close: give up on a CRM after this
CRM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=12,
    non_retryable_error_types=[
        "CrmValidationError",
        "CrmAuthFailed",
        "CrmNotFound",
        "CrmConflict",
        "CrmAdapterMissing",
        "CrmIntegrationMissing",
    ],
)
# Compensations try harder: leaving a CRM half-written is worse than waiting.
COMPENSATION_DEADLINE = timedelta(hours=2)
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=25,
    non_retryable_error_types=["CrmAuthFailed", "CrmAdapterMissing", "CrmIntegrationMissing"],
)
# Notes are nice to have: a few tries, never fail the sync.
NOTE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
)
CONNECTION_TEST_TIMEOUT = timedelta(seconds=20)
CONNECTION_TEST_RETRY = RetryPolicy(maximum_attempts=1)


def _root(exc: BaseException) -> BaseException:
    cause: BaseException = exc
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    return cause


def _reason(exc: BaseException) -> str:
    """The root cause's message, which names the CRM, the call and the vendor's words."""
    cause = _root(exc)
    if isinstance(cause, ApplicationError) and cause.type:
        return f"{cause.type}: {cause.message}"
    return str(cause)


def _label(conn: CrmConnectionView) -> str:
    return f"{conn.kind.value} {conn.name!r}"


def _kind_of_failure(exc: BaseException) -> str:
    """The failure's type without the vendor's words, which may quote the lead's values (an
    e-mail address a CRM refused): what the run's details and summaries may show."""
    cause = _root(exc)
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type
    return type(cause).__name__


RETRIES_NOTE = (
    "a rate limit (429, Retry-After), an open breaker or a 5xx is retried by Temporal: "
    "the attempt and last failure show under Pending Activities"
)


class _Compensation:
    """A registered undo for one saga step, completed once the write tells us what it made."""

    def __init__(self, step: int, request: CrmCompensationInput) -> None:
        self.step = step
        self.request = request


@workflow.defn(name=CRM_SYNC_WORKFLOW)
class CrmSyncWorkflow:
    @workflow.init
    def __init__(self, input: CrmSyncInput) -> None:
        # A query is not recorded in the history, so reading these from the input instead of
        # the id (as before) changes no replay and needs no patch.
        self._tenant_id = input.tenant_id
        self._lead_id = input.lead_id
        self._reasons: list[str] = list(input.pending_reasons)
        self._signals = 0
        self._syncing = False
        self._syncs_done = input.syncs_done
        self._last: SyncOutcome | None = None
        # For people reading the run (current details): what it waits for, the CRM steps of the
        # sync in progress and how each went. CRM kinds, connection names and statuses only,
        # never a lead's values (docs/security.md).
        self._waiting = "the first request"
        self._plan: list[str] = []
        self._done_steps: list[str] = []

    @workflow.signal(name=SYNC_SIGNAL)
    def request_sync(self, request: SyncRequest) -> None:
        self._reasons.append(request.reason)
        self._signals += 1
        self._show()

    @workflow.query(name="state")
    def state(self) -> CrmSyncState:
        return CrmSyncState(
            tenant_id=self._tenant_id,
            lead_id=self._lead_id,
            pending_reasons=tuple(self._reasons),
            syncing=self._syncing,
            syncs_done=self._syncs_done,
            last_outcome=self._last,
        )

    @workflow.run
    async def run(self, input: CrmSyncInput) -> SyncOutcome | None:
        if not self._reasons:
            self._reasons.append("started")
        runs_here = 0
        while self._reasons:
            await self._coalesce(input)
            reasons = tuple(self._reasons)
            self._reasons.clear()
            self._syncing = True
            self._last = await self._sync(input, reasons)
            self._syncing = False
            self._syncs_done += 1
            self._waiting = "nothing: ends unless another change arrives"
            self._show()
            runs_here += 1
            if self._reasons and (
                runs_here >= input.max_syncs_per_run
                or workflow.info().is_continue_as_new_suggested()
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    CrmSyncInput(
                        tenant_id=input.tenant_id,
                        lead_id=input.lead_id,
                        coalesce_seconds=input.coalesce_seconds,
                        max_coalesce_seconds=input.max_coalesce_seconds,
                        pending_reasons=tuple(self._reasons),
                        syncs_done=self._syncs_done,
                        max_syncs_per_run=input.max_syncs_per_run,
                    )
                )
        # a signal racing this completion makes the server reject it and replay with the
        # signal, so the loop above sees it: no change is ever dropped
        return self._last

    async def _coalesce(self, input: CrmSyncInput) -> None:
        """Wait until the lead has been quiet for `coalesce_seconds` (at most `max_...`)."""
        started = workflow.now()
        cap = timedelta(seconds=input.max_coalesce_seconds)
        until = started + cap
        self._waiting = (
            f"the lead to be quiet for {input.coalesce_seconds:g} s (changes are coalesced; "
            f"the sync starts by {until:%H:%M:%S} UTC at the latest)"
        )
        self._show()
        while True:
            left = cap - (workflow.now() - started)
            if left <= timedelta(0):
                return
            seen = self._signals
            try:
                await workflow.wait_condition(
                    lambda seen=seen: self._signals != seen,  # type: ignore[misc]
                    timeout=min(timedelta(seconds=input.coalesce_seconds), left),
                    timeout_summary="coalesce lead changes",
                )
            except TimeoutError:
                return

    async def _sync(self, input: CrmSyncInput, reasons: tuple[str, ...]) -> SyncOutcome:
        sync_no = self._syncs_done + 1
        self._plan, self._done_steps = [], []
        self._step("loading the lead and the CRM connections")
        plan = await workflow.execute_activity_method(
            CrmActivities.load_crm_sync_plan,
            LoadSyncPlanInput(tenant_id=input.tenant_id, lead_id=input.lead_id),
            start_to_close_timeout=LOCAL_STEP_TIMEOUT,
            retry_policy=LOCAL_STEP_RETRY,
            summary=f"load lead and CRM connections (sync #{sync_no})",
        )
        lead = plan.lead
        self._plan = [_label(conn) for conn in plan.connections]
        if lead is None:
            outcome = SyncOutcome(
                tenant_id=input.tenant_id,
                lead_id=input.lead_id,
                version=0,
                status=SyncStatus.SKIPPED,
                reason="lead not found",
                reasons=reasons,
            )
        else:
            outcome = await self._saga(lead, plan.connections, reasons)
        failed = [
            f"{step.kind.value} {step.name!r}"
            for step in outcome.steps
            if step.status in (StepStatus.FAILED, StepStatus.COMPENSATION_FAILED)
        ]
        # The outcome's reason quotes the CRM's words (it is stored for the tenant); the summary
        # names the CRMs that failed only.
        self._step(f"recording the outcome ({outcome.status.value})")
        await workflow.execute_activity_method(
            CrmActivities.record_crm_sync,
            RecordSyncInput(run_key=f"{workflow.info().run_id}:{sync_no}", outcome=outcome),
            start_to_close_timeout=LOCAL_STEP_TIMEOUT,
            retry_policy=LOCAL_STEP_RETRY,
            summary=f"record outcome: {outcome.status.value}"
            + (f" (failed: {', '.join(failed)})" if failed else ""),
        )
        return outcome

    async def _saga(
        self,
        lead: LeadSnapshot,
        connections: tuple[CrmConnectionView, ...],
        reasons: tuple[str, ...],
    ) -> SyncOutcome:
        steps: list[SagaStepOutcome] = []
        compensations: list[_Compensation] = []
        failure: str | None = None
        best_effort_failures: list[str] = []

        for conn in connections:
            key = idempotency_key(lead.tenant_id, lead.lead_id, lead.version, conn.integration_id)
            saga_step = conn.mode is SyncMode.SAGA
            self._step(f"{_label(conn)}: read the current record; {RETRIES_NOTE}")
            try:
                before = await workflow.execute_activity_method(
                    CrmActivities.read_crm_record,
                    CrmReadInput(connection=conn, lead=lead),
                    start_to_close_timeout=CRM_CALL_TIMEOUT,
                    schedule_to_close_timeout=CRM_STEP_DEADLINE,
                    retry_policy=CRM_RETRY,
                    summary=f"read {_label(conn)}: the lead's current record",
                )
            except ActivityError as exc:
                self._done_steps.append(f"{_label(conn)}: read failed ({_kind_of_failure(exc)})")
                steps.append(self._failed(conn, exc))
                if saga_step:
                    failure = f"{_label(conn)} read failed: {_reason(exc)}"
                    break
                best_effort_failures.append(f"{_label(conn)}: {_reason(exc)}")
                continue

            # register the undo BEFORE writing: a write that fails half-way is covered too
            compensation = _Compensation(
                len(steps),
                CrmCompensationInput(
                    connection=conn,
                    lead=lead,
                    action=CompensationAction.RESTORE
                    if before.exists
                    else CompensationAction.DELETE,
                    idempotency_key=key,
                    remote_id=before.remote_id,
                    previous_values=before.values,
                    previous_extra=before.extra,
                ),
            )
            if saga_step:
                compensations.append(compensation)

            action = "update" if before.exists else "create"
            self._step(f"{_label(conn)}: {action} the record; {RETRIES_NOTE}")
            try:
                written = await workflow.execute_activity_method(
                    CrmActivities.write_crm_record,
                    CrmWriteInput(
                        connection=conn, lead=lead, idempotency_key=key, remote_id=before.remote_id
                    ),
                    start_to_close_timeout=CRM_CALL_TIMEOUT,
                    schedule_to_close_timeout=CRM_STEP_DEADLINE,
                    retry_policy=CRM_RETRY,
                    summary=f"write {_label(conn)}: {action} lead v{lead.version}",
                )
            except ActivityError as exc:
                self._done_steps.append(
                    f"{_label(conn)}: {action} failed ({_kind_of_failure(exc)})"
                )
                steps.append(self._failed(conn, exc))
                if saga_step:
                    failure = f"{_label(conn)} write failed: {_reason(exc)}"
                    break
                best_effort_failures.append(f"{_label(conn)}: {_reason(exc)}")
                continue

            if written.created:
                compensation.request = compensation.request.model_copy(
                    update={
                        "action": CompensationAction.DELETE,
                        "remote_id": written.remote_id,
                        "created_extra": written.extra,
                    }
                )
            self._done_steps.append(
                f"{_label(conn)}: {'created' if written.created else 'updated'}"
            )
            steps.append(
                SagaStepOutcome(
                    integration_id=conn.integration_id,
                    kind=conn.kind,
                    name=conn.name,
                    status=StepStatus.SUCCEEDED,
                    remote_id=written.remote_id,
                    created=written.created,
                )
            )

        if failure is not None:
            steps, compensation_failed = await self._compensate(steps, compensations)
            return SyncOutcome(
                tenant_id=lead.tenant_id,
                lead_id=lead.lead_id,
                version=lead.version,
                status=SyncStatus.FAILED if compensation_failed else SyncStatus.ROLLED_BACK,
                reason=failure
                + ("; a compensation failed too" if compensation_failed else "; rolled back"),
                steps=tuple(steps),
                reasons=reasons,
            )

        await self._add_notes(lead, connections, steps)
        return SyncOutcome(
            tenant_id=lead.tenant_id,
            lead_id=lead.lead_id,
            version=lead.version,
            status=SyncStatus.PARTIAL if best_effort_failures else SyncStatus.SUCCEEDED,
            reason="; ".join(best_effort_failures) or None,
            steps=tuple(steps),
            reasons=reasons,
        )

    # ---- what the Temporal UI shows -----------------------------------------------------

    def _step(self, waiting: str) -> None:
        self._waiting = waiting
        self._show()

    def _show(self) -> None:
        """The run's current details (markdown): not a command, so replays are unchanged."""
        if self._syncing:
            headline = f"Syncing to {len(self._plan)} CRM(s)" if self._plan else "Syncing"
            headline += f" (sync #{self._syncs_done + 1})"
        elif self._reasons:
            headline = f"{len(self._reasons)} change(s) waiting to be synced"
        else:
            headline = f"Idle after {self._syncs_done} sync(s)"
        lines = [f"**{headline}**", f"- waiting on: {self._waiting}"]
        if self._syncing and self._plan:
            lines.append(f"- CRMs in order: {', '.join(self._plan)}")
        lines += [f"- {step}" for step in self._done_steps]
        if self._reasons:
            reasons = list(dict.fromkeys(self._reasons))
            more = f" and {len(reasons) - 5} more" if len(reasons) > 5 else ""
            lines.append(f"- requested by: {', '.join(reasons[:5])}{more}")
        if self._last is not None:
            lines.append(f"- last outcome: {self._last.status.value} (sync #{self._syncs_done})")
        workflow.set_current_details("\n".join(lines))

    def _failed(self, conn: CrmConnectionView, exc: BaseException) -> SagaStepOutcome:
        return SagaStepOutcome(
            integration_id=conn.integration_id,
            kind=conn.kind,
            name=conn.name,
            status=StepStatus.FAILED,
            error=_reason(exc),
        )

    async def _compensate(
        self, steps: list[SagaStepOutcome], compensations: list[_Compensation]
    ) -> tuple[list[SagaStepOutcome], bool]:
        """Run the registered compensations in reverse order; returns the updated steps."""
        any_failed = False
        for compensation in reversed(compensations):
            request = compensation.request
            conn = request.connection
            what = (
                "restore previous values"
                if request.action is CompensationAction.RESTORE
                else "delete the created record"
            )
            self._step(f"{_label(conn)}: undo ({what}); {RETRIES_NOTE}")
            try:
                await workflow.execute_activity_method(
                    CrmActivities.compensate_crm_record,
                    request,
                    start_to_close_timeout=CRM_CALL_TIMEOUT,
                    schedule_to_close_timeout=COMPENSATION_DEADLINE,
                    retry_policy=COMPENSATION_RETRY,
                    summary=f"compensate {_label(conn)}: {what}",
                )
                new_status = StepStatus.COMPENSATED
                error: str | None = None
                self._done_steps.append(f"{_label(conn)}: undone ({what})")
            except ActivityError as exc:
                any_failed = True
                new_status = StepStatus.COMPENSATION_FAILED
                error = _reason(exc)
                self._done_steps.append(f"{_label(conn)}: undo failed ({_kind_of_failure(exc)})")
            step = steps[compensation.step]
            if step.status is StepStatus.FAILED:
                # the failing step keeps its own error; a failed undo is appended to it
                if error:
                    step = step.model_copy(update={"error": f"{step.error}; undo: {error}"})
            else:
                step = step.model_copy(update={"status": new_status, "error": error})
            steps[compensation.step] = step
        return steps, any_failed

    async def _add_notes(
        self,
        lead: LeadSnapshot,
        connections: tuple[CrmConnectionView, ...],
        steps: list[SagaStepOutcome],
    ) -> None:
        """The conversation summary as a note on each CRM written; never fails the sync."""
        if not lead.summary:
            return
        by_id = {c.integration_id: c for c in connections}
        for step in steps:
            if step.status is not StepStatus.SUCCEEDED or step.remote_id is None:
                continue
            conn = by_id[step.integration_id]
            key = idempotency_key(lead.tenant_id, lead.lead_id, lead.version, conn.integration_id)
            self._step(f"{_label(conn)}: add the conversation summary as a note")
            try:
                await workflow.execute_activity_method(
                    CrmActivities.add_crm_note,
                    CrmNoteInput(
                        connection=conn,
                        lead=lead,
                        remote_id=step.remote_id,
                        text=lead.summary,
                        idempotency_key=f"{key}:note",
                    ),
                    start_to_close_timeout=CRM_CALL_TIMEOUT,
                    retry_policy=NOTE_RETRY,
                    summary=f"note on {_label(conn)}: conversation summary",
                )
            except ActivityError as exc:
                workflow.logger.warning("note on %s failed: %s", _label(conn), _reason(exc))


@workflow.defn(name=CRM_CONNECTION_TEST_WORKFLOW)
class CrmConnectionTestWorkflow:
    """Runs the connection check on a CRM worker, where adapters and credentials live."""

    @workflow.run
    async def run(self, input: ConnectionCheckInput) -> ConnectionCheckResult:
        return await workflow.execute_activity_method(
            CrmActivities.check_crm_connection,
            input,
            start_to_close_timeout=CONNECTION_TEST_TIMEOUT,
            retry_policy=CONNECTION_TEST_RETRY,
            summary=f"test connection {input.integration_id}",
        )
