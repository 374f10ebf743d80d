"""Playbooks: a tenant's sales behaviour as a readable YAML file (see models/playbooks/).

One file, read by three parties, each taking only its part:
- the **workflow** takes the policy (`models.policy.policy_of`): intent priorities, the fields it
  keeps, escalation rules and routing, scoring weights, follow-up cadence, quiet hours, handoff
  timing, the fallback texts it sends when no model can run, and the lead's tag taxonomy
  (`tags:`, models/tags.py);
- the **model prompts** take the persona: business, products, tone, languages, the rules the model
  must follow, what each intent and field means;
- the **reply guard** takes the promises the business must never make.

The offline provider's keywords and templates are not part of a playbook: they are that
provider's own pack (activities/llm/packs/). A playbook may override pieces of it under
`offline:`; legacy playbooks that still carry `templates`, intent `keywords` or field
`question`/`label` are read with those moved there, so they keep working unchanged.
"""

from __future__ import annotations

import hashlib
import re
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.common import Intent, Priority
from models.tags import DEFAULT_TAXONOMY, TagTaxonomy

PLAYBOOK_DIR = Path(__file__).parent / "playbooks"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IntentRule(_Frozen):
    intent: Intent
    description: str = Field(default="", description="What the intent means, for the model.")
    priority: Priority | None = Field(
        default=None, description="Priority of a message with this primary intent."
    )


class FieldSpec(_Frozen):
    name: str
    type: Literal["str", "int", "bool"] = "str"
    description: str = Field(default="", description="What to extract, for the model.")


class EscalationRule(_Frozen):
    """A rule matches when every condition it sets holds (unset conditions are ignored; a rule
    that sets none never matches). The first matching rule, in file order, wins. Evaluated by the
    workflow (workflows/escalation.py) on what the model perceived, never by a provider."""

    name: str
    description: str = ""
    intents: tuple[Intent, ...] = ()
    keywords: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Language -> words/phrases in the lead's messages (whole words; a trailing "
        "* matches any ending).",
    )
    confidence_below: float | None = None
    min_budget: int | None = None
    negative_sentiment_below: float | None = Field(
        default=None, description="Matches when the perceived sentiment is below this value."
    )
    notify: tuple[str, ...] = Field(default=(), description="Specialist roles to notify.")


class ScoringWeights(_Frozen):
    intent_points: dict[Intent, float] = Field(default_factory=dict)
    field_points: dict[str, float] = Field(default_factory=dict)
    engagement_per_message: float = 3.0
    engagement_max: float = 15.0
    urgency_points: float = 10.0
    hot_at: int = 75
    warm_at: int = 50
    lukewarm_at: int = 25


class QuietHours(_Frozen):
    start: time = time(21, 0)
    end: time = time(8, 0)
    timezone: str = "UTC"


class FollowUpPolicy(_Frozen):
    cadence: tuple[timedelta, ...] = (timedelta(hours=4), timedelta(days=1), timedelta(days=3))
    after_not_interested: Literal["close", "nurture"] = Field(
        default="close",
        description="A lead who says they are not interested (or bought elsewhere) gets no "
        "follow-up cadence: `close` ends the conversation after the polite answer; `nurture` "
        "keeps it open and sends one last nurture message after `nurture_after`.",
    )
    nurture_after: timedelta = Field(
        default=timedelta(days=90),
        description="With `after_not_interested: nurture`: when the one nurture message goes out.",
    )


class HandoffPolicy(_Frozen):
    holding_after: timedelta = timedelta(minutes=30)


class FallbackTexts(_Frozen):
    """What the lead is told when no model can answer (provider down, budget spent, a reply the
    guard blocked): deterministic, so it needs no model. Language -> text."""

    holding: dict[str, str] = Field(
        default_factory=lambda: {
            "en": "Thanks for your message! A colleague will get back to you as soon as possible.",
            "nl": "Dank je voor je bericht! Een collega neemt zo snel mogelijk contact met je op.",
            "de": "Danke für Ihre Nachricht! Ein Kollege meldet sich so bald wie möglich.",
        }
    )


class ForbiddenPromise(_Frozen):
    """Something the AI must never promise; the reply guard blocks a reply matching a pattern."""

    name: str
    description: str = ""
    patterns: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Language -> regular expressions (case-insensitive)."
    )

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, patterns: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        # A broken regex in a tenant's playbook must fail when it is saved, not on the first
        # reply it would have guarded.
        for language, regexes in patterns.items():
            for pattern in regexes:
                try:
                    re.compile(pattern, re.IGNORECASE)
                except re.error as error:
                    raise ValueError(f"{language} pattern {pattern!r}: {error}") from error
        return patterns


class Playbook(_Frozen):
    name: str
    # --- persona: read by the model prompts
    business_name: str
    business_description: str
    products: str = Field(default="", description="What the business offers, in its own words.")
    default_language: str = "en"
    languages: tuple[str, ...] = ("en",)
    tone: str = "friendly, concise, professional"
    assistant_name: str | None = Field(
        default=None, description="How the AI introduces itself, e.g. 'Sanne'."
    )
    rules: tuple[str, ...] = Field(
        default=(), description="Instructions the model must follow in every message."
    )
    channels: tuple[str, ...] = ()
    intents: tuple[IntentRule, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    # --- policy: evaluated by the workflow
    escalation: tuple[EscalationRule, ...] = ()
    scoring: ScoringWeights = ScoringWeights()
    follow_up: FollowUpPolicy = FollowUpPolicy()
    quiet_hours: QuietHours | None = None
    handoff: HandoffPolicy = HandoffPolicy()
    fallback: FallbackTexts = FallbackTexts()
    tags: TagTaxonomy = Field(
        default=DEFAULT_TAXONOMY,
        description="The tags the workflow computes for the lead (models/tags.py): families "
        "switched off, the meeting tag's word, budget bands, the VIP thresholds.",
    )
    # --- the reply guard
    forbidden_promises: tuple[ForbiddenPromise, ...] = ()
    # --- the offline provider
    offline_pack: str | None = Field(
        default=None,
        description="The offline provider's keyword/template pack; default: the pack named like "
        "this playbook, else the generic one.",
    )
    offline: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the offline pack (templates, keywords, questions, labels).",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_offline_keys(cls, data: Any) -> Any:
        """Playbooks written before the split carried the offline provider's keywords and
        templates inline; move them under `offline:` so stored tenant playbooks stay valid."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        offline: dict[str, Any] = dict(data.get("offline") or {})
        if "templates" in data:
            offline.setdefault("templates", data.pop("templates"))
        intents = []
        for rule in data.get("intents") or ():
            if isinstance(rule, dict) and "keywords" in rule:
                rule = dict(rule)
                offline.setdefault("keywords", {})[str(rule["intent"])] = rule.pop("keywords")
            intents.append(rule)
        if intents:
            data["intents"] = intents
        fields = []
        for spec in data.get("fields") or ():
            if isinstance(spec, dict) and ("question" in spec or "label" in spec):
                spec = dict(spec)
                if "question" in spec:
                    offline.setdefault("questions", {})[spec["name"]] = spec.pop("question")
                if "label" in spec:
                    offline.setdefault("labels", {})[spec["name"]] = spec.pop("label")
            fields.append(spec)
        if fields:
            data["fields"] = fields
        if offline:
            data["offline"] = offline
        return data

    @property
    def content_hash(self) -> str:
        """Identifies this exact playbook: activities receive (tenant, hash), never the file.
        Computed each time (not cached on the instance): `model_copy(update=...)` would carry a
        cached value over to a changed copy."""
        # A playbook with the default tags hashes as it did before tags existed: running
        # conversations keep the policy they hold instead of all refreshing it at once.
        raw = self.model_dump_json(
            exclude={"tags"} if self.tags == DEFAULT_TAXONOMY else None
        ).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def load_playbook_file(path: Path) -> Playbook:
    return Playbook.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def builtin_playbooks() -> dict[str, Playbook]:
    return {p.stem: load_playbook_file(p) for p in sorted(PLAYBOOK_DIR.glob("*.yaml"))}


def parse_playbook_yaml(text: str) -> Playbook:
    return Playbook.model_validate(yaml.safe_load(text))


def neutral_playbook(business_name: str, *, languages: tuple[str, ...] = ("en",)) -> Playbook:
    """A tenant without a playbook of its own: its own name, a neutral persona and the common
    escalations (a complaint, a request for a person, a message nobody understood) — never the
    identity of a demo business."""
    return Playbook(
        name="neutral",
        business_name=business_name,
        business_description=f"{business_name} answers questions from prospective customers.",
        default_language=languages[0],
        languages=languages,
        intents=(
            IntentRule(
                intent=Intent.GREETING, description="Hello or thanks.", priority=Priority.LOW
            ),
            IntentRule(intent=Intent.PRODUCT_INQUIRY, description="Asks about the offer."),
            IntentRule(intent=Intent.PRICING, description="Asks what something costs."),
            IntentRule(
                intent=Intent.MEETING,
                description="Wants a call or a meeting.",
                priority=Priority.HIGH,
            ),
            IntentRule(intent=Intent.COMPLAINT, description="Is unhappy.", priority=Priority.HIGH),
            IntentRule(
                intent=Intent.HUMAN_REQUEST, description="Wants a person.", priority=Priority.HIGH
            ),
            IntentRule(intent=Intent.NOT_INTERESTED, description="Declines or opts out."),
        ),
        fields=(
            FieldSpec(name="name", description="The lead's name, when they tell it."),
            FieldSpec(name="email", description="E-mail address."),
            FieldSpec(name="phone", description="Phone number."),
            FieldSpec(name="company", description="The lead's company."),
            FieldSpec(name="timeline", description="When the lead wants it, as they said it."),
            FieldSpec(name="opt_out", type="bool", description="Asked to receive no messages."),
        ),
        escalation=(
            EscalationRule(name="complaint", intents=(Intent.COMPLAINT,), notify=()),
            EscalationRule(name="human_request", intents=(Intent.HUMAN_REQUEST,), notify=()),
            EscalationRule(name="low_confidence", confidence_below=0.3, notify=()),
        ),
        offline_pack="generic",
    )
