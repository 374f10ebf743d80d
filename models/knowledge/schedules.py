"""One Temporal Schedule per inventory source: it starts InventoryIngestionWorkflow every
`every_minutes` on the enrichment task queue (fetching pages and feeds is web work).

Overlap is SKIP: a fetch still running when the next is due makes that one skipped, so a slow
dealer site never piles runs up; after an outage at most one missed run is caught up. The
workflow is started by name (the API does not import workflow code) with the source's ids
only: each run reads the source's row, so an edited URL or mapping applies from the next run.

Everything here takes the Temporal client and raises the SDK's errors (`RPCError`, ...):
callers say what an unavailable Temporal means for them (the API answers 503)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowHandle,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes
from models.knowledge.ingestion import (
    WORKFLOW_NAME,
    IngestSourceInput,
    ingestion_workflow_id,
    source_schedule_id,
    source_schedule_prefix,
)
from models.task_queues import ENRICHMENT

NEXT_TIMES_SHOWN = 3
RECENT_SHOWN = 5


class ScheduledRun(BaseModel):
    model_config = ConfigDict(frozen=True)

    workflow_id: str
    scheduled_at: datetime | None = None
    started_at: datetime | None = None


class ScheduleView(BaseModel):
    """A source's schedule as the API shows it (`exists` False: Temporal has none for it)."""

    model_config = ConfigDict(frozen=True)

    schedule_id: str
    exists: bool = True
    paused: bool = False
    note: str = ""
    every_minutes: int | None = None
    next_runs: tuple[datetime, ...] = ()
    recent_runs: tuple[ScheduledRun, ...] = Field(default=(), description="Newest first.")
    running: tuple[str, ...] = Field(default=(), description="Workflow ids of runs going.")


class RunAlreadyGoing(Exception):
    """Run-now while a run of the source is going (started by the schedule or by hand)."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"a run of this source is going: {workflow_id}")
        self.workflow_id = workflow_id


def _action(
    tenant_id: str, source_id: str, name: str, *, workflow_id: str
) -> ScheduleActionStartWorkflow:
    return ScheduleActionStartWorkflow(
        WORKFLOW_NAME,
        IngestSourceInput(tenant_id=tenant_id, source_id=source_id),
        id=workflow_id,
        task_queue=ENRICHMENT,
        typed_search_attributes=_attributes(tenant_id),
        static_summary=_summary(source_id, name),
    )


def _summary(source_id: str, name: str) -> str:
    return f"Inventory source {name} ({source_id})"


def _attributes(tenant_id: str) -> TypedSearchAttributes:
    # Runs are found by tenant in the UI, and tenant deletion finds them by it too.
    return TypedSearchAttributes([SearchAttributePair(search_attributes.TENANT, tenant_id)])


def _schedule(
    *,
    tenant_id: str,
    source_id: str,
    name: str,
    every_minutes: int,
    paused: bool,
    note: str | None,
) -> Schedule:
    every = timedelta(minutes=every_minutes)
    return Schedule(
        # The schedule appends the run's time to this id: `ingest-source:{tenant}:{id}-<time>`.
        action=_action(
            tenant_id, source_id, name, workflow_id=ingestion_workflow_id(tenant_id, source_id)
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=max(every, timedelta(minutes=1)),
            pause_on_failure=False,  # a dealer site down for an hour is retried, not abandoned
        ),
        state=ScheduleState(paused=paused, note=note or ""),
    )


async def ensure_source_schedule(
    client: Client,
    *,
    tenant_id: str,
    source_id: str,
    name: str,
    every_minutes: int,
    paused: bool,
    note: str | None = None,
) -> None:
    """Create the source's schedule, or bring an existing one to these settings (its pause
    note is kept unless the pause state changes or a note is given)."""
    schedule = _schedule(
        tenant_id=tenant_id,
        source_id=source_id,
        name=name,
        every_minutes=every_minutes,
        paused=paused,
        note=note,
    )
    schedule_id = source_schedule_id(tenant_id, source_id)
    try:
        await client.create_schedule(schedule_id, schedule)
        return
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        state = current.description.schedule.state
        if note is None and state.paused == paused:
            schedule.state.note = state.note
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(schedule_id).update(update)


async def pause_source_schedule(
    client: Client, *, tenant_id: str, source_id: str, note: str | None = None
) -> None:
    await client.get_schedule_handle(source_schedule_id(tenant_id, source_id)).pause(
        note=note or "paused through the API"
    )


async def unpause_source_schedule(
    client: Client, *, tenant_id: str, source_id: str, note: str | None = None
) -> None:
    await client.get_schedule_handle(source_schedule_id(tenant_id, source_id)).unpause(
        note=note or "unpaused through the API"
    )


async def describe_source_schedule(
    client: Client, *, tenant_id: str, source_id: str
) -> ScheduleView:
    schedule_id = source_schedule_id(tenant_id, source_id)
    try:
        description = await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return ScheduleView(schedule_id=schedule_id, exists=False)
        raise
    schedule, info = description.schedule, description.info
    recent: list[tuple[str, datetime, datetime]] = []
    for result in info.recent_actions:
        action = result.action
        if isinstance(action, ScheduleActionExecutionStartWorkflow):
            recent.append((action.workflow_id, result.scheduled_at, result.started_at))
    intervals = schedule.spec.intervals
    return ScheduleView(
        schedule_id=schedule_id,
        paused=schedule.state.paused,
        note=schedule.state.note or "",
        every_minutes=int(intervals[0].every.total_seconds() // 60) if intervals else None,
        next_runs=tuple(info.next_action_times[:NEXT_TIMES_SHOWN]),
        recent_runs=tuple(
            ScheduledRun(workflow_id=workflow_id, scheduled_at=at, started_at=started)
            for workflow_id, at, started in reversed(recent[-RECENT_SHOWN:])
        ),
        running=tuple(
            run.workflow_id
            for run in info.running_actions
            if isinstance(run, ScheduleActionExecutionStartWorkflow)
        ),
    )


async def run_source_now(
    client: Client, *, tenant_id: str, source_id: str, name: str
) -> WorkflowHandle[Any, Any]:
    """Start a run at once (`ingest-source:{tenant}:{id}`); RunAlreadyGoing when the schedule
    has one running or a run started by hand is still going.

    Started directly rather than through the schedule's trigger, so the caller gets the run's
    id. A scheduled run due in the same instant could still overlap it: both apply the same
    document, and the second finds nothing changed."""
    view = await describe_source_schedule(client, tenant_id=tenant_id, source_id=source_id)
    if view.running:
        raise RunAlreadyGoing(view.running[0])
    workflow_id = ingestion_workflow_id(tenant_id, source_id)
    try:
        return await client.start_workflow(
            WORKFLOW_NAME,
            arg=IngestSourceInput(tenant_id=tenant_id, source_id=source_id),
            id=workflow_id,
            task_queue=ENRICHMENT,
            search_attributes=_attributes(tenant_id),
            static_summary=_summary(source_id, name),
        )
    except WorkflowAlreadyStartedError as exc:
        raise RunAlreadyGoing(workflow_id) from exc


async def delete_source_schedule(client: Client, *, tenant_id: str, source_id: str) -> bool:
    """Delete the schedule (a run going finishes); False when there was none."""
    try:
        await client.get_schedule_handle(source_schedule_id(tenant_id, source_id)).delete()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def end_source_runs(client: Client, *, tenant_id: str, source_id: str) -> int:
    """Terminate the source's runs still going (by hand or scheduled): called when the source
    is deleted, so no run goes on fetching for it. Returns how many were terminated. A run whose
    activity is already applying items checks the source afterwards (activities/ingestion.py)."""
    manual = ingestion_workflow_id(tenant_id, source_id)
    ids = {manual}
    query = f"WorkflowId STARTS_WITH '{manual}' AND ExecutionStatus = 'Running'"
    with contextlib.suppress(RPCError):
        async for execution in client.list_workflows(query):
            ids.add(execution.id)
    ended = 0
    for workflow_id in sorted(ids):
        with contextlib.suppress(RPCError):  # not running, or gone
            await client.get_workflow_handle(workflow_id).terminate("inventory source deleted")
            ended += 1
    return ended


async def delete_tenant_schedules(
    client: Client, *, tenant_id: str, source_ids: Iterable[str] = ()
) -> int:
    """Delete every source schedule of the tenant: those of `source_ids` (its rows), and those
    listed with its id prefix (the listing lags behind a creation, but also finds schedules
    whose row is gone, e.g. after a deletion that crashed halfway). Returns how many."""
    prefix = source_schedule_prefix(tenant_id)
    ids = dict.fromkeys(source_schedule_id(tenant_id, s) for s in source_ids)
    with contextlib.suppress(RPCError):
        async for entry in await client.list_schedules():
            if entry.id.startswith(prefix):
                ids[entry.id] = None
    deleted = 0
    for schedule_id in ids:
        with contextlib.suppress(RPCError):  # NOT_FOUND: deleted already
            await client.get_schedule_handle(schedule_id).delete()
            deleted += 1
    return deleted
