"""The lead's tag taxonomy (workflows/tags.py): one test per family's rule, the playbook's
overrides, and a playbook whose `tags:` section is wrong."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from models.agent import FieldValue
from models.common import Channel, Intent, LeadQuality, Stage
from models.playbook import builtin_playbooks, parse_playbook_yaml
from models.policy import policy_of
from models.repo.playbooks import validate_playbook_yaml
from models.tags import (
    DEFAULT_TAXONOMY,
    TAG_PATTERN,
    TagFamily,
    TagTaxonomy,
    budget_band_tags,
    is_leadflow_tag,
    slug,
)
from workflows.tags import budget_band, lead_tags

DEALER = TagTaxonomy(meeting_tag="test-drive")


def tags(
    taxonomy: TagTaxonomy = DEALER,
    *,
    fields: dict[str, FieldValue] | None = None,
    intents: tuple[Intent, ...] = (),
    stage: Stage = Stage.QUALIFYING,
    channel: Channel = Channel.WAHA,
    **more: Any,
) -> set[str]:
    return set(
        lead_tags(
            taxonomy,
            fields=fields or {},
            intents_seen=intents,
            stage=stage,
            channel=channel,
            **more,
        )
    )


def test_a_new_lead_has_its_stage_and_channel_only() -> None:
    assert tags() == {"stage-qualifying", "channel-waha"}
    assert tags(stage=Stage.HUMAN_HANDOFF, channel=Channel.EMAIL) == {
        "stage-human-handoff",
        "channel-email",
    }


def test_interest_and_make_from_the_fields() -> None:
    found = tags(fields={"make": "Škoda", "model": "Octavia Combi"})
    assert {"interest-skoda-octavia-combi", "make-skoda"} <= found
    assert "interest-golf" in tags(fields={"model": "Golf"})
    only_make = tags(fields={"make": "Volkswagen"})
    assert {"interest-volkswagen", "make-volkswagen"} <= only_make
    # a value that slugs to nothing is no tag
    assert tags(fields={"make": "???"}) == tags()


@pytest.mark.parametrize(
    ("said", "tag"),
    [
        ("benzine", "fuel-petrol"),
        ("Elektrisch", "fuel-electric"),
        ("EV", "fuel-electric"),
        ("hybride", "fuel-hybrid"),
        ("plug-in hybrid", "fuel-plugin-hybrid"),
        ("diesel", "fuel-diesel"),
    ],
)
def test_fuel_is_normalised(said: str, tag: str) -> None:
    assert tag in tags(fields={"fuel_type": said})


def test_an_unknown_fuel_word_is_no_tag() -> None:
    assert not any(t.startswith("fuel-") for t in tags(fields={"fuel_type": "whatever"}))


@pytest.mark.parametrize(
    ("budget", "band"),
    [
        (5000, "budget-under-10k"),
        (10000, "budget-10k-20k"),  # the lower limit is in the band
        (19999, "budget-10k-20k"),
        ("€25.000", "budget-20k-30k"),  # digits in a string, as a model may extract them
        (30000, "budget-30k-50k"),
        (50000.0, "budget-50k-plus"),
    ],
)
def test_budget_bands(budget: FieldValue, band: str) -> None:
    found = tags(fields={"budget": budget})
    assert band in found
    assert len([t for t in found if t.startswith("budget-")]) == 1


def test_no_budget_or_a_nonsense_one_is_no_band() -> None:
    for value in (0, -5, True, "no idea"):
        assert not any(t.startswith("budget-") for t in tags(fields={"budget": value}))


def test_quality_tag() -> None:
    assert "lead-hot" in tags(quality=LeadQuality.HOT)
    assert not any(t.startswith("lead-") for t in tags())


def test_urgency_from_the_field_only_when_true() -> None:
    assert "urgent" in tags(fields={"urgency": True})
    assert "urgent" not in tags(fields={"urgency": "yes"})
    assert "urgent" not in tags(fields={"urgency": False})


def test_escalated_while_a_human_has_it() -> None:
    assert "escalated" in tags(escalated=True)
    assert "escalated" not in tags(escalated=False)


def test_intent_flags() -> None:
    assert "complaint" in tags(intents=(Intent.COMPLAINT,))
    assert "test-drive" in tags(intents=(Intent.MEETING,))
    assert "meeting" in tags(DEFAULT_TAXONOMY, intents=(Intent.MEETING,))
    assert "financing" in tags(intents=(Intent.FINANCING,))
    assert "trade-in" in tags(intents=(Intent.TRADE_IN,))
    assert tags(intents=(Intent.GREETING, Intent.PRICING)) == tags()


def test_financing_and_trade_in_also_from_their_fields() -> None:
    assert {"financing", "trade-in"} <= tags(fields={"financing": True, "trade_in": True})
    assert not {"financing", "trade-in"} & tags(fields={"financing": False, "trade_in": False})


def test_vip_by_score_or_budget() -> None:
    assert "vip" in tags(score=85)
    assert "vip" not in tags(score=84)
    assert "vip" in tags(fields={"budget": 50000})
    assert "vip" not in tags(fields={"budget": 49999}, score=10)
    no_budget_rule = TagTaxonomy(vip_min_budget=None)
    assert "vip" not in tags(no_budget_rule, fields={"budget": 900000})


def test_sentiment_tags() -> None:
    assert "sentiment-negative" in tags(sentiment=-0.6)
    assert "sentiment-positive" in tags(sentiment=0.8)
    assert not any(t.startswith("sentiment-") for t in tags(sentiment=0.0))
    assert not any(t.startswith("sentiment-") for t in tags(sentiment=None))


def test_sticky_tags_stay_once_earned_and_others_follow_the_state() -> None:
    previous = ("complaint", "test-drive", "stage-scheduling", "vip", "budget-50k-plus")
    now = tags(previous=previous)
    assert {"complaint", "test-drive"} <= now
    # stage, vip and budget are recomputed, never carried over
    assert not {"stage-scheduling", "vip", "budget-50k-plus"} & now


def test_a_renamed_meeting_tag_drops_the_old_word() -> None:
    assert "meeting" not in tags(DEALER, previous=("meeting",))
    assert "test-drive" not in tags(DEFAULT_TAXONOMY, previous=("test-drive",))


def test_excluded_families_produce_nothing() -> None:
    taxonomy = TagTaxonomy(exclude=(TagFamily.STAGE, TagFamily.CHANNEL, TagFamily.COMPLAINT))
    assert tags(taxonomy, intents=(Intent.COMPLAINT,), previous=("complaint",)) == set()


def test_other_field_names_per_playbook() -> None:
    taxonomy = TagTaxonomy(make_field="brand", budget_field="max_price", fuel_field="fuel")
    found = tags(taxonomy, fields={"brand": "Toyota", "max_price": 15000, "fuel": "lpg"})
    assert {"make-toyota", "budget-10k-20k", "fuel-lpg"} <= found


def test_tags_are_sorted_slugs_in_the_closed_vocabulary() -> None:
    result = lead_tags(
        DEALER,
        fields={"make": "Mercedes-Benz", "model": "EQA 250+", "budget": 61000, "urgency": True},
        intents_seen=(Intent.MEETING, Intent.FINANCING, Intent.TRADE_IN, Intent.COMPLAINT),
        stage=Stage.SCHEDULING,
        channel=Channel.WHATSAPP,
        quality=LeadQuality.WARM,
        score=60,
        escalated=True,
        sentiment=-0.9,
    )
    assert list(result) == sorted(result)
    assert all(TAG_PATTERN.fullmatch(t) and is_leadflow_tag(t) for t in result)
    assert "interest-mercedes-benz-eqa-250" in result


def test_the_vocabulary_and_slugs() -> None:
    assert slug("  Citroën C4 / e-C4 ") == "citroen-c4-e-c4"
    assert len(slug("x" * 200)) == 50
    assert is_leadflow_tag("stage-closed") and is_leadflow_tag("vip")
    assert not is_leadflow_tag("support") and not is_leadflow_tag("billing")
    assert budget_band_tags((5000, 12500)) == (
        "budget-under-5k",
        "budget-5k-12500",
        "budget-12500-plus",
    )
    assert budget_band(TagTaxonomy(budget_bands=()), 10) is None


# ---- the playbook's `tags:` section ------------------------------------------------------------


def _playbook_with(tags_section: Any) -> str:
    data = yaml.safe_load(builtin_playbooks()["car_dealership"].model_dump_json(exclude={"tags"}))
    data["tags"] = tags_section
    return yaml.safe_dump(data)


def test_the_dealership_playbook_tags_test_drives() -> None:
    playbook = builtin_playbooks()["car_dealership"]
    assert playbook.tags.meeting_tag == "test-drive"
    policy = policy_of(playbook)
    assert policy.taxonomy.meeting_tag == "test-drive"
    b2b = builtin_playbooks()["b2b_outreach"]
    assert not b2b.tags.uses(TagFamily.MAKE) and not b2b.tags.uses(TagFamily.FUEL)


def test_default_tags_stay_out_of_the_policy_and_the_hash() -> None:
    playbook = builtin_playbooks()["car_dealership"]
    plain = playbook.model_copy(update={"tags": DEFAULT_TAXONOMY})
    assert policy_of(plain).tags is None  # the workflow state carries nothing for them
    assert policy_of(plain).taxonomy == DEFAULT_TAXONOMY
    # a playbook without a tags section hashes as before tags existed
    import hashlib

    before = hashlib.sha256(plain.model_dump_json(exclude={"tags"}).encode()).hexdigest()[:16]
    assert plain.content_hash == before
    assert playbook.content_hash != plain.content_hash


def test_a_playbook_overrides_the_taxonomy() -> None:
    playbook = parse_playbook_yaml(
        _playbook_with(
            {
                "exclude": ["sentiment", "channel"],
                "budget_bands": [15000, 40000],
                "vip_min_score": 90,
                "vip_min_budget": None,
            }
        )
    )
    found = tags(playbook.tags, fields={"budget": 70000}, score=89, sentiment=-1.0)
    assert found == {"stage-qualifying", "budget-40k-plus"}


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"exclude": ["colour"]}, "unknown tag family 'colour'"),
        ({"budget_bands": [20000, 10000]}, "budget bands must ascend strictly"),
        ({"budget_bands": [0, 10000]}, "budget bands must be positive"),
        ({"meeting_tag": "appointment"}, "meeting_tag"),
        ({"vip_min_score": 150}, "vip_min_score"),
        ({"exclude": ["vip", "vip"]}, "excluded twice"),
        ({"colours": ["red"]}, "colours"),
    ],
)
def test_a_bad_tags_section_is_refused_with_what_is_wrong(section: Any, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_playbook_yaml(_playbook_with(section))
    assert says in str(refused.value)


def test_a_tenant_uploading_a_bad_tags_section_reads_where_and_why() -> None:
    """What the settings API answers (422 "invalid playbook" with these lines)."""
    problems = validate_playbook_yaml(_playbook_with({"budget_bands": [30000, 20000]}))
    assert problems == [
        "tags.budget_bands: Value error, budget bands must ascend strictly, got [30000, 20000]"
    ]
    assert validate_playbook_yaml(_playbook_with({"meeting_tag": "test-drive"})) == []
