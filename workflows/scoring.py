"""Lead scoring: deterministic, explainable, and safe to run inside the workflow sandbox.

The score is the sum of named components, each with the points it gave, the most it could give
and why, so an operator can see *why* a lead is HOT. Weights and thresholds come from the
playbook. No I/O, no clock, no randomness: only models.* and the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from models.agent import FieldValue, LeadScore, ScoreComponent
from models.common import Intent, LeadQuality, Priority
from models.playbook import ScoringWeights

URGENT_PRIORITIES = frozenset({Priority.HIGH, Priority.URGENT})


def _present(value: FieldValue | None) -> bool:
    # `False` is an answer ("no trade-in") but earns no points: it is not buying interest.
    return value is not None and value != "" and value is not False


def quality_for(weights: ScoringWeights, total: int) -> LeadQuality:
    if total >= weights.hot_at:
        return LeadQuality.HOT
    if total >= weights.warm_at:
        return LeadQuality.WARM
    if total >= weights.lukewarm_at:
        return LeadQuality.LUKEWARM
    return LeadQuality.COLD


def score_lead(
    weights: ScoringWeights,
    fields: Mapping[str, FieldValue],
    intents_seen: Sequence[Intent],
    lead_messages: int,
    priority: Priority,
) -> LeadScore:
    """Score a lead from what it said (intents, oldest first), what we know and how engaged it is.

    - intent: the strongest buying signal seen so far (the best positive intent points);
    - intent_penalty: a negative-points intent (e.g. not_interested) counts only while it is
      the lead's most recent stance, so a lead who comes back is not punished forever;
    - field:<name>: the playbook's points for each known field;
    - engagement: points per lead message, capped;
    - urgency: the latest priority is high/urgent or the lead said it is in a hurry.
    """
    components: list[ScoreComponent] = []

    positive = {i: p for i, p in weights.intent_points.items() if p > 0}
    max_intent = max(positive.values(), default=0.0)
    seen_positive = [i for i in intents_seen if i in positive]
    if max_intent > 0:
        best = max(seen_positive, key=lambda i: positive[i], default=None)
        components.append(
            ScoreComponent(
                name="intent",
                points=positive[best] if best else 0.0,
                max_points=max_intent,
                reason=f"strongest intent so far: {best.value}" if best else "no buying intent yet",
            )
        )
    if intents_seen:
        latest = intents_seen[-1]
        penalty = weights.intent_points.get(latest, 0.0)
        if penalty < 0:
            components.append(
                ScoreComponent(
                    name="intent_penalty",
                    points=penalty,
                    max_points=0.0,
                    reason=f"latest intent: {latest.value}",
                )
            )

    for name, points in weights.field_points.items():
        known = _present(fields.get(name))
        components.append(
            ScoreComponent(
                name=f"field:{name}",
                points=points if known else 0.0,
                max_points=points,
                reason=f"{name} known" if known else f"{name} unknown",
            )
        )

    engagement = min(max(lead_messages, 0) * weights.engagement_per_message, weights.engagement_max)
    components.append(
        ScoreComponent(
            name="engagement",
            points=engagement,
            max_points=weights.engagement_max,
            reason=f"{lead_messages} message(s) from the lead",
        )
    )

    hurried = priority in URGENT_PRIORITIES or fields.get("urgency") is True
    components.append(
        ScoreComponent(
            name="urgency",
            points=weights.urgency_points if hurried else 0.0,
            max_points=weights.urgency_points,
            reason=(
                f"priority {priority.value}"
                + (", lead is in a hurry" if fields.get("urgency") is True else "")
            ),
        )
    )

    raw = sum(c.points for c in components)
    total = max(0, min(100, round(raw)))
    return LeadScore(total=total, quality=quality_for(weights, total), components=tuple(components))
