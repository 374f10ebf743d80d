"""Operator commands as Updates, fast: the time-skipping test server with stub activities under
the real activity names (as tests/workflows/test_conversation_policy.py). Validators refuse with
a reason and write nothing; a handoff or close that arrives while a turn runs stops the AI before
it sends; retries with the same update id act once, also after continue-as-new."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models.agent import Perception
from models.common import Channel, Intent, Role, Stage
from models.conversation import (
    COMMAND_REFUSED,
    UPDATE_CLOSE,
    UPDATE_HANDOFF,
    UPDATE_OPERATOR_MESSAGE,
    UPDATE_RELEASE,
    CloseRequest,
    CommandResult,
    ConversationInput,
    ConversationSnapshot,
    HandoffRequest,
    HandoffState,
    OperatorMessage,
    PreparedTurn,
    PrepareTurnInput,
    ReleaseRequest,
    ResumeState,
    TurnContext,
    TurnContextInput,
)
from models.messages import InboundMessage
from models.policy import ConversationPolicy, PlaybookRef
from models.tenant import Specialist
from tests.workflows.test_conversation_policy import POLICY, Stubs
from workers.worker import workflow_runner
from workflows.conversation import ConversationWorkflow

CONTACT = "31600000000@c.us"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    yield environment
    await environment.shutdown()


@dataclass
class Scripted(Stubs):
    """The policy test's stubs, plus: a gate that holds `prepare_turn` while the test sends a
    command ("the turn is running"), a database-like memory of do-not-contact (a record with
    `do_not_contact=True` marks the lead for every later context) and a resumable history."""

    gate: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    resume: ResumeState | None = None
    policy: ConversationPolicy = POLICY

    def context_for(self, request: TurnContextInput) -> TurnContext:
        changed = request.policy_hash != self.policy.playbook_hash
        marked = self.do_not_contact or any(r.do_not_contact for r in self.recorded)
        return TurnContext(
            playbook=PlaybookRef(tenant_id=request.tenant_id, hash=self.policy.playbook_hash),
            policy=self.policy if changed else None,
            specialists=(Specialist(name="Mia", role="manager", email="mia@example.com"),),
            do_not_contact=marked,
            resume=self.resume if request.resume else None,
        )

    def activities(self) -> list[Callable[..., object]]:
        base = super().activities()
        original = next(a for a in base if getattr(a, "__name__", "") == "prepare_turn")

        @activity.defn(name="prepare_turn")
        async def prepare_turn(request: PrepareTurnInput) -> PreparedTurn:
            self.entered.set()
            if self.gate is not None:
                await self.gate.wait()
            prepared: PreparedTurn = await original(request)  # type: ignore[misc]
            return prepared

        return [prepare_turn if a is original else a for a in base]

    def lead_entries(self) -> list[str]:
        return [e.text for r in self.recorded for e in r.entries if e.role == Role.LEAD]


@dataclass
class Conv:
    client: Client
    env: WorkflowEnvironment
    workflow_id: str
    tenant_id: str
    queue: str
    stubs: Scripted
    history_limit: int = 2000
    said: int = 0

    @property
    def handle(self) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(self.workflow_id)

    def message(self, text: str, message_id: str | None = None) -> InboundMessage:
        self.said += 1
        return InboundMessage(
            tenant_id=self.tenant_id,
            channel=Channel.WAHA,
            contact=CONTACT,
            provider_message_id=message_id or f"m{self.said}",
            text=text,
            sent_at=datetime.now(UTC),
        )

    async def say(self, text: str, message_id: str | None = None) -> None:
        await self.handle.signal("inbound", self.message(text, message_id))

    async def start(self, first: InboundMessage | None = None) -> None:
        """A run of this conversation (a new one once the previous ended), as the webhooks
        start it: signal-with-start, at the current version."""
        await self.client.start_workflow(
            ConversationWorkflow.run,
            ConversationInput.new(
                tenant_id=self.tenant_id,
                channel=Channel.WAHA,
                contact=CONTACT,
                debounce_seconds=1,
                history_limit=self.history_limit,
                search_attributes=False,
            ),
            id=self.workflow_id,
            task_queue=self.queue,
            start_signal="inbound" if first else None,
            start_signal_args=[first] if first else [],
        )

    async def state(self) -> ConversationSnapshot:
        return await self.handle.query(ConversationWorkflow.state)

    async def debouncing(self) -> None:
        """Until the run waits out its debounce window (its timer is in the history)."""
        for _ in range(200):
            async for event in self.handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError("the run never started its debounce timer")

    async def command(self, name: str, arg: Any, *, update_id: str | None = None) -> CommandResult:
        result: CommandResult = await self.handle.execute_update(
            name, arg, id=update_id or uuid.uuid4().hex, result_type=CommandResult
        )
        return result

    async def refused(self, name: str, arg: Any) -> str:
        """The validator's reason; asserts that the refusal left no trace in the history."""
        update_id = f"refused-{uuid.uuid4().hex[:8]}"
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await self.handle.execute_update(name, arg, id=update_id, result_type=CommandResult)
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == COMMAND_REFUSED, cause
        history = await self.handle.fetch_history()
        accepted = [
            e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]
        assert update_id not in accepted, "a refused update writes nothing"
        return cause.message

    async def until(self, check: Callable[[], bool], *, what: str, limit: timedelta) -> None:
        waited = timedelta()
        step = timedelta(minutes=30) if limit > timedelta(hours=2) else timedelta(seconds=1)
        while not check():
            if waited > limit:
                raise AssertionError(f"not within {limit}: {what}")
            await self.env.sleep(step)
            waited += step

    async def entered_turn(self) -> None:
        await self.until(
            self.stubs.entered.is_set, what="the turn started", limit=timedelta(minutes=1)
        )


@pytest.fixture
async def conversation(env: WorkflowEnvironment) -> AsyncIterator[Callable[..., Any]]:
    """A factory: a conversation id served by a worker with the given stubs (not started)."""
    made: list[tuple[Worker, Conv]] = []

    async def make(stubs: Scripted, *, history_limit: int = 2000) -> Conv:
        queue = f"tq-{uuid.uuid4().hex[:8]}"
        worker = Worker(
            env.client,
            task_queue=queue,
            workflows=[ConversationWorkflow],
            activities=stubs.activities(),
            workflow_runner=workflow_runner(),
        )
        await worker.__aenter__()
        tenant = f"t-{uuid.uuid4().hex[:6]}"
        conv = Conv(
            client=env.client,
            env=env,
            workflow_id=f"conv:{tenant}:waha:{CONTACT}",
            tenant_id=tenant,
            queue=queue,
            stubs=stubs,
            history_limit=history_limit,
        )
        made.append((worker, conv))
        return conv

    yield make
    for worker, conv in made:
        if conv.stubs.gate is not None:
            conv.stubs.gate.set()
        try:
            await conv.handle.terminate("test over")
        except RPCError:
            pass
        await worker.__aexit__(None, None, None)


def complaint(_: object) -> Perception:
    return Perception(intent=Intent.COMPLAINT, confidence=0.9, language="en")


# ---- validators ------------------------------------------------------------------------------


async def test_each_validator_refuses_with_its_reason_and_writes_nothing(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted()
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Do you have an Audi A4?"))
    await conv.until(lambda: bool(stubs.sent), what="the reply", limit=timedelta(minutes=1))

    assert "not handed to a human" in await conv.refused(UPDATE_RELEASE, ReleaseRequest())
    assert "needs a reason" in await conv.refused(UPDATE_HANDOFF, HandoffRequest(reason="  "))
    assert "needs a reason" in await conv.refused(UPDATE_CLOSE, CloseRequest(reason=""))
    empty = OperatorMessage(text=" \n ", request_id="op-empty")
    assert "empty" in await conv.refused(UPDATE_OPERATOR_MESSAGE, empty)
    long = OperatorMessage(text="x" * 4097, request_id="op-long")
    assert "longer than 4096" in await conv.refused(UPDATE_OPERATOR_MESSAGE, long)

    taken = await conv.command(UPDATE_HANDOFF, HandoffRequest(reason="VIP"))
    assert taken.stage == Stage.HUMAN_HANDOFF and taken.handoff is not None
    assert taken.handoff.reason == "VIP" and taken.handoff.human_replied
    assert "already handed to a human: VIP" in await conv.refused(
        UPDATE_HANDOFF, HandoffRequest(reason="me too")
    )
    released = await conv.command(UPDATE_RELEASE, ReleaseRequest())
    assert released.stage == Stage.QUALIFYING and released.handoff is None
    assert [m.text for m in stubs.sent] == ["AI reply"], "no command sent anything"


async def test_commands_to_a_closing_or_closed_conversation_are_refused(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted(gate=asyncio.Event())
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Do you have an Audi A4?"))
    await conv.entered_turn()
    closing = await conv.handle.start_update(
        UPDATE_CLOSE,
        CloseRequest(reason="sold"),
        id="close-1",
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        result_type=CommandResult,
    )
    message = OperatorMessage(text="Hello?", request_id="op-late")
    assert "closing (sold)" in await conv.refused(UPDATE_OPERATOR_MESSAGE, message)
    assert "closing (sold)" in await conv.refused(UPDATE_HANDOFF, HandoffRequest())
    assert "already closed" in await conv.refused(UPDATE_CLOSE, CloseRequest(reason="again"))
    assert stubs.gate is not None
    stubs.gate.set()
    closed = await closing.result()
    assert closed.stage == Stage.CLOSED and closed.handoff is None
    snapshot = await conv.handle.result()
    assert snapshot["stage"] == Stage.CLOSED.value
    # The run is over: a command finds no running conversation (the API's 404)...
    with pytest.raises(RPCError) as missing:
        await conv.command(UPDATE_HANDOFF, HandoffRequest())
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    # ...while a retry of the close itself gets its result again.
    again = await conv.command(UPDATE_CLOSE, CloseRequest(reason="sold"), update_id="close-1")
    assert again == closed


# ---- mid-turn --------------------------------------------------------------------------------


async def test_a_handoff_while_the_turn_runs_stops_the_reply_and_keeps_the_messages(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted(gate=asyncio.Event())
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Do you have an Audi A4?"))
    await conv.entered_turn()
    taken = await conv.command(UPDATE_HANDOFF, HandoffRequest(reason="Mark takes it"))
    assert taken.stage == Stage.HUMAN_HANDOFF
    assert stubs.gate is not None
    stubs.gate.set()
    await conv.until(
        lambda: stubs.lead_entries() == ["Do you have an Audi A4?"],
        what="the lead's message recorded",
        limit=timedelta(minutes=1),
    )
    state = await conv.state()
    assert stubs.sent == [], "the AI did not talk over the operator"
    assert state.stage == Stage.HUMAN_HANDOFF and state.handoff is not None
    assert state.handoff.reason == "Mark takes it"
    assert state.fields == {"make": "Audi"}, "what was perceived is kept"
    assert all(r.stage == Stage.HUMAN_HANDOFF for r in stubs.recorded)
    # Later messages wait for the human; the operator's message goes out as theirs.
    await conv.say("Hello?")
    await conv.until(
        lambda: "Hello?" in stubs.lead_entries(), what="recorded", limit=timedelta(minutes=1)
    )
    said = await conv.command(
        UPDATE_OPERATOR_MESSAGE, OperatorMessage(text="Mark here!", request_id="op-1")
    )
    assert said.sent is True and said.provider_message_id == "out-1"
    assert [m.text for m in stubs.sent] == ["Mark here!"]


async def test_an_escalation_in_the_turn_never_overwrites_the_operators_handoff(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted(gate=asyncio.Event(), perceive=complaint)
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("The car broke down, I want my money back"))
    await conv.entered_turn()
    await conv.command(UPDATE_HANDOFF, HandoffRequest(reason="the manager calls them"))
    assert stubs.gate is not None
    stubs.gate.set()
    await conv.until(lambda: bool(stubs.recorded), what="the record", limit=timedelta(minutes=1))
    state = await conv.state()
    assert state.handoff is not None
    assert (state.handoff.reason, state.handoff.rule) == ("the manager calls them", None)
    assert stubs.sent == [] and stubs.notified == [] and stubs.written == []
    assert all(r.escalation is None for r in stubs.recorded)


async def test_a_close_while_the_turn_runs_stops_the_reply_and_ends_the_run(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted(gate=asyncio.Event())
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Do you have an Audi A4?"))
    await conv.entered_turn()
    closing = await conv.handle.start_update(
        UPDATE_CLOSE,
        CloseRequest(reason="duplicate lead"),
        id="close-mid",
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        result_type=CommandResult,
    )
    assert stubs.gate is not None
    stubs.gate.set()
    closed = await closing.result()
    assert closed.stage == Stage.CLOSED
    snapshot = await conv.handle.result()
    assert snapshot["stage"] == Stage.CLOSED.value
    assert stubs.sent == []
    assert stubs.lead_entries() == ["Do you have an Audi A4?"]
    assert stubs.recorded[-1].stage == Stage.CLOSED


# ---- operator messages and idempotency --------------------------------------------------------


async def test_an_operator_message_answers_once_sent_and_recorded_and_a_retry_acts_once(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted()
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Do you have an Audi A4?"))
    await conv.until(lambda: bool(stubs.sent), what="the reply", limit=timedelta(minutes=1))
    message = OperatorMessage(text="Mark from the showroom here.", request_id="key-1")
    first = await conv.command(UPDATE_OPERATOR_MESSAGE, message, update_id="message:key-1")
    assert first.sent is True and first.provider_message_id == "out-2"
    operator_record = stubs.recorded[-1]
    assert operator_record.turn_key == "operator:key-1"
    assert [(e.role, e.text) for e in operator_record.entries] == [
        (Role.HUMAN, "Mark from the showroom here.")
    ]
    again = await conv.command(UPDATE_OPERATOR_MESSAGE, message, update_id="message:key-1")
    assert again == first
    assert [m.text for m in stubs.sent] == ["AI reply", "Mark from the showroom here."]


async def test_an_operator_message_the_channel_refuses_says_so(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted()
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Do you have an Audi A4?"))
    await conv.until(lambda: bool(stubs.sent), what="the reply", limit=timedelta(minutes=1))
    stubs.send_refused = True
    result = await conv.command(
        UPDATE_OPERATOR_MESSAGE, OperatorMessage(text="Are you there?", request_id="key-2")
    )
    assert result.sent is False and "rejected" in result.detail
    notes = [e.text for e in stubs.recorded[-1].entries if e.role == Role.SYSTEM]
    assert notes and "Are you there?" in notes[0]


async def test_a_command_retried_after_continue_as_new_answers_the_same_without_acting(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted()
    conv: Conv = await conversation(stubs, history_limit=20)
    await conv.start(conv.message("Do you have an Audi A4?"))
    await conv.until(lambda: bool(stubs.sent), what="the reply", limit=timedelta(minutes=1))
    first_run = (await conv.handle.describe()).run_id
    taken = await conv.command(UPDATE_HANDOFF, HandoffRequest(reason="VIP"), update_id="h-1")
    released = await conv.command(UPDATE_RELEASE, ReleaseRequest(), update_id="r-1")
    await conv.say("And what does it cost?")  # the history passes its limit of 20 events
    await conv.until(lambda: len(stubs.sent) == 2, what="reply 2", limit=timedelta(minutes=1))

    async def new_run() -> bool:
        return (await conv.handle.describe()).run_id != first_run

    for _ in range(60):
        if await new_run():
            break
        await conv.env.sleep(timedelta(seconds=1))
    assert await new_run(), "the conversation continued as new"
    records = len(stubs.recorded)
    # Temporal's update-id dedup is per run; the workflow's own memory answers the retries.
    assert await conv.command(UPDATE_RELEASE, ReleaseRequest(), update_id="r-1") == released
    assert (
        await conv.command(UPDATE_HANDOFF, HandoffRequest(reason="VIP"), update_id="h-1") == taken
    )
    state = await conv.state()
    assert state.handoff is None and state.stage == Stage.QUALIFYING, "nothing acted again"
    assert len(stubs.recorded) == records


async def test_a_handoff_during_the_debounce_records_the_burst_without_a_model(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted(resume=ResumeState(stage=Stage.QUALIFYING, turns=2))
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Do you have an Audi A4?"))
    await conv.debouncing()
    taken = await conv.command(UPDATE_HANDOFF, HandoffRequest(reason="Mark takes it"))
    assert taken.stage == Stage.HUMAN_HANDOFF
    await conv.until(
        lambda: "Do you have an Audi A4?" in stubs.lead_entries(),
        what="the burst recorded",
        limit=timedelta(minutes=1),
    )
    assert stubs.prepared == [] and stubs.sent == [], "no model asked, nothing sent"
    # A fresh run still learned its history first: the turn key follows the earlier run's.
    assert [c.resume for c in stubs.contexts] == [True]
    assert "turn:3" in [r.turn_key for r in stubs.recorded]


async def test_a_handoff_with_the_first_message_still_resumes_before_recording(
    conversation: Callable[..., Any],
) -> None:
    """The operator's handoff lands in the run's first workflow task, before any turn: the
    burst is recorded silently, but only after the run learned its history (a redelivery of a
    message the earlier run saw is dropped)."""
    stubs = Scripted(
        resume=ResumeState(stage=Stage.QUALIFYING, turns=2, seen_message_ids=("old-1",))
    )
    conv: Conv = await conversation(stubs)
    handle = await conv.client.start_workflow(
        ConversationWorkflow.run,
        ConversationInput.new(
            tenant_id=conv.tenant_id,
            channel=Channel.WAHA,
            contact=CONTACT,
            debounce_seconds=1,
            search_attributes=False,
            policy=POLICY,
            handoff=HandoffState(reason="Mark took it", since=datetime.now(UTC)),
            stage=Stage.HUMAN_HANDOFF,
            pending=[conv.message("Hello again", "old-1"), conv.message("Any news?", "new-2")],
        ),
        id=conv.workflow_id,
        task_queue=conv.queue,
    )
    await conv.until(
        lambda: "Any news?" in stubs.lead_entries(),
        what="the burst recorded",
        limit=timedelta(minutes=1),
    )
    assert stubs.lead_entries() == ["Any news?"], "the redelivery was dropped"
    assert [c.resume for c in stubs.contexts] == [True]
    assert stubs.prepared == [] and stubs.sent == []
    assert (await handle.query("state"))["stage"] == Stage.HUMAN_HANDOFF.value
