"""Conversation stage transitions: plain functions, safe inside the workflow sandbox.

The stage says where the sale stands; each function below is one kind of event. They import
only models.* and never read a clock, so a replayed workflow takes the same path.
"""

from __future__ import annotations

from typing import Literal

from models.agent import Perception
from models.common import Intent, Stage

# Stages where the lead has not (re)engaged yet; any real message moves them to qualifying.
_NOT_ENGAGED = frozenset(
    {Stage.INITIAL_OUTREACH, Stage.AWAITING_RESPONSE, Stage.NURTURE, Stage.CLOSED}
)
# Questions about the offer: they qualify the lead without changing a later stage.
_INFORMATIONAL = frozenset(
    {
        Intent.PRODUCT_INQUIRY,
        Intent.PRICING,
        Intent.FINANCING,
        Intent.TRADE_IN,
        Intent.GREETING,
        Intent.OTHER,
        Intent.HUMAN_REQUEST,  # only reaches here when no escalation rule fired
    }
)


def is_objection(analysis: Perception) -> bool:
    """Price or financing raised with a negative tone ("te duur"), or a complaint that no rule
    escalated: things to handle before selling on."""
    if analysis.intent == Intent.COMPLAINT:
        return True
    return analysis.intent in (Intent.PRICING, Intent.FINANCING) and analysis.sentiment < 0


def opted_out(analysis: Perception) -> bool:
    """The lead asked for no more messages: the perception's `opt_out` field, nothing else."""
    return analysis.fields.get("opt_out") is True


def not_interested(analysis: Perception) -> bool:
    """Declined (or bought elsewhere) without opting out: the cadence ends, the playbook says
    how (`follow_up.after_not_interested`)."""
    return analysis.intent == Intent.NOT_INTERESTED and not opted_out(analysis)


def next_stage(
    current: Stage,
    analysis: Perception,
    *,
    escalated: bool = False,
    after_not_interested: Literal["close", "nurture"] | None = None,
) -> Stage:
    """The stage after the lead's message(s) were perceived (`escalated`: a rule handed over).

    In order: a conversation in human hands stays there (only `stage_after_release` ends that);
    an escalation hands it to a human; an opt-out closes it; not-interested parks it in nurture,
    or closes it when it already was in nurture or the playbook says `close`
    (`after_not_interested`; None: the rule before version 3, nurture); a meeting request goes
    to scheduling; an objection to objection handling; anything else qualifies a lead that was
    not engaged, moves an answered objection back to qualifying, and leaves
    qualifying/scheduling as they are.
    """
    if current == Stage.HUMAN_HANDOFF:
        return Stage.HUMAN_HANDOFF
    if escalated:
        return Stage.HUMAN_HANDOFF
    if opted_out(analysis):
        return Stage.CLOSED
    if analysis.intent == Intent.NOT_INTERESTED:
        if after_not_interested == "close":
            return Stage.CLOSED
        return Stage.CLOSED if current in (Stage.NURTURE, Stage.CLOSED) else Stage.NURTURE
    if analysis.intent == Intent.MEETING:
        return Stage.SCHEDULING
    if is_objection(analysis):
        return Stage.OBJECTION_HANDLING
    if current in _NOT_ENGAGED or current == Stage.OBJECTION_HANDLING:
        return Stage.QUALIFYING
    return current


def stage_for_outreach(current: Stage) -> Stage:
    """We write first (a campaign, an operator's outreach)."""
    return Stage.INITIAL_OUTREACH if current not in (Stage.HUMAN_HANDOFF, Stage.CLOSED) else current


def stage_after_follow_up(current: Stage) -> Stage:
    """A follow-up went out because the lead did not answer: the lead is being nurtured."""
    if current in (Stage.HUMAN_HANDOFF, Stage.CLOSED):
        return current
    return Stage.NURTURE


def stage_on_handoff(current: Stage) -> Stage:
    """An escalation, an operator or an agent's reply hands the conversation to a human."""
    return Stage.CLOSED if current == Stage.CLOSED else Stage.HUMAN_HANDOFF


def stage_after_close(current: Stage) -> Stage:
    """Do-not-contact, an opt-out confirmed, an operator's close: nothing more is sent."""
    del current  # any stage closes
    return Stage.CLOSED


def stage_after_outreach(current: Stage) -> Stage:
    """The first message to a lead was sent: now we wait for an answer."""
    return Stage.AWAITING_RESPONSE if current == Stage.INITIAL_OUTREACH else current


def stage_after_follow_ups_exhausted(current: Stage) -> Stage:
    """Every follow-up of the cadence went unanswered: keep the lead warm at low frequency."""
    if current in (Stage.HUMAN_HANDOFF, Stage.CLOSED):
        return current
    return Stage.NURTURE


def stage_after_release(current: Stage) -> Stage:
    """A human handed the conversation back to the AI."""
    return Stage.QUALIFYING if current == Stage.HUMAN_HANDOFF else current


def ai_may_reply(stage: Stage) -> bool:
    """The AI stays silent while a human has the conversation."""
    return stage != Stage.HUMAN_HANDOFF


def stage_on_resume(previous: Stage) -> Stage:
    """A new run of a conversation with history, started by the lead writing again: where the
    last run left it, except that a closed conversation re-opens as one waiting for the lead (the
    turn's perception then moves it on: a question qualifies it, a second "no" closes it again)
    and an outreach the lead now answers is no longer an outreach. A conversation a human had
    stays with the human (the AI stays silent until released)."""
    if previous in (Stage.CLOSED, Stage.INITIAL_OUTREACH):
        return Stage.AWAITING_RESPONSE
    return previous
