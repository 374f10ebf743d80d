"""Stage transitions of a conversation."""

from __future__ import annotations

from typing import Literal

import pytest

from models.agent import FieldValue, Perception
from models.common import Intent, Stage
from workflows.stages import (
    ai_may_reply,
    next_stage,
    stage_after_close,
    stage_after_follow_up,
    stage_after_follow_ups_exhausted,
    stage_after_outreach,
    stage_after_release,
    stage_for_outreach,
    stage_on_handoff,
    stage_on_resume,
)


def analysis(
    intent: Intent,
    *,
    sentiment: float = 0.0,
    fields: dict[str, FieldValue] | None = None,
) -> Perception:
    return Perception(intent=intent, sentiment=sentiment, fields=fields or {})


@pytest.mark.parametrize(
    ("current", "intent", "expected"),
    [
        (Stage.AWAITING_RESPONSE, Intent.PRODUCT_INQUIRY, Stage.QUALIFYING),
        (Stage.INITIAL_OUTREACH, Intent.GREETING, Stage.QUALIFYING),
        (Stage.NURTURE, Intent.PRICING, Stage.QUALIFYING),
        (Stage.CLOSED, Intent.PRODUCT_INQUIRY, Stage.QUALIFYING),
        (Stage.QUALIFYING, Intent.MEETING, Stage.SCHEDULING),
        (Stage.AWAITING_RESPONSE, Intent.MEETING, Stage.SCHEDULING),
        (Stage.SCHEDULING, Intent.PRICING, Stage.SCHEDULING),
        (Stage.QUALIFYING, Intent.TRADE_IN, Stage.QUALIFYING),
        (Stage.QUALIFYING, Intent.NOT_INTERESTED, Stage.NURTURE),
        (Stage.NURTURE, Intent.NOT_INTERESTED, Stage.CLOSED),
        (Stage.QUALIFYING, Intent.COMPLAINT, Stage.OBJECTION_HANDLING),
    ],
)
def test_transitions(current: Stage, intent: Intent, expected: Stage) -> None:
    assert next_stage(current, analysis(intent)) == expected


def test_pricing_is_an_objection_only_when_negative() -> None:
    assert next_stage(Stage.QUALIFYING, analysis(Intent.PRICING)) == Stage.QUALIFYING
    objection = analysis(Intent.PRICING, sentiment=-0.4)
    assert next_stage(Stage.QUALIFYING, objection) == Stage.OBJECTION_HANDLING
    financing = analysis(Intent.FINANCING, sentiment=-0.2)
    assert next_stage(Stage.SCHEDULING, financing) == Stage.OBJECTION_HANDLING


def test_a_handled_objection_returns_to_qualifying() -> None:
    assert (
        next_stage(Stage.OBJECTION_HANDLING, analysis(Intent.PRODUCT_INQUIRY)) == Stage.QUALIFYING
    )


def test_escalation_hands_off_and_handoff_is_sticky() -> None:
    escalated = analysis(Intent.FINANCING)
    assert next_stage(Stage.QUALIFYING, escalated, escalated=True) == Stage.HUMAN_HANDOFF
    assert next_stage(Stage.QUALIFYING, escalated) == Stage.QUALIFYING
    assert next_stage(Stage.HUMAN_HANDOFF, analysis(Intent.MEETING)) == Stage.HUMAN_HANDOFF
    assert stage_after_release(Stage.HUMAN_HANDOFF) == Stage.QUALIFYING
    assert not ai_may_reply(Stage.HUMAN_HANDOFF)
    assert ai_may_reply(Stage.QUALIFYING)


def test_opt_out_closes_at_once() -> None:
    stop = analysis(Intent.NOT_INTERESTED, fields={"opt_out": True})
    assert next_stage(Stage.QUALIFYING, stop) == Stage.CLOSED


def test_outreach_and_follow_up_helpers() -> None:
    assert stage_after_outreach(Stage.INITIAL_OUTREACH) == Stage.AWAITING_RESPONSE
    assert stage_after_outreach(Stage.QUALIFYING) == Stage.QUALIFYING
    assert stage_after_follow_ups_exhausted(Stage.QUALIFYING) == Stage.NURTURE
    assert stage_after_follow_ups_exhausted(Stage.HUMAN_HANDOFF) == Stage.HUMAN_HANDOFF
    assert stage_after_follow_ups_exhausted(Stage.CLOSED) == Stage.CLOSED


@pytest.mark.parametrize("current", list(Stage))
def test_every_event_outside_a_turn_has_its_transition(current: Stage) -> None:
    in_human_hands_or_closed = current in (Stage.HUMAN_HANDOFF, Stage.CLOSED)
    assert stage_for_outreach(current) == (
        current if in_human_hands_or_closed else Stage.INITIAL_OUTREACH
    )
    assert stage_after_follow_up(current) == (
        current if in_human_hands_or_closed else Stage.NURTURE
    )
    assert stage_on_handoff(current) == (
        Stage.CLOSED if current == Stage.CLOSED else Stage.HUMAN_HANDOFF
    )
    assert stage_after_close(current) == Stage.CLOSED
    assert stage_after_release(current) == (
        Stage.QUALIFYING if current == Stage.HUMAN_HANDOFF else current
    )
    assert stage_after_outreach(current) == (
        Stage.AWAITING_RESPONSE if current == Stage.INITIAL_OUTREACH else current
    )


@pytest.mark.parametrize(
    ("current", "after", "expected"),
    [
        (Stage.QUALIFYING, None, Stage.NURTURE),  # before version 3: nurture, then the cadence
        (Stage.QUALIFYING, "nurture", Stage.NURTURE),
        (Stage.NURTURE, "nurture", Stage.CLOSED),  # a second "no" while nurtured closes
        (Stage.QUALIFYING, "close", Stage.CLOSED),
        (Stage.SCHEDULING, "close", Stage.CLOSED),
        (Stage.HUMAN_HANDOFF, "close", Stage.HUMAN_HANDOFF),
    ],
)
def test_not_interested_follows_the_playbook(
    current: Stage, after: Literal["close", "nurture"] | None, expected: Stage
) -> None:
    declined = analysis(Intent.NOT_INTERESTED)
    assert next_stage(current, declined, after_not_interested=after) == expected


def test_an_opt_out_closes_whatever_the_playbook_says_about_not_interested() -> None:
    stop = analysis(Intent.NOT_INTERESTED, fields={"opt_out": True})
    assert next_stage(Stage.QUALIFYING, stop, after_not_interested="nurture") == Stage.CLOSED


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (Stage.CLOSED, Stage.AWAITING_RESPONSE),  # re-opened: the turn's perception moves it on
        (Stage.INITIAL_OUTREACH, Stage.AWAITING_RESPONSE),
        (Stage.QUALIFYING, Stage.QUALIFYING),
        (Stage.SCHEDULING, Stage.SCHEDULING),
        (Stage.NURTURE, Stage.NURTURE),
        (Stage.HUMAN_HANDOFF, Stage.HUMAN_HANDOFF),  # still the human's
    ],
)
def test_a_resumed_conversation_starts_where_the_last_run_left_it(
    previous: Stage, expected: Stage
) -> None:
    assert stage_on_resume(previous) == expected


def test_a_closed_conversation_that_hears_again_qualifies_or_closes_again() -> None:
    reopened = stage_on_resume(Stage.CLOSED)
    assert next_stage(reopened, analysis(Intent.PRICING)) == Stage.QUALIFYING
    declined = analysis(Intent.NOT_INTERESTED)
    assert next_stage(reopened, declined, after_not_interested="close") == Stage.CLOSED
