"""MailboxReaderWorkflow's decisions on the time-skipping server, with a stub activity under the
real activity name (samples-python's pattern; the activity has its own tests against Dovecot):
the cursor carried from look to look, IDLE versus polling, a refused login waiting for new
settings, an unreachable server backing off, new settings and a stop interrupting a look, and
continue-as-new carrying cursor and counts."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.mailbox import ERROR_LOGIN_REFUSED, ERROR_UNAVAILABLE
from models.mailbox import (
    QUERY_STATUS,
    SIGNAL_SETTINGS_CHANGED,
    SIGNAL_STOP,
    MailboxCounts,
    MailboxCursor,
    MailboxReaderInput,
    MailboxStatus,
    ReaderState,
    ReadMailboxInput,
    ReadMailboxResult,
    SettingsChanged,
    StopReader,
    mailbox_workflow_id,
)
from workflows.mailbox import IDLE_SECONDS, MailboxReaderWorkflow

pytestmark = pytest.mark.timeout(180)

T0 = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)


def cursor(last_uid: int, uidvalidity: int = 7) -> MailboxCursor:
    return MailboxCursor(mailbox="m1", uidvalidity=uidvalidity, last_uid=last_uid, synced_at=T0)


def looked(last_uid: int, *, idle: bool = True, poll: int = 60, **counts: int) -> ReadMailboxResult:
    return ReadMailboxResult(
        configured=True,
        cursor=cursor(last_uid),
        counts=MailboxCounts(**counts),
        idle_supported=idle,
        poll_seconds=poll,
    )


GONE = ReadMailboxResult(configured=False)
Step = Callable[[ReadMailboxInput], ReadMailboxResult]


class Stub:
    """`read_mailbox` answering the scripted steps in order (a step may raise or block until
    cancelled); records every call's input and attempt."""

    def __init__(self, *steps: Step | ReadMailboxResult | str) -> None:
        self.steps = list(steps)
        self.calls: list[tuple[ReadMailboxInput, int]] = []
        self.started = asyncio.Event()

    def activity(self) -> Callable[..., Any]:
        @activity.defn(name="read_mailbox")
        async def read_mailbox(input: ReadMailboxInput) -> ReadMailboxResult:
            self.calls.append((input, activity.info().attempt))
            self.started.set()
            step = self.steps.pop(0) if self.steps else GONE
            if step == "block":  # an IDLE that waits until the workflow cancels it
                while True:
                    activity.heartbeat()
                    await asyncio.sleep(0.2)
            if isinstance(step, ReadMailboxResult):
                return step
            assert callable(step)
            return step(input)

        return read_mailbox

    @property
    def cursors(self) -> list[int | None]:
        return [c.cursor.last_uid if c.cursor else None for c, _ in self.calls]


def fail(kind: str, message: str, *, retryable: bool) -> Step:
    def step(_: ReadMailboxInput) -> ReadMailboxResult:
        raise ApplicationError(message, type=kind, non_retryable=not retryable)

    return step


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    yield environment
    await environment.shutdown()


class Run:
    def __init__(self, env: WorkflowEnvironment, stub: Stub) -> None:
        self.env = env
        self.stub = stub
        self.queue = f"tq-{uuid.uuid4().hex[:8]}"
        self.tenant = f"t-{uuid.uuid4().hex[:6]}"

    def worker(self) -> Worker:
        return Worker(
            self.env.client,
            task_queue=self.queue,
            workflows=[MailboxReaderWorkflow],
            activities=[self.stub.activity()],
        )

    async def start(self, **input: Any) -> WorkflowHandle[Any, MailboxStatus]:
        return await self.env.client.start_workflow(
            MailboxReaderWorkflow.run,
            MailboxReaderInput(tenant_id=self.tenant, since=T0, **input),
            id=mailbox_workflow_id(self.tenant),
            task_queue=self.queue,
        )

    async def status(self, handle: WorkflowHandle[Any, Any]) -> MailboxStatus:
        status: MailboxStatus = await handle.query(QUERY_STATUS, result_type=MailboxStatus)
        return status

    async def until(
        self, handle: WorkflowHandle[Any, Any], check: Callable[[MailboxStatus], bool]
    ) -> MailboxStatus:
        for _ in range(300):
            status = await self.status(handle)
            if check(status):
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"status never matched: {status}")


async def events(handle: WorkflowHandle[Any, Any], kind: int) -> list[HistoryEvent]:
    history = await handle.fetch_history()
    return [e for e in history.events if e.event_type == kind]


async def test_the_cursor_goes_from_look_to_look_and_idle_needs_no_timer(
    env: WorkflowEnvironment,
) -> None:
    stub = Stub(
        ReadMailboxResult(configured=True, cursor=cursor(10), idle_supported=True, resynced=True),
        looked(12, read=2, routed=1, ignored=1),
        looked(12),  # an IDLE that ended with nothing new
        looked(13, read=1, routed=1),
        GONE,  # the imap settings were removed
    )
    run = Run(env, stub)
    async with run.worker():
        handle = await run.start()
        result = await handle.result()
    assert stub.cursors == [None, 10, 12, 12, 13]
    assert all(c.since == T0 for c, _ in stub.calls)
    # The first look learns whether the server has IDLE; every look may wait there.
    assert [c.wait_seconds for c, _ in stub.calls] == [IDLE_SECONDS] * 5
    assert result.state == ReaderState.STOPPED and result.cursor == cursor(13)
    assert result.counts == MailboxCounts(read=3, routed=2, ignored=1)
    assert result.idle_supported is True and result.resyncs == 1
    # IDLE waits inside the activity: the workflow itself never slept.
    assert await events(handle, EventType.EVENT_TYPE_TIMER_STARTED) == []


async def test_without_idle_the_reader_polls_every_poll_seconds(env: WorkflowEnvironment) -> None:
    stub = Stub(
        looked(5, idle=False, poll=45),
        looked(5, idle=False, poll=45),
        looked(6, idle=False, poll=45, read=1, routed=1),
        looked(6, idle=False, poll=45),
        GONE,
    )
    run = Run(env, stub)
    async with run.worker():
        handle = await run.start(cursor=cursor(5))
        result = await handle.result()
    # Once the server said it has no IDLE, no look asks to wait there.
    assert [c.wait_seconds for c, _ in stub.calls] == [IDLE_SECONDS, 0, 0, 0, 0]
    timers = await events(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    # A sleep after each look that found nothing; none after the one that read a mail.
    assert [t.timer_started_event_attributes.start_to_fire_timeout.seconds for t in timers] == [
        45,
        45,
        45,
    ]
    assert result.counts.routed == 1 and result.idle_supported is False


async def test_a_refused_login_waits_for_new_settings_not_a_retry_loop(
    env: WorkflowEnvironment,
) -> None:
    stub = Stub(
        fail(ERROR_LOGIN_REFUSED, "login refused: NO [AUTHENTICATIONFAILED]", retryable=False),
        looked(3),
        GONE,
    )
    run = Run(env, stub)
    async with run.worker():
        handle = await run.start(cursor=cursor(3))
        status = await run.until(handle, lambda s: s.state == ReaderState.LOGIN_REFUSED)
        assert status.connected is False and "AUTHENTICATIONFAILED" in (status.last_error or "")
        # Queried again: still one attempt (non-retryable), the reader waits.
        status = await run.status(handle)
        assert status.state == ReaderState.LOGIN_REFUSED and len(stub.calls) == 1
        await handle.signal(SIGNAL_SETTINGS_CHANGED, SettingsChanged())
        result = await handle.result()
    assert [attempt for _, attempt in stub.calls] == [1, 1, 1]
    assert result.state == ReaderState.STOPPED
    # Woken by the signal, not by the hour-long timer.
    fired = await events(handle, EventType.EVENT_TYPE_TIMER_FIRED)
    assert fired == []


async def test_a_refused_login_is_tried_again_after_an_hour_without_new_settings(
    env: WorkflowEnvironment,
) -> None:
    stub = Stub(fail(ERROR_LOGIN_REFUSED, "login refused: NO", retryable=False), GONE)
    run = Run(env, stub)
    async with run.worker():
        handle = await run.start(cursor=cursor(3))
        await handle.result()
    timers = await events(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    assert [t.timer_started_event_attributes.start_to_fire_timeout.seconds for t in timers] == [
        3600
    ]
    assert len(stub.calls) == 2


async def test_an_unreachable_server_is_retried_then_backed_off(env: WorkflowEnvironment) -> None:
    down = fail(ERROR_UNAVAILABLE, "cannot connect to imap.example:993: refused", retryable=True)
    stub = Stub(down, down, down, down, down, down, looked(9), GONE)
    run = Run(env, stub)
    async with run.worker():
        handle = await run.start(cursor=cursor(9))
        status = await run.until(handle, lambda s: s.state == ReaderState.UNREACHABLE)
        assert "refused" in (status.last_error or "") and not status.connected
        result = await handle.result()
    # Three quick attempts per look (the activity's retry policy), then the workflow's backoff.
    assert [attempt for _, attempt in stub.calls] == [1, 2, 3, 1, 2, 3, 1, 1]
    timers = await events(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    assert [t.timer_started_event_attributes.start_to_fire_timeout.seconds for t in timers] == [
        30,
        60,
    ]
    assert result.connected is False  # stopped
    assert result.last_error is not None and result.last_checked_at is not None


@pytest.fixture
async def own_env() -> AsyncIterator[WorkflowEnvironment]:
    """A server of its own for a test that leaves a cancelled activity behind: the shared
    server would not skip time for the later tests' timers while it lingers."""
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    yield environment
    await environment.shutdown()


async def test_new_settings_interrupt_an_idle_look_and_a_stop_ends_the_reader(
    own_env: WorkflowEnvironment,
) -> None:
    env = own_env
    stub = Stub("block", looked(4), "block")
    run = Run(env, stub)
    async with run.worker():
        handle = await run.start(cursor=cursor(4))
        await asyncio.wait_for(stub.started.wait(), 60)
        await handle.signal(SIGNAL_SETTINGS_CHANGED, SettingsChanged())
        await run.until(handle, lambda s: s.last_checked_at is not None)  # the second look
        await run.until(handle, lambda _: len(stub.calls) == 3)  # idling again
        await handle.signal(SIGNAL_STOP, StopReader(reason="imap settings removed"))
        result = await handle.result()
    assert result.state == ReaderState.STOPPED and stub.cursors == [4, 4, 4]
    cancels = await events(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED)
    assert len(cancels) == 2


async def test_continue_as_new_carries_cursor_and_counts(env: WorkflowEnvironment) -> None:
    stub = Stub(
        looked(21, read=1, routed=1),
        looked(22, read=1, ignored=1),
        looked(22),
        looked(23, read=1, routed=1),
        GONE,
    )
    run = Run(env, stub)
    async with run.worker():
        handle = await run.start(cursor=cursor(20), looks_per_run=3)
        result = await handle.result()
        first = env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    assert stub.cursors == [20, 21, 22, 22, 23]
    assert result.run == 2 and result.cursor == cursor(23)
    assert result.counts == MailboxCounts(read=3, routed=2, ignored=1)
    # The first run ended in continue-as-new with the cursor it had.
    assert await events(first, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)


async def test_settings_saved_after_a_stop_keep_the_reader(env: WorkflowEnvironment) -> None:
    """A mailbox removed and added again before the reader saw the stop: the latest wins."""
    stub = Stub(GONE)
    run = Run(env, stub)
    handle = await run.start(cursor=cursor(1))  # no worker yet: both signals wait for it
    await handle.signal(SIGNAL_STOP, StopReader(reason="imap settings removed"))
    await handle.signal(SIGNAL_SETTINGS_CHANGED, SettingsChanged())
    async with run.worker():
        result = await handle.result()
    # It looked (the stub answered that the settings are gone now), instead of stopping unseen.
    assert len(stub.calls) == 1 and result.state == ReaderState.STOPPED


async def test_a_stop_after_new_settings_stops_before_looking(env: WorkflowEnvironment) -> None:
    stub = Stub(looked(1))
    run = Run(env, stub)
    handle = await run.start(cursor=cursor(1))
    await handle.signal(SIGNAL_SETTINGS_CHANGED, SettingsChanged())
    await handle.signal(SIGNAL_STOP, StopReader(reason="imap settings removed"))
    async with run.worker():
        result = await handle.result()
    assert stub.calls == [] and result.state == ReaderState.STOPPED


async def test_a_new_run_after_a_refused_login_tries_once_and_shows_the_refusal(
    env: WorkflowEnvironment,
) -> None:
    refused = fail(ERROR_LOGIN_REFUSED, "login refused: NO", retryable=False)
    stub = Stub(refused, refused, GONE)
    run = Run(env, stub)
    async with run.worker():
        handle = await run.start(cursor=cursor(2), looks_per_run=1)
        result = await handle.result()
    # Run 1: refused, waited its hour; run 2 (continue-as-new) tried again, refused, waited;
    # run 3 found the settings gone. The cursor and the refusal went along.
    assert [c.cursor for c, _ in stub.calls] == [cursor(2)] * 3
    assert result.run == 3 and result.last_error == "login refused: NO"
