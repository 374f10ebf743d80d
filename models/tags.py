"""The tag vocabulary a dealership's sales team works with, and a playbook's `tags:` section.

Tags are computed by workflow code (workflows/tags.py) from what a conversation knows: the
lead's fields, the intents seen, the stage, the channel, the score. They are kept on the lead
(`leads.tags`), shown by the API, written as Chatwoot conversation labels and as CRM tags (or a
mapped CRM field where the CRM has no tags: models/crm.py).

Every tag is a lowercase slug (`a-z`, `0-9`, `-`): Chatwoot label titles allow no other
characters, and the same words go to every CRM. The vocabulary is closed: a tag is either one of
the flags below or starts with one of the family prefixes. That is how a CRM adapter tells
leadflow's labels (which it replaces as they change) from the labels a team set by hand (which
it never touches): `is_leadflow_tag`.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TAG_MAX = 50  # characters of one tag (Chatwoot label titles and GoHighLevel tags stay short)


class TagFamily(StrEnum):
    """What a playbook switches on or off (`tags.exclude`), and what each family produces."""

    INTEREST = "interest"  # interest-<make>-<model>: the car (or product) the lead asks about
    MAKE = "make"  # make-<make>
    FUEL = "fuel"  # fuel-<petrol|diesel|hybrid|plugin-hybrid|electric|lpg|cng|hydrogen>
    BUDGET = "budget"  # budget-<band>, e.g. budget-20k-30k, budget-under-10k, budget-50k-plus
    STAGE = "stage"  # stage-<stage>, e.g. stage-qualifying
    CHANNEL = "channel"  # channel-<channel>, e.g. channel-whatsapp
    QUALITY = "quality"  # lead-<hot|warm|lukewarm|cold> (the words Chatwoot labels had before)
    URGENCY = "urgency"  # urgent: the lead is in a hurry
    ESCALATED = "escalated"  # escalated: a human has the conversation now
    COMPLAINT = "complaint"  # complaint: the lead complained (sticky)
    VIP = "vip"  # vip: score or budget at the playbook's VIP threshold
    MEETING = "meeting"  # test-drive (or meeting): asked for a test drive, visit or call (sticky)
    FINANCING = "financing"  # financing: wants financing or lease (sticky)
    TRADE_IN = "trade_in"  # trade-in: wants to trade in a car (sticky)
    SENTIMENT = "sentiment"  # sentiment-negative / sentiment-positive: the last perceived mood


# Families whose tag is a fixed word, and families that prefix a value.
FLAG_TAGS: frozenset[str] = frozenset(
    {"urgent", "escalated", "complaint", "vip", "test-drive", "meeting", "financing", "trade-in"}
)
FAMILY_PREFIXES: dict[TagFamily, str] = {
    TagFamily.INTEREST: "interest-",
    TagFamily.MAKE: "make-",
    TagFamily.FUEL: "fuel-",
    TagFamily.BUDGET: "budget-",
    TagFamily.STAGE: "stage-",
    TagFamily.CHANNEL: "channel-",
    TagFamily.QUALITY: "lead-",
    TagFamily.SENTIMENT: "sentiment-",
}

# Tags that stay once earned (recomputing them from the current run alone would lose them after
# a new run resumes the lead, which does not carry the intents seen before).
STICKY_TAGS: frozenset[str] = frozenset(
    {"complaint", "test-drive", "meeting", "financing", "trade-in"}
)

_SLUG_OUT = re.compile(r"[^a-z0-9]+")
# What every tag looks like (what `slug` makes): the API's `tag` filter is checked against it.
TAG_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?")


def slug(text: str) -> str:
    """`Škoda Octavia` → `skoda-octavia`: accents dropped, anything else a single hyphen."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return _SLUG_OUT.sub("-", plain).strip("-")[:TAG_MAX].strip("-")


def is_leadflow_tag(tag: str) -> bool:
    """Whether a label or CRM tag is one leadflow computes (and so may replace or remove)."""
    return tag in FLAG_TAGS or any(tag.startswith(p) for p in FAMILY_PREFIXES.values())


def budget_band_tags(bands: tuple[int, ...]) -> tuple[str, ...]:
    """The tags of the bands between these limits: under the first, between each pair, above
    the last (`budget-under-10k`, `budget-10k-20k`, …, `budget-50k-plus`)."""
    if not bands:
        return ()
    names = [f"budget-under-{_amount(bands[0])}"]
    names += [f"budget-{_amount(low)}-{_amount(high)}" for low, high in pairwise(bands)]
    names.append(f"budget-{_amount(bands[-1])}-plus")
    return tuple(names)


def _amount(value: int) -> str:
    if value % 1000 == 0:
        return f"{value // 1000}k"
    return str(value)


class TagTaxonomy(BaseModel):
    """A playbook's `tags:` section. Everything has a default: a playbook without the section
    gets every family, the VIP rule and the budget bands below."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exclude: tuple[TagFamily, ...] = Field(
        default=(), description="Families this business does not use (e.g. [fuel, make])."
    )
    meeting_tag: Literal["test-drive", "meeting"] = Field(
        default="meeting",
        description="The tag of the meeting intent: `test-drive` for a dealership.",
    )
    budget_bands: tuple[int, ...] = Field(
        default=(10000, 20000, 30000, 50000),
        description="Limits of the budget bands, in the currency of the budget field, ascending.",
    )
    vip_min_score: int | None = Field(
        default=85, ge=0, le=100, description="A lead scoring at least this is `vip`."
    )
    vip_min_budget: int | None = Field(
        default=50000, gt=0, description="A budget at least this makes the lead `vip`."
    )
    sentiment_below: float = Field(
        default=-0.3, ge=-1.0, le=0.0, description="A perceived sentiment below: negative."
    )
    sentiment_above: float = Field(
        default=0.5, ge=0.0, le=1.0, description="A perceived sentiment above: positive."
    )
    make_field: str = "make"
    model_field: str = "model"
    fuel_field: str = "fuel_type"
    budget_field: str = "budget"
    urgency_field: str = "urgency"
    financing_field: str = "financing"
    trade_in_field: str = "trade_in"

    @field_validator("exclude", mode="before")
    @classmethod
    def _known_families(cls, value: object) -> object:
        # The enum's own error lists its values only as a pattern; name the bad one plainly.
        if isinstance(value, list | tuple):
            known = {f.value for f in TagFamily}
            for item in value:
                if str(item) not in known:
                    raise ValueError(
                        f"unknown tag family {item!r}; use any of {', '.join(sorted(known))}"
                    )
        return value

    @field_validator("budget_bands")
    @classmethod
    def _ascending(cls, bands: tuple[int, ...]) -> tuple[int, ...]:
        if any(b <= 0 for b in bands):
            raise ValueError("budget bands must be positive amounts")
        if any(low >= high for low, high in pairwise(bands)):
            raise ValueError(f"budget bands must ascend strictly, got {list(bands)}")
        return bands

    @model_validator(mode="after")
    def _no_repeats(self) -> TagTaxonomy:
        if len(set(self.exclude)) != len(self.exclude):
            raise ValueError("a tag family is excluded twice")
        return self

    def uses(self, family: TagFamily) -> bool:
        return family not in self.exclude


DEFAULT_TAXONOMY = TagTaxonomy()
