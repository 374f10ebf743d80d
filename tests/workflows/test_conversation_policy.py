"""The conversation workflow's decisions, fast: the time-skipping test server with stub
activities registered under the real activity names (samples-python's pattern). The stubs
perceive and act as scripted; the workflow must decide escalation, fallbacks and timers itself.
Activities have their own tests; tests/workflows/test_conversation_e2e.py runs the real ones."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models.agent import (
    AnalyseInput,
    AnalysisResult,
    DraftTurnInput,
    GeneratedReply,
    GenerateReplyInput,
    GuardVerdict,
    Perception,
    TokenUsage,
    TurnDraft,
)
from models.common import Channel, Intent, ReplyPurpose, Role, Stage
from models.conversation import (
    ConversationInput,
    ConversationSnapshot,
    NotifyResult,
    NotifySpecialistInput,
    PreparedTurn,
    PrepareTurnInput,
    RecordTurnInput,
    SendAndRecordInput,
    SendAndRecordResult,
    TurnContext,
    TurnContextInput,
)
from models.crm import RequestCrmSyncInput, RequestCrmSyncResult
from models.messages import InboundMessage, OutboundMessage, SendResult, TranscriptEntry
from models.policy import PlaybookRef, policy_of
from models.repo.playbooks import builtin_playbook
from models.tenant import Specialist
from workers.worker import workflow_runner
from workflows.conversation import ConversationWorkflow

PLAYBOOK = builtin_playbook("car_dealership")
POLICY = policy_of(PLAYBOOK)
USAGE = TokenUsage(provider="stub", model="stub")


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
    """Scripted activities; what the workflow asked of them is recorded."""

    perceive: Callable[[AnalyseInput], Perception] = lambda _: Perception(
        intent=Intent.PRODUCT_INQUIRY, confidence=0.9, language="en", fields={"make": "Audi"}
    )
    write: Callable[[GenerateReplyInput], GeneratedReply] = lambda r: GeneratedReply(
        text=f"AI {r.purpose.value}", usage=USAGE
    )
    draft_fails: bool = False  # the draft step of `draft_turn` fails (the perception does not)
    drafted: list[GenerateReplyInput] = field(default_factory=list)
    sent: list[OutboundMessage] = field(default_factory=list)
    sent_by_run: list[str] = field(default_factory=list)  # the workflow run of each send
    written: list[GenerateReplyInput] = field(default_factory=list)
    recorded: list[RecordTurnInput] = field(default_factory=list)
    notified: list[NotifySpecialistInput] = field(default_factory=list)
    send_refused: bool = False  # the channel refuses every send for good
    record_fails_after_send: bool = False  # send_and_record sends but cannot record
    do_not_contact: bool = False
    contexts: list[TurnContextInput] = field(default_factory=list)  # as local activities
    prepared: list[TurnContextInput] = field(default_factory=list)  # inside prepare_turn

    def context_for(self, request: TurnContextInput) -> TurnContext:
        changed = request.policy_hash != POLICY.playbook_hash
        return TurnContext(
            playbook=PlaybookRef(tenant_id=request.tenant_id, hash=POLICY.playbook_hash),
            policy=POLICY if changed else None,
            specialists=(Specialist(name="Mia", role="manager", email="mia@example.com"),),
            do_not_contact=self.do_not_contact,
        )

    def activities(self) -> list[Callable[..., object]]:
        @activity.defn(name="load_turn_context")
        async def load_turn_context(request: TurnContextInput) -> TurnContext:
            self.contexts.append(request)
            return self.context_for(request)

        @activity.defn(name="record_turn")
        async def record_turn(record: RecordTurnInput) -> bool:
            self.recorded.append(record)
            return False

        @activity.defn(name="prepare_turn")
        async def prepare_turn(request: PrepareTurnInput) -> PreparedTurn:
            self.prepared.append(request.context)
            context = self.context_for(request.context)
            if context.do_not_contact:
                return PreparedTurn(context=context)
            draft = request.draft.model_copy(update={"playbook": context.playbook})
            return PreparedTurn(context=context, draft=await draft_turn(draft))

        @activity.defn(name="send_and_record")
        async def send_and_record(request: SendAndRecordInput) -> SendAndRecordResult:
            sent = await send_message(request.message)
            entry = TranscriptEntry(
                role=Role.AI,
                text=request.message.text,
                at=request.at,
                provider_message_id=sent.provider_message_id,
            )
            if self.record_fails_after_send:
                return SendAndRecordResult(sent=sent, lead_changed=False, recorded=False)
            record = request.record.model_copy(update={"entries": (*request.record.entries, entry)})
            return SendAndRecordResult(sent=sent, lead_changed=await record_turn(record))

        @activity.defn(name="analyse_messages")
        async def analyse_messages(request: AnalyseInput) -> AnalysisResult:
            return AnalysisResult(perception=self.perceive(request), usage=USAGE)

        @activity.defn(name="draft_turn")
        async def draft_turn(request: DraftTurnInput) -> TurnDraft:
            analysis = AnalysisResult(perception=self.perceive(request), usage=USAGE)
            if self.draft_fails:
                return TurnDraft(analysis=analysis, draft_error="the stub's writer is down")
            asked = GenerateReplyInput(
                tenant_id=request.tenant_id,
                playbook=request.playbook,
                purpose=ReplyPurpose.REPLY,
                stage=request.stage,
                conversation_id=request.conversation_id,
                perception=analysis.perception,
                new_messages=request.new_messages,
            )
            self.drafted.append(asked)
            return TurnDraft(analysis=analysis, reply=self.write(asked))

        @activity.defn(name="generate_reply")
        async def generate_reply(request: GenerateReplyInput) -> GeneratedReply:
            self.written.append(request)
            return self.write(request)

        @activity.defn(name="send_message")
        async def send_message(message: OutboundMessage) -> SendResult:
            if self.send_refused:
                raise ApplicationError(
                    "waha rejected the message (HTTP 401)",
                    type="ChannelRejected",
                    non_retryable=True,
                )
            self.sent.append(message)
            self.sent_by_run.append(activity.info().workflow_run_id or "")
            return SendResult(provider_message_id=f"out-{len(self.sent)}", delivered_via="stub")

        @activity.defn(name="notify_specialist")
        async def notify_specialist(request: NotifySpecialistInput) -> NotifyResult:
            self.notified.append(request)
            return NotifyResult(specialist=request.specialist.name, via=request.via, ok=True)

        @activity.defn(name="request_crm_sync")
        async def request_crm_sync(request: RequestCrmSyncInput) -> RequestCrmSyncResult:
            return RequestCrmSyncResult(workflow_id="crm:stub")

        return [
            load_turn_context,
            record_turn,
            prepare_turn,
            send_and_record,
            analyse_messages,
            draft_turn,
            generate_reply,
            send_message,
            notify_specialist,
            request_crm_sync,
        ]


@dataclass
class Run:
    client: Client
    workflow_id: str
    tenant_id: str
    contact: str
    env: WorkflowEnvironment
    messages: int = 0

    async def say(self, text: str) -> None:
        self.messages += 1
        message = InboundMessage(
            tenant_id=self.tenant_id,
            channel=Channel.WAHA,
            contact=self.contact,
            provider_message_id=f"m{self.messages}",
            text=text,
            sent_at=datetime.now(UTC),
        )
        await self.client.get_workflow_handle(self.workflow_id).signal("inbound", message)

    async def state(self) -> ConversationSnapshot:
        handle = self.client.get_workflow_handle(self.workflow_id)
        return await handle.query(ConversationWorkflow.state)

    async def until(self, check: Callable[[], bool], *, limit: timedelta, what: str) -> None:
        waited = timedelta()
        step = timedelta(seconds=30) if limit > timedelta(minutes=5) else timedelta(seconds=1)
        while not check():
            if waited > limit:
                raise AssertionError(f"not within {limit}: {what}")
            await self.env.sleep(step)
            waited += step


@pytest.fixture
async def run(env: WorkflowEnvironment, request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """A factory: start a conversation served by a worker with the given stubs."""
    started: list[tuple[Worker, str]] = []

    async def start(stubs: Stubs, *, history_limit: int = 2000) -> Run:
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
        contact = "31600000000@c.us"
        workflow_id = f"conv:{tenant}:waha:{contact}"
        await env.client.start_workflow(
            ConversationWorkflow.run,
            ConversationInput.new(
                tenant_id=tenant,
                channel=Channel.WAHA,
                contact=contact,
                debounce_seconds=1,
                history_limit=history_limit,
                search_attributes=False,
            ),
            id=workflow_id,
            task_queue=queue,
        )
        started.append((worker, workflow_id))
        return Run(env.client, workflow_id, tenant, contact, env)

    yield start
    for worker, workflow_id in started:
        try:
            await env.client.get_workflow_handle(workflow_id).terminate("test over")
        except Exception:
            pass
        await worker.__aexit__(None, None, None)


def _keys(stubs: Stubs) -> list[str]:
    return [m.idempotency_key.rsplit(":", 1)[-1] for m in stubs.sent]


async def test_the_workflow_decides_escalation_from_what_was_perceived(run: object) -> None:
    stubs = Stubs(
        perceive=lambda _: Perception(intent=Intent.COMPLAINT, confidence=0.9, language="en")
    )
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("The car broke down after 3 days, I want my money back")
    await conv.until(lambda: bool(stubs.sent), limit=timedelta(minutes=1), what="the notice")
    state = await conv.state()
    assert state.stage == Stage.HUMAN_HANDOFF
    assert state.handoff is not None and state.handoff.rule == "complaint"
    assert [n.specialist.role for n in stubs.notified] == ["manager"]
    notice = [w for w in stubs.written if w.purpose == ReplyPurpose.ESCALATION_NOTICE]
    assert notice and notice[0].escalation_rule == "complaint"
    # The reply drafted before the decision is discarded: the lead gets the notice.
    assert len(stubs.drafted) == 1
    assert [m.text for m in stubs.sent] == ["AI escalation_notice"]
    escalation = stubs.recorded[-1].escalation
    assert escalation is not None and escalation.rule == "complaint"


async def test_a_plain_turn_sends_the_draft_without_asking_for_another_reply(
    run: object,
) -> None:
    stubs = Stubs()
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("Do you have an Audi A4?")
    await conv.until(lambda: bool(stubs.sent), limit=timedelta(minutes=1), what="the reply")
    assert [m.text for m in stubs.sent] == ["AI reply"]
    assert len(stubs.drafted) == 1 and stubs.drafted[0].stage == Stage.AWAITING_RESPONSE
    assert not stubs.written, "the draft was used: no second reply step"
    state = await conv.state()
    assert state.stage == Stage.QUALIFYING and state.fields == {"make": "Audi"}


async def test_a_plain_turn_is_two_activities_and_records_with_its_send(run: object) -> None:
    """Version 2: the context comes with the perception, the record with the send; no local
    activity on the path."""
    stubs = Stubs()
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("Do you have an Audi A4?")
    await conv.until(lambda: bool(stubs.recorded), limit=timedelta(minutes=1), what="record")
    assert len(stubs.prepared) == 1 and stubs.prepared[0].query == "Do you have an Audi A4?"
    assert stubs.contexts == [], "no context loaded as a local activity"
    record = stubs.recorded[0]
    assert [(e.role, e.text) for e in record.entries] == [
        (Role.LEAD, "Do you have an Audi A4?"),
        (Role.AI, "AI reply"),
    ]
    assert record.entries[1].provider_message_id == "out-1"
    assert record.stage == Stage.QUALIFYING and record.fields == {"make": "Audi"}
    state = await conv.state()
    assert [e.text for e in state.transcript][-1] == "AI reply"


async def test_a_turn_sent_but_not_recorded_is_recorded_by_the_workflow(run: object) -> None:
    stubs = Stubs(record_fails_after_send=True)
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("Do you have an Audi A4?")
    await conv.until(lambda: bool(stubs.recorded), limit=timedelta(minutes=1), what="record")
    assert [m.text for m in stubs.sent] == ["AI reply"], "sent once, not again"
    assert [(e.role, e.text) for e in stubs.recorded[0].entries] == [
        (Role.LEAD, "Do you have an Audi A4?"),
        (Role.AI, "AI reply"),
    ]
    assert stubs.recorded[0].entries[1].provider_message_id == "out-1"
    state = await conv.state()
    assert state.stage == Stage.QUALIFYING and state.handoff is None


async def test_a_refused_send_hands_over_without_a_holding_text(run: object) -> None:
    stubs = Stubs(send_refused=True)
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("Do you have an Audi A4?")
    await conv.until(lambda: bool(stubs.notified), limit=timedelta(minutes=1), what="alert")
    state = await conv.state()
    assert state.stage == Stage.HUMAN_HANDOFF
    assert state.handoff is not None and state.handoff.rule == "delivery_failed"
    assert stubs.sent == []  # the channel refuses: no holding text either
    escalation = stubs.recorded[-1].escalation
    assert escalation is not None and escalation.rule == "delivery_failed"
    assert stubs.recorded[-1].entries[0].role == Role.LEAD


async def test_a_do_not_contact_lead_is_recorded_and_not_answered(run: object) -> None:
    stubs = Stubs(do_not_contact=True)
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("Do you have an Audi A4?")
    await conv.until(lambda: bool(stubs.recorded), limit=timedelta(minutes=1), what="record")
    assert stubs.sent == [] and stubs.drafted == []
    assert [e.text for e in stubs.recorded[0].entries] == ["Do you have an Audi A4?"]


async def test_a_failed_draft_is_asked_again_through_the_reply_step(run: object) -> None:
    stubs = Stubs(draft_fails=True)
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("Do you have an Audi A4?")
    await conv.until(lambda: bool(stubs.sent), limit=timedelta(minutes=1), what="the reply")
    assert [m.text for m in stubs.sent] == ["AI reply"]
    assert [w.purpose for w in stubs.written] == [ReplyPurpose.REPLY]
    assert stubs.written[0].perception is not None
    assert stubs.written[0].perception.summary == ""


async def test_a_blocked_reply_is_not_sent_the_holding_text_is_and_a_human_is_told(
    run: object,
) -> None:
    stubs = Stubs(
        write=lambda r: GeneratedReply(
            text="The Golf is yours for €9.999!",
            usage=USAGE,
            guard=GuardVerdict(ok=False, rule="unsupported_amount", reason="€9.999 not known"),
        )
    )
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("How much is the Golf?")
    await conv.until(lambda: bool(stubs.sent), limit=timedelta(minutes=1), what="a message")
    assert [m.text for m in stubs.sent] == [POLICY.fallback_text("en")]
    state = await conv.state()
    assert state.stage == Stage.HUMAN_HANDOFF and state.handoff is not None
    assert state.handoff.rule == "reply_blocked" and state.handoff.holding_sent
    notes = [e.text for e in state.transcript if e.role == Role.SYSTEM]
    assert any("€9.999" in note and "not sent" in note for note in notes)
    assert stubs.notified, "the specialists are told"


@pytest.mark.parametrize(
    ("error_type", "rule"),
    [
        ("LlmBudgetExhausted", "budget_exhausted"),
        ("InvalidLlmOutput", "invalid_model_output"),
        ("LlmRequestRejected", "ai_unavailable"),
    ],
)
async def test_no_model_answer_means_the_holding_text_and_a_human(
    run: object, error_type: str, rule: str
) -> None:
    def fail(_: AnalyseInput) -> Perception:
        raise ApplicationError(f"{error_type} for the test", type=error_type, non_retryable=True)

    stubs = Stubs(perceive=fail)
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("Do you have a Golf?")
    await conv.until(lambda: bool(stubs.sent), limit=timedelta(minutes=1), what="holding text")
    # Nothing perceived the lead's language yet: the playbook's default language it is.
    assert [m.text for m in stubs.sent] == [POLICY.fallback_text(None)]
    state = await conv.state()
    assert state.handoff is not None and state.handoff.rule == rule
    assert any(error_type in e.text for e in state.transcript if e.role == Role.SYSTEM)
    assert not stubs.written, "no model was asked to write anything"


async def test_follow_up_and_holding_timers_still_fire_after_continue_as_new(
    run: object,
) -> None:
    """The policy lives in the state: a new run knows the cadence and the holding time."""
    stubs = Stubs()
    conv: Run = await run(stubs, history_limit=20)  # type: ignore[operator]
    await conv.say("Hi, I'm interested in an Audi")
    await conv.until(lambda: len(stubs.sent) >= 1, limit=timedelta(minutes=1), what="reply")
    # The cadence's first follow-up is 4 h after our reply (moved out of quiet hours).
    await conv.until(
        lambda: len(stubs.sent) >= 2, limit=timedelta(hours=16), what="the first follow-up"
    )
    assert "follow_up" in stubs.sent[1].idempotency_key
    # Sent by another run than the reply: the conversation continued as new in between.
    assert stubs.sent_by_run[1] != stubs.sent_by_run[0]

    # Now a complaint hands it to a human; nobody answers, so the holding message goes out
    # after the playbook's holding time — again from a run after a continue-as-new.
    stubs.perceive = lambda _: Perception(intent=Intent.COMPLAINT, confidence=0.9, language="en")
    await conv.say("This is taking forever and nobody helps me")
    await conv.until(lambda: len(stubs.sent) >= 3, limit=timedelta(minutes=1), what="notice")
    assert "handoff" in stubs.sent[2].idempotency_key
    await conv.until(
        lambda: any("holding" in m.idempotency_key for m in stubs.sent),
        limit=POLICY.handoff.holding_after + timedelta(minutes=5),
        what="the holding message",
    )
    holding = next(i for i, m in enumerate(stubs.sent) if "holding" in m.idempotency_key)
    assert stubs.sent_by_run[holding] != stubs.sent_by_run[2]
    state = await conv.state()
    assert state.handoff is not None and state.handoff.holding_sent
