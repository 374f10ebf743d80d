"""CampaignWorkflow's logic on Temporal's time-skipping test server, with stub activities
registered under the real activity names: the pace, the send window, pause/resume/cancel and
approval as Updates, skips, continue-as-new. Times are the server's (skipped) time: the stubs
record when each send was scheduled."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models.campaigns import (
    CAMPAIGN_CONTROL_REFUSED,
    QUERY_PROGRESS,
    UPDATE_APPROVE,
    UPDATE_CANCEL,
    UPDATE_PAUSE,
    UPDATE_RESUME,
    CampaignControl,
    CampaignControlResult,
    CampaignInput,
    CampaignProgress,
    CampaignStatus,
    CampaignStatusUpdate,
    RecipientStatus,
    SendStepInput,
    SendStepResult,
    SendWindow,
    SkipReason,
)
from workflows.campaign import CampaignWorkflow


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    yield environment
    await environment.shutdown()


@dataclass
class Stubs:
    """The activities, by their real names: what was sent when, which statuses were written."""

    skip: dict[int, SkipReason] = field(default_factory=dict)
    sends: list[tuple[int, datetime]] = field(default_factory=list)
    outcomes: dict[int, RecipientStatus] = field(default_factory=dict)
    statuses: list[CampaignStatus] = field(default_factory=list)

    @activity.defn(name="send_campaign_step")
    async def send_campaign_step(self, input: SendStepInput) -> SendStepResult:
        # Idempotent like the real one: a position done before answers its outcome.
        reason = self.skip.get(input.position)
        if reason is not None:
            self.outcomes[input.position] = RecipientStatus.SKIPPED
            return SendStepResult(
                position=input.position, status=RecipientStatus.SKIPPED, reason=reason
            )
        if input.position not in self.outcomes:
            self.sends.append((input.position, activity.info().scheduled_time))
            self.outcomes[input.position] = RecipientStatus.SENT
        return SendStepResult(
            position=input.position, status=RecipientStatus.SENT, conversation_id="c"
        )

    @activity.defn(name="set_campaign_status")
    async def set_campaign_status(self, input: CampaignStatusUpdate) -> None:
        self.statuses.append(input.status)


@pytest.fixture
async def stubs(env: WorkflowEnvironment) -> AsyncIterator[tuple[Stubs, str]]:
    stubs = Stubs()
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[CampaignWorkflow],
        activities=[stubs.send_campaign_step, stubs.set_campaign_status],
    ):
        yield stubs, queue


async def _start(
    env: WorkflowEnvironment, queue: str, **kw: object
) -> WorkflowHandle[CampaignWorkflow, CampaignProgress]:
    values: dict[str, object] = {
        "tenant_id": "t1",
        "campaign_id": uuid.uuid4().hex[:8],
        "total": 3,
        "rate_per_hour": 60,
    }
    values.update(kw)
    campaign = CampaignInput.model_validate(values)
    return await env.client.start_workflow(
        CampaignWorkflow.run,
        campaign,
        id=f"campaign:t1:{campaign.campaign_id}",
        task_queue=queue,
    )


async def _progress(handle: WorkflowHandle[CampaignWorkflow, CampaignProgress]) -> CampaignProgress:
    progress: CampaignProgress = await handle.query(QUERY_PROGRESS, result_type=CampaignProgress)
    return progress


async def _control(
    handle: WorkflowHandle[CampaignWorkflow, CampaignProgress], update: str, key: str | None = None
) -> CampaignStatus:
    result: CampaignControlResult = await handle.execute_update(
        update, CampaignControl(), id=key or uuid.uuid4().hex, result_type=CampaignControlResult
    )
    return result.status


async def _cancel(
    handle: WorkflowHandle[CampaignWorkflow, CampaignProgress],
) -> CampaignStatus | None:
    """Cancel; None when the time-skipping server lost the answer: a cancel's update completes
    in the workflow task that ends the run, and this server then sometimes answers the
    caller's poll with "update not found" (the real dev server answers it: the API tests check
    the cancel's answer there). The run's result says what happened either way."""
    try:
        return await _control(handle, UPDATE_CANCEL)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return None


def _gaps(sends: list[tuple[int, datetime]]) -> list[float]:
    times = [at for _, at in sends]
    return [(b - a).total_seconds() for a, b in pairwise(times)]


async def test_messages_go_out_at_the_pace_and_skips_do_not_slow_it(
    env: WorkflowEnvironment, stubs: tuple[Stubs, str]
) -> None:
    fake, queue = stubs
    fake.skip = {2: SkipReason.DO_NOT_CONTACT}
    handle = await _start(env, queue, total=4, rate_per_hour=60)
    result = await handle.result()
    assert result.status == CampaignStatus.COMPLETED
    assert (result.sent, result.skipped) == (3, 1)
    assert [p for p, _ in fake.sends] == [1, 3, 4]
    # one a minute: the skipped recipient took no slot of its own
    assert all(60 <= gap < 61 for gap in _gaps(fake.sends)), _gaps(fake.sends)
    assert fake.statuses == [CampaignStatus.COMPLETED]


async def test_messages_go_out_only_inside_the_send_window(
    env: WorkflowEnvironment, stubs: tuple[Stubs, str]
) -> None:
    fake, queue = stubs
    zone = ZoneInfo("Europe/Amsterdam")
    window = SendWindow(start=time(9, 0), end=time(10, 0), timezone="Europe/Amsterdam")
    # two an hour: two fit in each morning's hour, the rest waits for the next morning
    handle = await _start(env, queue, total=5, rate_per_hour=2, quiet_hours=window.as_quiet_hours())
    await handle.result()
    local = [at.astimezone(zone) for _, at in fake.sends]
    assert len(local) == 5
    assert all(time(9, 0) <= at.time() < time(10, 0) for at in local), local
    days = sorted({at.date() for at in local})
    assert len(days) == 3 and [at.date() for at in local].count(days[0]) <= 2


async def test_pause_resume_and_cancel_are_updates_answered_with_the_state(
    env: WorkflowEnvironment, stubs: tuple[Stubs, str]
) -> None:
    fake, queue = stubs
    handle = await _start(env, queue, total=10, rate_per_hour=1)  # one an hour
    assert await _control(handle, UPDATE_PAUSE, key="pause-1") == CampaignStatus.PAUSED
    # the same key again is the same command: answered, not refused
    assert await _control(handle, UPDATE_PAUSE, key="pause-1") == CampaignStatus.PAUSED
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await _control(handle, UPDATE_PAUSE)
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == CAMPAIGN_CONTROL_REFUSED
    assert refused.value.cause.message == "campaign is already paused"
    paused = await _progress(handle)
    await env.sleep(timedelta(hours=5))  # skipped time: a running campaign would send 5
    after = await _progress(handle)
    assert after.status == CampaignStatus.PAUSED and after.next_send_at is None
    assert after.sent == paused.sent and len(fake.sends) == paused.sent

    assert await _control(handle, UPDATE_RESUME) == CampaignStatus.RUNNING
    with pytest.raises(WorkflowUpdateFailedError) as not_paused:
        await _control(handle, UPDATE_RESUME)
    assert isinstance(not_paused.value.cause, ApplicationError)
    assert "not paused" in not_paused.value.cause.message
    await env.sleep(timedelta(hours=2, minutes=1))
    assert (await _progress(handle)).sent >= paused.sent + 2

    assert await _cancel(handle) in (CampaignStatus.CANCELLED, None)
    result = await handle.result()
    assert result.status == CampaignStatus.CANCELLED
    assert result.sent < 10 and len(fake.sends) == result.sent
    assert fake.statuses == [
        CampaignStatus.PAUSED,
        CampaignStatus.RUNNING,
        CampaignStatus.CANCELLED,
    ]


async def test_a_held_campaign_sends_nothing_until_approved(
    env: WorkflowEnvironment, stubs: tuple[Stubs, str]
) -> None:
    fake, queue = stubs
    handle = await _start(env, queue, total=2, awaiting_approval=True)
    await env.sleep(timedelta(days=1))
    held = await _progress(handle)
    assert held.status == CampaignStatus.AWAITING_APPROVAL and held.sent == 0
    assert fake.sends == []
    with pytest.raises(WorkflowUpdateFailedError):
        await _control(handle, UPDATE_PAUSE)  # not started yet: approve or cancel it
    assert await _control(handle, UPDATE_APPROVE) == CampaignStatus.RUNNING
    result = await handle.result()
    assert result.sent == 2 and fake.statuses[0] == CampaignStatus.RUNNING


async def test_a_long_list_continues_as_new_and_sends_each_recipient_once(
    env: WorkflowEnvironment, stubs: tuple[Stubs, str]
) -> None:
    fake, queue = stubs
    fake.skip = {4: SkipReason.BOUNCED}
    handle = await _start(env, queue, total=7, rate_per_hour=120, recipients_per_run=2)
    result = await handle.result()
    assert result.run == 4  # 2 + 2 + 2 + 1
    assert (result.sent, result.skipped) == (6, 1)
    assert [p for p, _ in fake.sends] == [1, 2, 3, 5, 6, 7]
    # the pace holds across runs (the last send time is carried)
    assert all(30 <= gap < 31 for gap in _gaps(fake.sends[:3])), _gaps(fake.sends)


async def test_a_cancelled_campaign_refuses_further_commands(
    env: WorkflowEnvironment, stubs: tuple[Stubs, str]
) -> None:
    _, queue = stubs
    handle = await _start(env, queue, total=3, rate_per_hour=1, awaiting_approval=True)
    assert await _cancel(handle) in (CampaignStatus.CANCELLED, None)
    result = await handle.result()
    assert result.status == CampaignStatus.CANCELLED and result.sent == 0
    # The workflow has ended: Temporal refuses the update (the API then answers 409 with the
    # status the workflow wrote last).
    with pytest.raises(RPCError) as ended:
        await _control(handle, UPDATE_RESUME)
    assert ended.value.status == RPCStatusCode.NOT_FOUND
