"""The part of a playbook the conversation workflow decides with, kept in the workflow's state.

It is small (a few KB), survives continue-as-new with the rest of the state, and is refreshed
only when the tenant's playbook changes (its hash differs). Everything a model needs to *write*
stays behind the playbook reference the activities resolve (see models/playbook_service.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.common import Intent, Priority
from models.messages import Frozen
from models.playbook import (
    EscalationRule,
    FallbackTexts,
    FollowUpPolicy,
    HandoffPolicy,
    Playbook,
    QuietHours,
    ScoringWeights,
)
from models.tags import DEFAULT_TAXONOMY, TagTaxonomy

# Fields every policy keeps, declared or not: the workflow acts on them.
CONTROL_FIELDS: dict[str, Literal["str", "int", "bool"]] = {"opt_out": "bool", "urgency": "bool"}


class PlaybookRef(Frozen):
    """How an activity finds the playbook: through a process cache keyed by the hash, so no
    workflow history carries the file. `builtin` names a shipped playbook instead of the
    tenant's own (an enrichment job may choose one)."""

    tenant_id: str
    hash: str | None = Field(default=None, description="None: the tenant's current playbook.")
    builtin: str | None = None


class ConversationPolicy(Frozen):
    playbook_hash: str
    default_language: str = "en"
    languages: tuple[str, ...] = ("en",)
    intent_priority: dict[Intent, Priority] = Field(default_factory=dict)
    fields: dict[str, Literal["str", "int", "bool"]] = Field(
        default_factory=dict, description="The fields the workflow keeps, with their types."
    )
    escalation: tuple[EscalationRule, ...] = ()
    scoring: ScoringWeights = ScoringWeights()
    follow_up: FollowUpPolicy = FollowUpPolicy()
    quiet_hours: QuietHours | None = None
    handoff: HandoffPolicy = HandoffPolicy()
    fallback: FallbackTexts = FallbackTexts()
    tags: TagTaxonomy | None = Field(
        default=None,
        description="The playbook's tag taxonomy; None: the default one (kept out of the "
        "workflow state unless the playbook changes it).",
    )

    @property
    def taxonomy(self) -> TagTaxonomy:
        return self.tags or DEFAULT_TAXONOMY

    def fallback_text(self, language: str | None) -> str:
        texts = self.fallback.holding
        for candidate in (language, self.default_language, "en"):
            if candidate and candidate in texts:
                return texts[candidate]
        return next(iter(texts.values()), "")


def policy_of(playbook: Playbook) -> ConversationPolicy:
    fields: dict[str, Literal["str", "int", "bool"]] = {s.name: s.type for s in playbook.fields}
    for name, kind in CONTROL_FIELDS.items():
        fields.setdefault(name, kind)
    return ConversationPolicy(
        playbook_hash=playbook.content_hash,
        default_language=playbook.default_language,
        languages=playbook.languages or (playbook.default_language,),
        intent_priority={r.intent: r.priority for r in playbook.intents if r.priority is not None},
        fields=fields,
        escalation=playbook.escalation,
        scoring=playbook.scoring,
        follow_up=playbook.follow_up,
        quiet_hours=playbook.quiet_hours,
        handoff=playbook.handoff,
        fallback=playbook.fallback,
        tags=None if playbook.tags == DEFAULT_TAXONOMY else playbook.tags,
    )
