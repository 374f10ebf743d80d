"""The conversation workflow computes the lead's tags at its record step (workflows/tags.py) and
sends them in RecordTurnInput only when they changed: fast, on the time-skipping server with the
stub activities of test_conversation_policy (registered under the real activity names)."""

from __future__ import annotations

from datetime import timedelta

from models.agent import Perception
from models.common import Intent, Stage
from models.conversation import ResumeState, TurnContext, TurnContextInput
from tests.workflows import test_conversation_policy as policy_tests
from tests.workflows.test_conversation_policy import Run, Stubs

# The time-skipping environment and the conversation factory of the policy tests.
env = policy_tests.env
run = policy_tests.run


def _perceive(intent: Intent, **fields: str | int | bool) -> Perception:
    return Perception(intent=intent, confidence=0.9, language="en", fields=dict(fields))


async def test_tags_go_to_the_record_step_only_when_they_change(run: object) -> None:
    said = iter(
        [
            _perceive(Intent.PRODUCT_INQUIRY, make="Audi", model="A4", budget=32000),
            _perceive(Intent.PRODUCT_INQUIRY),  # nothing new: the same tags
            _perceive(Intent.MEETING),  # a test drive: a new tag
        ]
    )
    stubs = Stubs(perceive=lambda _: next(said))
    conv: Run = await run(stubs)  # type: ignore[operator]
    for n, text in enumerate(["Do you have an Audi A4?", "ok", "Can I test drive it?"], 1):
        await conv.say(text)
        await conv.until(
            lambda n=n: len(stubs.recorded) >= n,  # type: ignore[misc]
            limit=timedelta(minutes=1),
            what=f"record {n}",
        )
    first, second, third = stubs.recorded
    assert first.tags is not None
    tags = set(first.tags)
    assert {
        "interest-audi-a4",
        "make-audi",
        "budget-30k-50k",
        "stage-qualifying",
        "channel-waha",
    } <= tags
    assert any(t.startswith("lead-") for t in tags)
    assert second.tags is None, "unchanged tags are not sent again"
    assert third.tags is not None
    # the meeting moved the stage on (and the score): those tags follow, the interest stays
    assert {"test-drive", "stage-scheduling", "interest-audi-a4", "make-audi"} <= set(third.tags)
    assert "stage-qualifying" not in third.tags
    assert "test-drive" in third.tags  # the dealership's word for the meeting intent
    assert list(third.tags) == sorted(third.tags)


async def test_an_escalation_is_recorded_with_its_tags(run: object) -> None:
    stubs = Stubs(perceive=lambda _: _perceive(Intent.COMPLAINT))
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("The car broke down after 3 days, I want my money back")
    await conv.until(lambda: bool(stubs.recorded), limit=timedelta(minutes=1), what="record")
    record = stubs.recorded[-1]
    assert record.escalation is not None and record.tags is not None
    assert {"complaint", "escalated", "stage-human-handoff"} <= set(record.tags)
    assert (await conv.state()).stage == Stage.HUMAN_HANDOFF


async def test_tags_a_failed_record_did_not_write_are_sent_again(run: object) -> None:
    stubs = Stubs(record_fails_after_send=True)
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("Do you have an Audi A4?")
    await conv.until(lambda: bool(stubs.recorded), limit=timedelta(minutes=1), what="record")
    # send_and_record sent but could not record: the workflow's own record carries the tags
    [record] = stubs.recorded
    assert record.tags is not None and "make-audi" in record.tags


async def test_a_fresh_run_keeps_the_sticky_tags_the_lead_holds(run: object) -> None:
    """A new run of a lead with history (after a close) resumes from the database, which does
    not carry the intents seen before: a complaint or a test drive stays tagged from the lead's
    tags, while the stage and the rest follow the new run."""

    class Resuming(Stubs):
        def context_for(self, request: TurnContextInput) -> TurnContext:
            context = super().context_for(request)
            if not request.resume:
                return context
            earlier = ResumeState(
                stage=Stage.CLOSED,
                fields={"make": "Audi"},
                turns=2,
                tags=("complaint", "test-drive", "stage-closed", "make-audi", "vip"),
            )
            return context.model_copy(update={"resume": earlier})

    stubs = Resuming(perceive=lambda _: _perceive(Intent.PRODUCT_INQUIRY))
    conv: Run = await run(stubs)  # type: ignore[operator]
    await conv.say("Hi again, still looking")
    await conv.until(lambda: bool(stubs.recorded), limit=timedelta(minutes=1), what="record")
    [record] = stubs.recorded
    assert record.turn_key == "turn:3"  # resumed after the two earlier turns
    assert record.tags is not None
    assert {"complaint", "test-drive", "make-audi", "stage-qualifying"} <= set(record.tags)
    assert not {"stage-closed", "vip"} & set(record.tags)
