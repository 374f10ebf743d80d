"""Escalation, priority and field policy: the workflow-side decisions, on the shipped playbooks'
rules and on hand-made ones (each condition, each combination, the order of the rules)."""

from __future__ import annotations

import pytest

from models.agent import FieldValue, Perception
from models.common import Intent, Priority
from models.playbook import EscalationRule, FieldSpec, IntentRule, Playbook
from models.policy import policy_of
from models.repo.playbooks import builtin_playbook
from workflows.escalation import (
    decide_escalation,
    keep_declared,
    matched_keywords,
    priority_of,
    recipients,
)

DEALER = policy_of(builtin_playbook("car_dealership"))


def seen(
    intent: Intent,
    *secondary: Intent,
    confidence: float = 0.9,
    sentiment: float = 0.0,
    fields: dict[str, FieldValue] | None = None,
) -> Perception:
    return Perception(
        intent=intent,
        secondary_intents=secondary,
        confidence=confidence,
        sentiment=sentiment,
        fields=fields or {},
    )


def policy(*rules: EscalationRule, fields: tuple[FieldSpec, ...] = ()) -> object:
    return policy_of(
        Playbook(
            name="t",
            business_name="T",
            business_description="t",
            escalation=rules,
            fields=fields,
            intents=(IntentRule(intent=Intent.MEETING, priority=Priority.HIGH),),
        )
    )


def test_a_complaint_reaches_the_manager() -> None:
    decision = decide_escalation(DEALER, seen(Intent.COMPLAINT), text="kapot", fields={})
    assert decision is not None
    assert decision.rule == "complaint"
    assert "manager" in decision.notify
    assert "intent complaint" in decision.reason


def test_a_secondary_intent_also_matches() -> None:
    decision = decide_escalation(
        DEALER,
        seen(Intent.PRICING, Intent.HUMAN_REQUEST),
        text="price? and a person pls",
        fields={},
    )
    assert decision is not None and decision.rule == "human_request"


def test_financing_needs_its_keywords_or_its_budget() -> None:
    plain = decide_escalation(DEALER, seen(Intent.FINANCING), text="kan ik leasen?", fields={})
    assert plain is None
    bkr = decide_escalation(
        DEALER, seen(Intent.FINANCING), text="ik heb een BKR registratie", fields={}
    )
    assert bkr is not None and bkr.rule == "complex_financing"
    big = decide_escalation(
        DEALER, seen(Intent.FINANCING), text="financieren", fields={"budget": 60_000}
    )
    assert big is not None and big.rule == "large_financing"
    assert "budget €60,000 ≥ €50,000" in big.reason


def test_low_confidence_escalates_only_below_the_threshold() -> None:
    assert decide_escalation(DEALER, seen(Intent.OTHER, confidence=0.2), text="x", fields={})
    assert (
        decide_escalation(DEALER, seen(Intent.OTHER, confidence=0.3), text="x", fields={}) is None
    )


def test_an_opt_out_is_never_an_escalation() -> None:
    stop = seen(Intent.COMPLAINT, fields={"opt_out": True})
    assert decide_escalation(DEALER, stop, text="stop spamming me", fields={}) is None


def test_the_first_matching_rule_wins_and_every_set_condition_must_hold() -> None:
    rules = policy(
        EscalationRule(name="empty"),  # sets no condition: never matches
        EscalationRule(
            name="angry_pricing", intents=(Intent.PRICING,), negative_sentiment_below=-0.3
        ),
        EscalationRule(name="any_pricing", intents=(Intent.PRICING,), notify=("sales",)),
    )
    calm = decide_escalation(rules, seen(Intent.PRICING), text="", fields={})  # type: ignore[arg-type]
    angry = decide_escalation(rules, seen(Intent.PRICING, sentiment=-0.8), text="", fields={})  # type: ignore[arg-type]
    assert calm is not None and calm.rule == "any_pricing" and calm.notify == ("sales",)
    assert angry is not None and angry.rule == "angry_pricing"


@pytest.mark.parametrize(
    ("keyword", "text", "hit"),
    [
        ("financ*", "Financiering mogelijk?", True),
        ("financ*", "refinance", False),
        ("credit record", "my  credit\nrecord is bad", True),
        ("bkr", "bkr-toetsing", True),
        ("bkr", "abkr", False),
    ],
)
def test_keywords_are_whole_words_with_wildcards(keyword: str, text: str, hit: bool) -> None:
    assert bool(matched_keywords(text, {"en": (keyword,)})) is hit


def test_priority_comes_from_the_playbook_urgency_and_escalation() -> None:
    rules = policy()
    assert priority_of(rules, seen(Intent.MEETING), {}, escalated=False) == Priority.HIGH  # type: ignore[arg-type]
    assert priority_of(rules, seen(Intent.OTHER), {}, escalated=False) == Priority.NORMAL  # type: ignore[arg-type]
    hurried = priority_of(rules, seen(Intent.MEETING), {"urgency": True}, escalated=False)  # type: ignore[arg-type]
    assert hurried == Priority.URGENT
    assert priority_of(rules, seen(Intent.OTHER), {}, escalated=True) == Priority.HIGH  # type: ignore[arg-type]


def test_keep_declared_coerces_and_drops_what_the_playbook_does_not_know() -> None:
    rules = policy(
        fields=(
            FieldSpec(name="budget", type="int"),
            FieldSpec(name="trade_in", type="bool"),
            FieldSpec(name="make"),
        )
    )
    kept = keep_declared(
        rules,  # type: ignore[arg-type]
        {
            "budget": "25000",
            "trade_in": "yes",
            "make": "Audi",
            "colour": "red",  # not declared
            "opt_out": True,  # a control field, always kept
        },
    )
    assert kept == {"budget": 25000, "trade_in": True, "make": "Audi", "opt_out": True}
    assert keep_declared(rules, {"budget": "25k", "make": ""}) == {}  # type: ignore[arg-type]


def test_recipients_follow_the_rule_roles() -> None:
    assert recipients(("finance",), ["sales", "finance", "manager"]) == [1]
    assert recipients((), ["sales", "finance"]) == [0, 1]
