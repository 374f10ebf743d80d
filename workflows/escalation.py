"""Escalation, priority and field policy: pure functions the conversation workflow decides with.

What a model perceived (intents, confidence, sentiment, fields) goes in; which playbook rule
hands the lead to a human, who is told, and how urgent the lead is come out. No I/O, no clock:
a replayed workflow takes the same decisions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

from models.agent import FieldValue, Perception
from models.common import Intent, Priority
from models.messages import Frozen
from models.playbook import EscalationRule
from models.policy import ConversationPolicy
from workflows.stages import opted_out

_PRIORITY_ORDER = (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)


class EscalationDecision(Frozen):
    rule: str
    reason: str
    notify: tuple[str, ...] = ()


@lru_cache(maxsize=4096)
def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole words; a trailing * matches any ending; spaces match any whitespace."""
    stem = keyword.strip().lower()
    wildcard = stem.endswith("*")
    stem = stem.rstrip("*")
    body = r"\s+".join(re.escape(part) for part in stem.split())
    ending = r"\w*" if wildcard else ""
    return re.compile(rf"(?<!\w){body}{ending}(?!\w)", re.IGNORECASE)


def matched_keywords(text: str, keywords: Mapping[str, Iterable[str]]) -> list[str]:
    found: list[str] = []
    for words in keywords.values():
        for keyword in words:
            if keyword and keyword not in found and keyword_pattern(keyword).search(text):
                found.append(keyword)
    return found


def _budget(fields: Mapping[str, FieldValue]) -> int | None:
    value = fields.get("budget")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _rule_matches(
    rule: EscalationRule, perception: Perception, text: str, fields: Mapping[str, FieldValue]
) -> list[str] | None:
    """The reasons the rule holds, or None when one of its set conditions fails."""
    reasons: list[str] = []
    conditions = 0
    if rule.intents:
        conditions += 1
        intents = (perception.intent, *perception.secondary_intents)
        hit = [i for i in intents if i in rule.intents]
        if not hit:
            return None
        reasons.append(f"intent {hit[0].value}")
    if rule.keywords:
        conditions += 1
        words = matched_keywords(text, rule.keywords)
        if not words:
            return None
        reasons.append("mentions " + ", ".join(repr(w) for w in words))
    if rule.confidence_below is not None:
        conditions += 1
        if perception.confidence >= rule.confidence_below:
            return None
        reasons.append(f"confidence {perception.confidence:.2f} < {rule.confidence_below:.2f}")
    if rule.min_budget is not None:
        conditions += 1
        budget = _budget(fields)
        if budget is None or budget < rule.min_budget:
            return None
        reasons.append(f"budget €{budget:,} ≥ €{rule.min_budget:,}")
    if rule.negative_sentiment_below is not None:
        conditions += 1
        if perception.sentiment >= rule.negative_sentiment_below:
            return None
        reasons.append(f"sentiment {perception.sentiment:.2f}")
    return reasons if conditions else None


def decide_escalation(
    policy: ConversationPolicy,
    perception: Perception,
    *,
    text: str,
    fields: Mapping[str, FieldValue],
) -> EscalationDecision | None:
    """The first playbook rule (in file order) whose set conditions all hold.

    `text` is what the lead wrote this turn (keyword rules read it); `fields` are everything
    known about the lead after this turn (a budget rule reads the merged budget). An opt-out is
    never an escalation: the lead asked for silence, not for a person.
    """
    if opted_out(perception):
        return None
    for rule in policy.escalation:
        reasons = _rule_matches(rule, perception, text, fields)
        if reasons is None:
            continue
        lead_in = f"{rule.description} " if rule.description else ""
        return EscalationDecision(
            rule=rule.name, reason=f"{lead_in}({'; '.join(reasons)})", notify=rule.notify
        )
    return None


def priority_of(
    policy: ConversationPolicy,
    perception: Perception,
    fields: Mapping[str, FieldValue],
    *,
    escalated: bool,
) -> Priority:
    """The playbook's priority for the primary intent, one step up when the lead is in a hurry,
    and at least high when a human is being pulled in (they should see it first)."""
    priority = policy.intent_priority.get(perception.intent, Priority.NORMAL)
    if fields.get("urgency") is True:
        priority = _PRIORITY_ORDER[min(_PRIORITY_ORDER.index(priority) + 1, 3)]
    if escalated and priority in (Priority.LOW, Priority.NORMAL):
        priority = Priority.HIGH
    return priority


def keep_declared(
    policy: ConversationPolicy, fields: Mapping[str, FieldValue]
) -> dict[str, FieldValue]:
    """The perceived fields the playbook declares, coerced to their declared types; a value a
    model sent in the wrong shape ("25k" for an int) is dropped rather than stored wrong."""
    kept: dict[str, FieldValue] = {}
    for name, value in fields.items():
        kind = policy.fields.get(name)
        if kind is None or value is None or value == "":
            continue
        if kind == "int":
            if isinstance(value, bool):
                continue
            try:
                kept[name] = int(float(value))
            except (TypeError, ValueError):
                continue
        elif kind == "bool":
            if isinstance(value, bool):
                kept[name] = value
            elif isinstance(value, str) and value.strip().lower() in ("true", "yes", "false", "no"):
                kept[name] = value.strip().lower() in ("true", "yes")
        else:
            kept[name] = value if isinstance(value, str) else str(value)
    return kept


def recipients(decision_notify: Sequence[str], specialists_roles: Sequence[str]) -> list[int]:
    """Indexes of the specialists to tell: those whose role the rule names, or all of them when
    the rule names none."""
    roles = set(decision_notify)
    return [i for i, role in enumerate(specialists_roles) if not roles or role in roles]


def intents_of(perception: Perception) -> tuple[Intent, ...]:
    return (perception.intent, *perception.secondary_intents)
