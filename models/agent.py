"""Contracts of the agent's steps: perception, reply writing, the reply guard, e-mail writing,
lead scoring.

Perception is what a model (or the offline rules) read in the lead's messages; it decides
nothing. Escalation, stages, scoring and timing are decided by the workflow (workflows/).
Activity inputs carry a playbook *reference* and knowledge *ids*, never the documents, so a
turn adds little to the workflow history.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from models.common import Intent, LeadQuality, Priority, ReplyPurpose, Stage
from models.messages import Frozen
from models.policy import PlaybookRef

FieldValue = str | int | float | bool

SUMMARY_MAX = 120  # a one-line summary; it travels through the workflow history


class TokenUsage(Frozen):
    """What the model calls of one step cost (all attempts of the step, repairs included)."""

    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 1


class Perception(Frozen):
    """What the lead's new messages say, as perceived by a model or the offline rules."""

    intent: Intent
    secondary_intents: tuple[Intent, ...] = ()
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    language: str = "en"
    sentiment: float = Field(default=0.0, ge=-1.0, le=1.0)
    fields: dict[str, FieldValue] = Field(default_factory=dict)
    summary: str = Field(default="", description=f"One line (the agent keeps {SUMMARY_MAX} chars).")


class LegacyEscalation(Frozen):
    """The escalation decision providers made before the agent boundary moved it into the
    workflow; only histories recorded before that change carry it (see AnalysisResult)."""

    escalate: bool = False
    rule: str | None = None
    reason: str | None = None
    priority: Priority = Priority.NORMAL


class AnalysisResult(Frozen):
    perception: Perception
    usage: TokenUsage
    legacy: LegacyEscalation | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_legacy_shape(cls, data: Any) -> Any:
        # Histories recorded before the boundary moved have {"analysis": {..., "escalate": ...}}.
        if isinstance(data, dict) and "analysis" in data and "perception" not in data:
            data = dict(data)
            old = dict(data.pop("analysis"))
            data["perception"] = old
            data["legacy"] = {
                "escalate": old.get("escalate", False),
                "rule": old.get("escalation_rule"),
                "reason": old.get("escalation_reason"),
                "priority": old.get("priority", Priority.NORMAL),
            }
        return data


class KnowledgeHit(Frozen):
    document_id: str
    title: str
    snippet: str = ""
    score: float = 0.0


class AnalyseInput(Frozen):
    tenant_id: str
    playbook: PlaybookRef
    conversation_id: str | None = Field(
        default=None,
        description="Earlier messages and what is known about the lead are read from the "
        "database by this id (they are not copied into the history every turn).",
    )
    new_messages: tuple[str, ...]
    knowledge_ids: tuple[str, ...] = Field(
        default=(), description="Knowledge hits for the new messages (the activity reads them)."
    )
    turn: int = 0


class SearchKnowledgeInput(Frozen):
    tenant_id: str
    query: str
    limit: int = 3


class GuardVerdict(Frozen):
    """The reply guard's answer: deterministic rules, not a model call."""

    ok: bool
    rule: str | None = Field(
        default=None, description="leak | unsupported_amount | forbidden_promise | ..."
    )
    reason: str | None = None


class GenerateReplyInput(Frozen):
    tenant_id: str
    playbook: PlaybookRef
    purpose: ReplyPurpose
    stage: Stage
    conversation_id: str | None = None
    perception: Perception | None = None
    new_messages: tuple[str, ...] = Field(
        default=(), description="This turn's lead messages (not in the database yet)."
    )
    knowledge_ids: tuple[str, ...] = ()
    contact_name: str | None = None
    language: str | None = None
    follow_up_number: int = 0
    instruction: str | None = Field(default=None, description="Free text, e.g. an outreach brief.")
    escalation_rule: str | None = Field(
        default=None, description="For an escalation notice: the rule that handed over."
    )
    turn: int = 0


class GeneratedReply(Frozen):
    text: str
    usage: TokenUsage
    guard: GuardVerdict | None = Field(
        default=None, description="Set when the guard blocked `text`: it must not be sent."
    )
    knowledge_ids: tuple[str, ...] = Field(default=(), description="Knowledge the reply used.")
    inventory_keys: tuple[str, ...] = Field(
        default=(),
        description="Keys of the inventory items the reply cites (their prices are the ones "
        "the reply guard accepted).",
    )


class DraftTurnInput(AnalyseInput):
    """Perceive the new messages and, in the same activity, draft the reply to them."""

    stage: Stage = Field(description="The conversation's stage before this turn.")
    contact_name: str | None = None


class TurnDraft(Frozen):
    """What the lead said, and the reply a model drafted for it before anything was decided.

    The workflow still decides: it uses the draft only when its own policy answers the turn
    with a plain reply (no escalation); otherwise the draft is discarded. Drafting here saves
    the turn a workflow task and an activity (issue: throughput)."""

    analysis: AnalysisResult
    reply: GeneratedReply | None = Field(
        default=None,
        description="None when drafting failed: the workflow asks for the reply on its own, "
        "with the reply step's retries and fallback.",
    )
    draft_error: str | None = None


class ScoreComponent(Frozen):
    name: str
    points: float
    max_points: float
    reason: str


class LeadScore(Frozen):
    total: int = Field(ge=0, le=100)
    quality: LeadQuality
    components: tuple[ScoreComponent, ...] = ()


class CompanyFacts(Frozen):
    """What enrichment learnt about a lead's company; grounds the personalised e-mail."""

    company: str | None = None
    website: str | None = None
    summary: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    social_links: tuple[str, ...] = ()


class WriteEmailInput(Frozen):
    tenant_id: str
    playbook: PlaybookRef
    job_id: str | None = None
    lead: dict[str, str] = Field(default_factory=dict, description="The CSV row's columns.")
    facts: CompanyFacts
    language: str | None = None
    instruction: str | None = None


class WrittenEmail(Frozen):
    subject: str
    body: str
    usage: TokenUsage
