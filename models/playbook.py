"""Playbooks: a tenant's sales behaviour as a readable YAML file (see models/playbooks/)."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from models.common import Intent, Priority

PLAYBOOK_DIR = Path(__file__).parent / "playbooks"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IntentRule(_Frozen):
    intent: Intent
    description: str = ""
    keywords: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Language code -> words/phrases the offline rules match (whole words; "
        "a trailing * matches any ending, e.g. 'financ*').",
    )
    priority: Priority | None = Field(
        default=None, description="Priority of a message with this primary intent."
    )


class FieldSpec(_Frozen):
    name: str
    type: Literal["str", "int", "bool"] = "str"
    description: str = ""
    label: dict[str, str] = Field(
        default_factory=dict, description="Language -> how the field is named to the lead."
    )
    question: dict[str, str] = Field(
        default_factory=dict,
        description="Language -> the question that asks for this field; fields are asked in "
        "the order they are listed, skipping those without a question.",
    )


class EscalationRule(_Frozen):
    """A rule matches when every condition it sets holds (unset conditions are ignored; a rule
    that sets none never matches). The first matching rule, in file order, wins."""

    name: str
    description: str = ""
    intents: tuple[Intent, ...] = ()
    keywords: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    confidence_below: float | None = None
    min_budget: int | None = None
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


class HandoffPolicy(_Frozen):
    holding_after: timedelta = timedelta(minutes=30)


class Playbook(_Frozen):
    name: str
    business_name: str
    business_description: str
    default_language: str = "en"
    languages: tuple[str, ...] = ("en",)
    tone: str = "friendly, concise, professional"
    assistant_name: str | None = Field(
        default=None, description="How the AI introduces itself, e.g. 'Sanne'."
    )
    channels: tuple[str, ...] = ()
    intents: tuple[IntentRule, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    escalation: tuple[EscalationRule, ...] = ()
    scoring: ScoringWeights = ScoringWeights()
    follow_up: FollowUpPolicy = FollowUpPolicy()
    quiet_hours: QuietHours | None = None
    handoff: HandoffPolicy = HandoffPolicy()
    templates: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Offline provider texts: key (intent or purpose) -> language -> template.",
    )


def load_playbook_file(path: Path) -> Playbook:
    return Playbook.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def builtin_playbooks() -> dict[str, Playbook]:
    return {p.stem: load_playbook_file(p) for p in sorted(PLAYBOOK_DIR.glob("*.yaml"))}


def parse_playbook_yaml(text: str) -> Playbook:
    return Playbook.model_validate(yaml.safe_load(text))
