"""The run boundaries of a conversation, fast (time-skipping server, stub activities under the
real names): a message delivered twice, an opt-out and what the lead writes after it, a fresh run
resuming from the database, not-interested ending the cadence, continue-as-new carrying pending
messages, timers and dedup ids."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.exceptions import ApplicationError

from models.agent import Perception
from models.common import Channel, Intent, Role, Stage
from models.conversation import ConversationInput, OutreachRequest, ResumeState
from models.messages import TranscriptEntry
from models.playbook import FollowUpPolicy
from tests.workflows import test_conversation_updates as updates
from tests.workflows.test_conversation_policy import POLICY
from tests.workflows.test_conversation_updates import CONTACT, Conv, Scripted
from workflows.conversation import ConversationWorkflow

MINUTE = timedelta(minutes=1)
# The time-skipping server and the conversation factory of the Updates' tests.
env = updates.env
conversation = updates.conversation


def opt_out(_: object) -> Perception:
    return Perception(
        intent=Intent.NOT_INTERESTED, confidence=0.9, language="en", fields={"opt_out": True}
    )


def declines(_: object) -> Perception:
    return Perception(intent=Intent.NOT_INTERESTED, confidence=0.9, language="en")


def sends(stubs: Scripted) -> list[str]:
    return [m.idempotency_key.split(":", 3)[-1] for m in stubs.sent]


async def test_the_same_message_delivered_twice_is_one_turn(
    conversation: Callable[..., Any],
) -> None:
    """WAHA's @c.us/@lid double delivery reaches the workflow as one provider message id twice
    (the webhook normalises the contact and the key): one turn, one reply."""
    stubs = Scripted()
    conv: Conv = await conversation(stubs)
    first = conv.message("Do you have an Audi A4?", "true_31600000000@c.us_3EB0ABC")
    await conv.start(first)
    await conv.handle.signal("inbound", first)
    await conv.until(lambda: bool(stubs.recorded), what="the turn", limit=MINUTE)
    await conv.say("And in blue?")
    await conv.until(lambda: len(stubs.sent) == 2, what="reply 2", limit=MINUTE)
    await conv.handle.signal("inbound", first)  # late, after another turn
    state = await conv.state()
    assert state.turns == 2 and state.pending_messages == 0
    assert [e.text for e in state.transcript if e.role == Role.LEAD] == [
        "Do you have an Audi A4?",
        "And in blue?",
    ]
    assert [m.text for m in stubs.sent] == ["AI reply", "AI reply"]


async def test_an_opt_out_sticks_later_messages_are_recorded_and_never_answered(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted(perceive=opt_out)
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Stop messaging me"))
    snapshot = await conv.handle.result()
    assert snapshot["stage"] == Stage.CLOSED.value
    assert [m.text for m in stubs.sent] == ["AI reply"], "one acknowledgement"
    marked = [r for r in stubs.recorded if r.do_not_contact is not None]
    assert [(r.turn_key, r.do_not_contact) for r in marked] == [("turn:1", True)]
    assert stubs.recorded[-1].stage == Stage.CLOSED

    # The lead writes again: a new run (the database now says do-not-contact) records it,
    # answers nothing and closes again.
    stubs.perceive = lambda _: Perception(intent=Intent.PRODUCT_INQUIRY, language="en")
    await conv.start(conv.message("Actually, one question"))
    snapshot = await conv.handle.result()
    assert snapshot["stage"] == Stage.CLOSED.value
    assert len(stubs.sent) == 1
    assert "Actually, one question" in stubs.lead_entries()
    assert stubs.prepared[-1].resume, "the new run asked for the lead's history"


async def test_a_fresh_run_resumes_from_the_database_and_drops_redeliveries(
    conversation: Callable[..., Any],
) -> None:
    at = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    earlier = ResumeState(
        stage=Stage.CLOSED,
        fields={"make": "Audi", "budget": 25000},
        transcript=(
            TranscriptEntry(role=Role.LEAD, text="An Audi?", at=at, provider_message_id="old-1"),
            TranscriptEntry(role=Role.AI, text="We have three.", at=at, provider_message_id="o"),
        ),
        seen_message_ids=("old-1",),
        turns=3,
        contact_name="Jan",
    )
    stubs = Scripted(resume=earlier)
    conv: Conv = await conversation(stubs)
    # WAHA redelivers the old message after the run closed: a new run, nothing answered.
    await conv.start(conv.message("An Audi?", "old-1"))
    await conv.until(lambda: bool(stubs.prepared), what="the first context", limit=MINUTE)
    await conv.say("Is the A4 still there?")
    await conv.until(lambda: bool(stubs.sent), what="the reply", limit=MINUTE)
    assert [m.text for m in stubs.sent] == ["AI reply"]
    assert [p.resume for p in stubs.prepared] == [True, False], "only the first context asks"
    (record,) = stubs.recorded
    assert record.turn_key == "turn:4", "turn numbers go on from the earlier run"
    assert record.contact_name == "Jan"
    assert record.fields == {"make": "Audi", "budget": 25000}
    assert record.stage == Stage.QUALIFYING, "the closed conversation re-opened"
    state = await conv.state()
    assert [e.text for e in state.transcript] == [
        "An Audi?",
        "We have three.",
        "Is the A4 still there?",
        "AI reply",
    ]
    assert state.turns == 4


async def test_a_resumed_conversation_that_a_human_had_stays_with_the_human(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted(resume=ResumeState(stage=Stage.HUMAN_HANDOFF, turns=2))
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Hello?"))
    await conv.until(lambda: bool(stubs.recorded), what="recorded", limit=MINUTE)
    state = await conv.state()
    assert stubs.sent == [] and state.stage == Stage.HUMAN_HANDOFF
    assert state.handoff is not None and state.handoff.human_replied


async def test_not_interested_closes_when_the_playbook_says_close(
    conversation: Callable[..., Any],
) -> None:
    assert POLICY.follow_up.after_not_interested == "close"  # the car dealership's playbook
    stubs = Scripted(perceive=declines)
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("I already bought a car elsewhere"))
    snapshot = await conv.handle.result()
    assert snapshot["stage"] == Stage.CLOSED.value
    assert [m.text for m in stubs.sent] == ["AI reply"], "the polite answer, no cadence"
    assert all(r.do_not_contact is None for r in stubs.recorded), "declining is no opt-out"


async def test_not_interested_gets_one_nurture_message_when_the_playbook_says_nurture(
    conversation: Callable[..., Any],
) -> None:
    follow_up = FollowUpPolicy(
        cadence=POLICY.follow_up.cadence,
        after_not_interested="nurture",
        nurture_after=timedelta(days=30),
    )
    policy = POLICY.model_copy(update={"follow_up": follow_up, "playbook_hash": "nurture-test"})
    stubs = Scripted(perceive=declines, policy=policy)
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Not now, thanks"))
    await conv.until(lambda: bool(stubs.sent), what="the reply", limit=MINUTE)
    # The cadence (4 h, 1 d, 3 d) would have sent three follow-ups by now.
    await conv.env.sleep(timedelta(days=10))
    assert len(stubs.sent) == 1
    assert (await conv.state()).stage == Stage.NURTURE
    await conv.until(
        lambda: len(stubs.sent) == 2, what="the nurture message", limit=timedelta(days=22)
    )
    assert "nurture" in stubs.sent[1].idempotency_key
    await conv.env.sleep(timedelta(days=60))
    assert len(stubs.sent) == 2, "one nurture message, nothing after it"


async def test_continue_as_new_keeps_dedup_ids_and_timers(
    conversation: Callable[..., Any],
) -> None:
    stubs = Scripted()
    conv: Conv = await conversation(stubs, history_limit=20)
    first = conv.message("Hi, I'm interested in an Audi")
    await conv.start(first)
    await conv.until(lambda: len(stubs.sent) == 1, what="reply 1", limit=MINUTE)
    second = conv.message("What does the A4 cost?")
    await conv.handle.signal("inbound", second)
    await conv.until(lambda: len(stubs.sent) == 2, what="reply 2", limit=MINUTE)
    run = stubs.sent_by_run[1]

    async def continued() -> bool:
        return (await conv.handle.describe()).run_id != run

    for _ in range(30):
        if await continued():
            break
        await conv.env.sleep(timedelta(seconds=1))
    assert await continued(), "the conversation continued as new"
    # Redeliveries of messages the earlier run answered are dropped by the new run.
    await conv.handle.signal("inbound", first)
    await conv.handle.signal("inbound", second)
    state = await conv.state()
    assert state.pending_messages == 0 and state.turns == 2
    # The follow-up cadence goes on in the new run (4 h after the reply, out of quiet hours).
    await conv.until(
        lambda: len(stubs.sent) == 3, what="the first follow-up", limit=timedelta(hours=16)
    )
    assert "follow_up" in stubs.sent[2].idempotency_key
    assert stubs.sent_by_run[2] != run
    # Only the conversation's very first context asked for history; the new run's did not.
    assert [p.resume for p in stubs.prepared] == [True, False]
    assert stubs.contexts and not any(c.resume for c in stubs.contexts)


async def test_a_continued_run_answers_the_messages_it_carries_without_resuming(
    conversation: Callable[..., Any],
) -> None:
    """What `continue_as_new` hands the next run: pending messages, seen ids, turn count."""
    stubs = Scripted(resume=ResumeState(stage=Stage.CLOSED, turns=99))
    conv: Conv = await conversation(stubs)
    carried = conv.message("Still there?", "m-5")
    await conv.client.start_workflow(
        ConversationWorkflow.run,
        ConversationInput.new(
            tenant_id=conv.tenant_id,
            channel=Channel.WAHA,
            contact=CONTACT,
            debounce_seconds=1,
            search_attributes=False,
            stage=Stage.QUALIFYING,
            turns=4,
            pending=[carried],
            seen_message_ids=["m-1", "m-2", "m-3", "m-4", "m-5"],
            resume_checked=True,
            policy=POLICY,
        ),
        id=conv.workflow_id,
        task_queue=conv.queue,
    )
    await conv.handle.signal("inbound", conv.message("Hello", "m-3"))  # seen before
    await conv.until(lambda: bool(stubs.sent), what="the reply", limit=MINUTE)
    (record,) = stubs.recorded
    assert record.turn_key == "turn:5"
    assert [e.text for e in record.entries if e.role == Role.LEAD] == ["Still there?"]
    assert [p.resume for p in stubs.prepared] == [False]


async def test_a_fresh_run_whose_model_fails_resumes_through_the_context_it_loads(
    conversation: Callable[..., Any],
) -> None:
    """The local-activity context path (the turn's model step failed for good) asks for the
    lead's history too: the handover is recorded under the next turn number."""

    def down(_: object) -> Perception:
        raise ApplicationError("no model", type="LlmBudgetExhausted", non_retryable=True)

    stubs = Scripted(perceive=down, resume=ResumeState(stage=Stage.QUALIFYING, turns=6))
    conv: Conv = await conversation(stubs)
    await conv.start(conv.message("Are you open on Sunday?"))
    await conv.until(lambda: bool(stubs.recorded), what="the handover", limit=MINUTE)
    assert [p.resume for p in stubs.prepared] == [True]
    assert [c.resume for c in stubs.contexts] == [True], "the failed step brought no history"
    (record,) = stubs.recorded
    assert record.turn_key == "turn:7"
    assert record.escalation is not None and record.escalation.rule == "budget_exhausted"


async def test_an_outreach_to_a_do_not_contact_lead_is_not_sent(
    conversation: Callable[..., Any],
) -> None:
    """The API refuses it first; the workflow holds the line for any other starter."""
    stubs = Scripted(do_not_contact=True)
    conv: Conv = await conversation(stubs)
    await conv.client.start_workflow(
        ConversationWorkflow.run,
        ConversationInput.new(
            tenant_id=conv.tenant_id,
            channel=Channel.WAHA,
            contact=CONTACT,
            outreach=OutreachRequest(text="Our new models are in!"),
            search_attributes=False,
        ),
        id=conv.workflow_id,
        task_queue=conv.queue,
    )
    snapshot = await conv.handle.result()
    assert snapshot["stage"] == Stage.CLOSED.value
    assert stubs.sent == []
    assert [c.resume for c in stubs.contexts][:1] == [True]
    notes = [e.text for r in stubs.recorded for e in r.entries if e.role == Role.SYSTEM]
    assert notes == ["outreach not sent: the lead asked not to be contacted"]


async def test_a_lead_who_writes_during_every_turn_still_continues_as_new(
    conversation: Callable[..., Any],
) -> None:
    """Each next message arrives while the turn before it runs, so the run is never idle between
    turns: it continues as new with the message pending, and the next run answers it."""
    stubs = Scripted(gate=asyncio.Event())
    conv: Conv = await conversation(stubs, history_limit=20)
    await conv.start(conv.message("Hi, I'm interested in an Audi"))
    for n in range(2, 7):
        await conv.entered_turn()
        stubs.entered.clear()
        held, stubs.gate = stubs.gate, asyncio.Event()
        await conv.say(f"question {n}")
        assert held is not None
        held.set()
    await conv.entered_turn()
    held, stubs.gate = stubs.gate, None
    assert held is not None
    held.set()
    await conv.until(lambda: len(stubs.sent) == 6, what="six replies", limit=MINUTE)
    assert len(set(stubs.sent_by_run)) > 1, "the busy conversation continued as new"
    # Every message answered once, in order, across the runs.
    assert stubs.lead_entries() == ["Hi, I'm interested in an Audi"] + [
        f"question {n}" for n in range(2, 7)
    ]
    state = await conv.state()
    assert state.turns == 6 and state.pending_messages == 0
