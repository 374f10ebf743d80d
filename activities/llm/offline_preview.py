"""What the offline provider would answer a few sample messages under a playbook: the settings
page's preview (`POST /api/v1/settings/playbook/preview`), before a playbook is saved.

Nothing here decides anything of its own. Each sample message is one turn of one conversation,
played through the same public pieces a real turn uses: the offline backend perceives and
writes (activities/llm/offline.py), the workflow's pure decisions pick the escalation and the
stage (workflows/escalation.py, workflows/stages.py), and the reply guard checks the reply
(activities/llm/guard.py). What a preview does not have: the tenant's knowledge documents and
inventory (a reply that would cite them reads more generic here), the lead's name, follow-up
timers and quiet hours (they change when a message goes out, not what it says), and the model
providers (the preview is the offline provider's by definition)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from activities.llm import prompts
from activities.llm.base import PerceptionContext, WritingContext
from activities.llm.guard import check_reply
from activities.llm.offline import OfflineBackend
from models.agent import FieldValue, Perception
from models.common import ReplyPurpose, Role, Stage
from models.messages import TranscriptEntry
from models.playbook import Playbook
from models.policy import policy_of
from workflows.escalation import decide_escalation, keep_declared
from workflows.stages import ai_may_reply, next_stage, opted_out

MAX_PREVIEW_MESSAGES = 20


@dataclass(frozen=True)
class PreviewEscalation:
    rule: str
    reason: str
    notify: tuple[str, ...]


@dataclass(frozen=True)
class PreviewTurn:
    """One sample message and what the conversation did with it."""

    message: str
    reply: str | None  # None: the AI stays silent (a human has the conversation, or it closed)
    purpose: str | None  # reply | escalation_notice
    stage: str  # after this message
    intent: str
    language: str
    confidence: float
    fields: dict[str, FieldValue]  # everything known after this message
    escalation: PreviewEscalation | None
    blocked: str | None  # the reply guard's rule and reason when it stopped the reply
    note: str


async def preview_replies(playbook: Playbook, messages: Sequence[str]) -> list[PreviewTurn]:
    """The offline provider's answers to `messages`, one turn each, in order, as one lead's
    conversation (see the module doc for what a preview leaves out)."""
    if len(messages) > MAX_PREVIEW_MESSAGES:
        raise ValueError(f"at most {MAX_PREVIEW_MESSAGES} messages")
    backend = OfflineBackend()
    policy = policy_of(playbook)
    stage = Stage.AWAITING_RESPONSE
    fields: dict[str, FieldValue] = {}
    transcript: list[TranscriptEntry] = []
    clock = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # a fixed clock: previews are repeatable
    turns: list[PreviewTurn] = []
    for text in messages:
        clock += timedelta(minutes=1)
        perceived = await backend.perceive(
            PerceptionContext(
                playbook=playbook,
                new_messages=(text,),
                transcript=tuple(transcript),
                known_fields=dict(fields),
            )
        )
        perception = perceived.perception
        fields.update(keep_declared(policy, perception.fields))
        transcript.append(TranscriptEntry(role=Role.LEAD, text=text, at=clock))
        if not ai_may_reply(stage):
            turns.append(
                _turn(text, None, None, stage, perception, fields, None, None, _silent(stage))
            )
            continue
        decision = decide_escalation(policy, perception, text=text, fields=fields)
        if decision is not None:
            stage = next_stage(stage, perception, escalated=True)
            purpose = ReplyPurpose.ESCALATION_NOTICE
        else:
            stage = next_stage(
                stage, perception, after_not_interested=policy.follow_up.after_not_interested
            )
            purpose = ReplyPurpose.REPLY
        written = await backend.write(
            WritingContext(
                playbook=playbook,
                purpose=purpose,
                stage=stage,
                transcript=tuple(transcript),
                perception=perception.model_copy(update={"summary": ""}),
                known_fields=dict(fields),
                language=perception.language,
                escalation_rule=decision.rule if decision else None,
            )
        )
        escalation = (
            PreviewEscalation(rule=decision.rule, reason=decision.reason, notify=decision.notify)
            if decision
            else None
        )
        blocked: str | None = None
        if purpose is ReplyPurpose.REPLY:
            verdict = check_reply(
                written.text,
                lead_language=perception.language,
                allowed_languages=playbook.languages,
                lead_texts=[e.text for e in transcript if e.role == Role.LEAD],
                knowledge_texts=(),
                protected_texts=prompts.protected_texts(playbook),
                public_texts=prompts.public_texts(playbook),
                forbidden_promises=playbook.forbidden_promises,
            )
            if not verdict.ok:
                blocked = f"{verdict.rule}: {verdict.reason}"
                stage = Stage.HUMAN_HANDOFF  # a blocked reply hands the conversation over
        note = _note(escalation, blocked, perception, stage)
        transcript.append(TranscriptEntry(role=Role.AI, text=written.text, at=clock))
        turns.append(
            _turn(text, written.text, purpose, stage, perception, fields, escalation, blocked, note)
        )
    return turns


def _turn(
    text: str,
    reply: str | None,
    purpose: ReplyPurpose | None,
    stage: Stage,
    perception: Perception,
    fields: dict[str, FieldValue],
    escalation: PreviewEscalation | None,
    blocked: str | None,
    note: str,
) -> PreviewTurn:
    return PreviewTurn(
        message=text,
        reply=reply,
        purpose=purpose.value if purpose else None,
        stage=stage.value,
        intent=perception.intent.value,
        language=perception.language,
        confidence=perception.confidence,
        fields=dict(fields),
        escalation=escalation,
        blocked=blocked,
        note=note,
    )


def _silent(stage: Stage) -> str:
    if stage == Stage.HUMAN_HANDOFF:
        return "a human has the conversation: the AI stays silent until it is released"
    return "the conversation is closed: the AI does not answer"


def _note(
    escalation: PreviewEscalation | None,
    blocked: str | None,
    perception: Perception,
    stage: Stage,
) -> str:
    if escalation is not None:
        notify = f", notifies {', '.join(escalation.notify)}" if escalation.notify else ""
        return (
            f"escalated by rule {escalation.rule!r}{notify}: the lead is told a person takes over"
        )
    if blocked is not None:
        return f"the reply guard would block this reply ({blocked}): a human would take over"
    if opted_out(perception):
        return "the lead opted out: acknowledged, marked do-not-contact, conversation closed"
    return f"answered by the offline provider; the conversation is now in {stage.value}"
