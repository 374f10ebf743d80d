"""Contracts of the agent's steps: analysis, knowledge, reply generation, lead scoring."""

from __future__ import annotations

from pydantic import Field

from models.common import Intent, LeadQuality, Priority, ReplyPurpose, Stage
from models.messages import Frozen, TranscriptEntry
from models.playbook import Playbook

FieldValue = str | int | float | bool


class TokenUsage(Frozen):
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0


class Analysis(Frozen):
    """The structured result of one analysis call."""

    intent: Intent
    secondary_intents: tuple[Intent, ...] = ()
    priority: Priority = Priority.NORMAL
    language: str = "en"
    sentiment: float = Field(default=0.0, ge=-1.0, le=1.0)
    fields: dict[str, FieldValue] = Field(default_factory=dict)
    escalate: bool = False
    escalation_rule: str | None = None
    escalation_reason: str | None = None
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    summary: str = ""


class AnalysisResult(Frozen):
    analysis: Analysis
    usage: TokenUsage


class KnowledgeHit(Frozen):
    document_id: str
    title: str
    snippet: str
    score: float


class AnalyseInput(Frozen):
    tenant_id: str
    playbook: Playbook
    transcript: tuple[TranscriptEntry, ...]
    new_messages: tuple[str, ...]
    known_fields: dict[str, FieldValue] = Field(default_factory=dict)
    knowledge: tuple[KnowledgeHit, ...] = Field(
        default=(), description="Knowledge hits for the new messages: an answer the tenant wrote."
    )


class SearchKnowledgeInput(Frozen):
    tenant_id: str
    query: str
    limit: int = 3


class GenerateReplyInput(Frozen):
    tenant_id: str
    playbook: Playbook
    purpose: ReplyPurpose
    stage: Stage
    transcript: tuple[TranscriptEntry, ...] = ()
    analysis: Analysis | None = None
    knowledge: tuple[KnowledgeHit, ...] = ()
    known_fields: dict[str, FieldValue] = Field(default_factory=dict)
    contact_name: str | None = None
    language: str | None = None
    follow_up_number: int = 0
    instruction: str | None = Field(default=None, description="Free text, e.g. an outreach brief.")


class GeneratedReply(Frozen):
    text: str
    usage: TokenUsage


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
    playbook: Playbook
    lead: dict[str, str] = Field(default_factory=dict, description="The CSV row's columns.")
    facts: CompanyFacts
    language: str | None = None


class WrittenEmail(Frozen):
    subject: str
    body: str
    usage: TokenUsage
