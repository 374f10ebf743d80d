"""The lead's tags, computed from what the conversation knows: plain, deterministic code, safe in
the workflow sandbox (models.* and the standard library only; no clock, no I/O).

The vocabulary and a playbook's `tags:` section are in models/tags.py. The conversation workflow
calls `lead_tags` at every record step and sends the result to the record step when it changed;
the record step stores it on the lead, from where the API shows it and the CRM sync writes it as
Chatwoot labels and CRM tags.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from models.agent import FieldValue
from models.common import Channel, Intent, LeadQuality, Stage
from models.inventory import Fuel, normalize_fuel
from models.tags import (
    STICKY_TAGS,
    TagFamily,
    TagTaxonomy,
    budget_band_tags,
    slug,
)


def _text(value: FieldValue | None) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _amount(value: FieldValue | None) -> int | None:
    """A budget as the model extracted it: an int, a float or digits in a string ("25.000")."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if value > 0 else None
    digits = "".join(c for c in str(value) if c.isdigit())
    return int(digits) if digits and int(digits) > 0 else None


def budget_band(taxonomy: TagTaxonomy, budget: int) -> str | None:
    """The band tag a budget falls in: the lower limit is in the band, the upper one is not."""
    names = budget_band_tags(taxonomy.budget_bands)
    if not names:
        return None
    index = sum(1 for limit in taxonomy.budget_bands if budget >= limit)
    return names[index]


def _fuel_tag(value: FieldValue | None) -> str | None:
    text = _text(value)
    if text is None:
        return None
    fuel = normalize_fuel(text)
    if fuel is None or fuel == Fuel.OTHER:
        return None  # a word we do not know as a fuel is not a tag to filter by
    return "fuel-" + slug(fuel.value)


def lead_tags(
    taxonomy: TagTaxonomy,
    *,
    fields: Mapping[str, FieldValue],
    intents_seen: Sequence[Intent],
    stage: Stage,
    channel: Channel,
    quality: LeadQuality | None = None,
    score: int | None = None,
    escalated: bool = False,
    sentiment: float | None = None,
    previous: Iterable[str] = (),
) -> tuple[str, ...]:
    """The lead's tags, sorted. One rule per family (models/tags.py lists them):

    - interest: `interest-<make>-<model>` (or the one of the two that is known);
    - make: `make-<make>`; fuel: `fuel-<fuel>` (normalised: benzine → petrol, EV → electric);
    - budget: the band of the budget field (`budget-20k-30k`);
    - stage: `stage-<stage>`; channel: `channel-<channel>`; quality: `lead-<quality>`;
    - urgency: `urgent` when the urgency field is true;
    - escalated: a human has the conversation (`escalated` goes when it is released);
    - complaint / meeting (`test-drive` or `meeting`) / financing / trade-in: the intent was
      seen (financing and trade-in also from their fields being true). These four are sticky:
      once in `previous` (what the lead held), they stay;
    - vip: the score or the budget reached the playbook's VIP threshold;
    - sentiment: `sentiment-negative` / `sentiment-positive` from the last perception.
    """
    use = taxonomy.uses
    tags: set[str] = set()
    make = _text(fields.get(taxonomy.make_field))
    model = _text(fields.get(taxonomy.model_field))
    budget = _amount(fields.get(taxonomy.budget_field))
    seen = set(intents_seen)

    if use(TagFamily.INTEREST) and (make or model):
        interest = slug(" ".join(part for part in (make, model) if part))
        if interest:
            tags.add(f"interest-{interest}")
    if use(TagFamily.MAKE) and make and slug(make):
        tags.add(f"make-{slug(make)}")
    if use(TagFamily.FUEL):
        fuel = _fuel_tag(fields.get(taxonomy.fuel_field))
        if fuel:
            tags.add(fuel)
    if use(TagFamily.BUDGET) and budget is not None:
        band = budget_band(taxonomy, budget)
        if band:
            tags.add(band)
    if use(TagFamily.STAGE):
        tags.add("stage-" + slug(stage.value))
    if use(TagFamily.CHANNEL):
        tags.add("channel-" + slug(channel.value))
    if use(TagFamily.QUALITY) and quality is not None:
        tags.add("lead-" + slug(quality.value))
    if use(TagFamily.URGENCY) and fields.get(taxonomy.urgency_field) is True:
        tags.add("urgent")
    if use(TagFamily.ESCALATED) and escalated:
        tags.add("escalated")
    if use(TagFamily.COMPLAINT) and Intent.COMPLAINT in seen:
        tags.add("complaint")
    if use(TagFamily.MEETING) and Intent.MEETING in seen:
        tags.add(taxonomy.meeting_tag)
    if use(TagFamily.FINANCING) and (
        Intent.FINANCING in seen or fields.get(taxonomy.financing_field) is True
    ):
        tags.add("financing")
    if use(TagFamily.TRADE_IN) and (
        Intent.TRADE_IN in seen or fields.get(taxonomy.trade_in_field) is True
    ):
        tags.add("trade-in")
    if use(TagFamily.VIP) and (
        (
            taxonomy.vip_min_score is not None
            and score is not None
            and score >= taxonomy.vip_min_score
        )
        or (
            taxonomy.vip_min_budget is not None
            and budget is not None
            and budget >= taxonomy.vip_min_budget
        )
    ):
        tags.add("vip")
    if use(TagFamily.SENTIMENT) and sentiment is not None:
        if sentiment < taxonomy.sentiment_below:
            tags.add("sentiment-negative")
        elif sentiment > taxonomy.sentiment_above:
            tags.add("sentiment-positive")

    sticky_families = {
        "complaint": TagFamily.COMPLAINT,
        "test-drive": TagFamily.MEETING,
        "meeting": TagFamily.MEETING,
        "financing": TagFamily.FINANCING,
        "trade-in": TagFamily.TRADE_IN,
    }
    for tag in previous:
        if tag in STICKY_TAGS and use(sticky_families[tag]):
            if sticky_families[tag] == TagFamily.MEETING and tag != taxonomy.meeting_tag:
                continue  # the playbook renamed the meeting tag since: the new word only
            tags.add(tag)
    return tuple(sorted(tags))
