"""Lead scoring: explainable components, clamping and quality thresholds."""

from __future__ import annotations

from models.common import Intent, LeadQuality, Priority
from models.playbook import Playbook, ScoringWeights
from models.repo.playbooks import builtin_playbook
from workflows.scoring import score_lead

DEALER = builtin_playbook("car_dealership").scoring


def components(score: object) -> dict[str, float]:
    return {c.name: c.points for c in score.components}  # type: ignore[attr-defined]


def test_a_new_greeting_is_cold() -> None:
    score = score_lead(DEALER, {}, [Intent.GREETING], 1, Priority.LOW)
    assert score.quality == LeadQuality.COLD
    parts = components(score)
    assert parts["intent"] == 5
    assert parts["engagement"] == 3
    assert parts["urgency"] == 0
    assert score.total == 8


def test_a_qualified_test_drive_request_is_hot_and_explained() -> None:
    fields = {
        "make": "Volkswagen",
        "model": "Golf",
        "budget": 25000,
        "fuel_type": "diesel",
        "timeline": "deze week",
        "urgency": True,
    }
    score = score_lead(DEALER, fields, [Intent.PRODUCT_INQUIRY, Intent.MEETING], 3, Priority.URGENT)
    parts = components(score)
    assert parts["intent"] == 35  # the strongest intent seen, meeting
    assert parts["field:budget"] == 10
    assert parts["field:trade_in"] == 0  # unknown
    assert parts["engagement"] == 9
    assert parts["urgency"] == 10
    assert score.total == 35 + 5 + 5 + 10 + 5 + 5 + 9 + 10
    assert score.quality == LeadQuality.HOT
    reasons = {c.name: c.reason for c in score.components}
    assert "meeting" in reasons["intent"]
    assert reasons["field:trade_in"] == "trade_in unknown"
    for c in score.components:
        assert c.points <= c.max_points


def test_engagement_is_capped() -> None:
    score = score_lead(DEALER, {}, [], 50, Priority.NORMAL)
    assert components(score)["engagement"] == DEALER.engagement_max


def test_not_interested_penalises_only_while_it_is_the_latest_intent() -> None:
    gone = score_lead(DEALER, {}, [Intent.PRICING, Intent.NOT_INTERESTED], 2, Priority.LOW)
    assert components(gone)["intent_penalty"] == -40
    assert gone.total == 0  # clamped, never negative
    assert gone.quality == LeadQuality.COLD
    back = score_lead(DEALER, {}, [Intent.NOT_INTERESTED, Intent.MEETING], 3, Priority.HIGH)
    assert "intent_penalty" not in components(back)
    assert back.total == 35 + 9 + 10


def test_false_answers_earn_no_field_points() -> None:
    score = score_lead(DEALER, {"trade_in": False, "make": ""}, [], 0, Priority.NORMAL)
    parts = components(score)
    assert parts["field:trade_in"] == 0 and parts["field:make"] == 0


def test_total_is_clamped_to_100_and_thresholds_come_from_the_playbook() -> None:
    generous = Playbook(
        name="x",
        business_name="x",
        business_description="x",
        scoring=ScoringWeights(
            intent_points={Intent.MEETING: 90},
            field_points={"budget": 50},
            hot_at=95,
            warm_at=60,
            lukewarm_at=10,
        ),
    )
    high = score_lead(generous.scoring, {"budget": 1}, [Intent.MEETING], 10, Priority.URGENT)
    assert high.total == 100
    assert high.quality == LeadQuality.HOT
    warm = score_lead(generous.scoring, {}, [Intent.MEETING], 0, Priority.NORMAL)
    assert warm.total == 90 and warm.quality == LeadQuality.WARM
    luke = score_lead(generous.scoring, {}, [], 4, Priority.NORMAL)
    assert luke.total == 12 and luke.quality == LeadQuality.LUKEWARM


def test_scoring_is_deterministic() -> None:
    args = (DEALER, {"budget": 1000}, [Intent.PRICING], 2, Priority.NORMAL)
    assert score_lead(*args) == score_lead(*args)  # type: ignore[arg-type]
