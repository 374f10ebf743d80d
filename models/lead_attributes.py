"""The dealership's custom attributes of a lead, computed in this one place from what the lead and
its conversations hold: the API shows them on the lead, and the CRM sync maps them to Chatwoot
contact custom attributes and CRM properties by default (models/crm.py
`DEFAULT_FIELD_MAPPINGS`; a connection's own mapping overrides them).

Nothing here asks a model or the workflow: the values come from the lead's fields (what the
conversation extracted), its tags (what the workflow computed: models/tags.py), its score, its
channel and two facts of its conversations (how many, the lead's last message).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field

from models.messages import Frozen

# The mapping sources these attributes add (models/crm.py LEAD_FIELDS); score and quality are
# mapped by their own names (`score`, `quality`) as before.
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "tags",
    "budget_min",
    "budget_max",
    "urgency",
    "test_drive_requested",
    "financing_needed",
    "trade_in",
    "source_channel",
    "sentiment",
    "last_interest_date",
    "total_conversations",
)


class LeadAttributes(Frozen):
    """What a dealership's sales team reads on a contact, beside its tags."""

    lead_score: int
    lead_quality: str
    tags: tuple[str, ...] = ()
    budget_min: int | None = Field(default=None, description="From `budget_min`.")
    budget_max: int | None = Field(
        default=None, description="From `budget_max`, else the purchase budget (`budget`)."
    )
    urgency: Literal["high", "normal"] = Field(
        default="normal", description="high: the lead said it is in a hurry (tag `urgent`)."
    )
    test_drive_requested: bool = Field(
        default=False, description="Asked for a test drive, visit or call (tag `test-drive`)."
    )
    financing_needed: bool = Field(default=False, description="Tag `financing`.")
    trade_in: bool = Field(default=False, description="Tag `trade-in`.")
    source_channel: str = Field(description="The channel the lead came in on.")
    sentiment: Literal["positive", "neutral", "negative"] | None = Field(
        default=None,
        description="Of the last message perceived (tags `sentiment-*`); None: never talked.",
    )
    last_interest_date: date | None = Field(
        default=None, description="The day of the lead's last message."
    )
    total_conversations: int = 0

    def value_of(self, name: str) -> Any:
        """A CRM mapping's value: tags as one `;`-separated string (HubSpot's multi-checkbox
        notation, a text field elsewhere), the date as ISO `YYYY-MM-DD`, None left out."""
        value = getattr(self, name)
        if name == "tags":
            return ";".join(value) if value else None
        if isinstance(value, date):
            return value.isoformat()
        return value


def _amount(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if value > 0 else None
    digits = "".join(c for c in str(value) if c.isdigit())
    return int(digits) if digits and int(digits) > 0 else None


def asked_for_test_drive(fields: Mapping[str, Any], tags: Iterable[str]) -> bool:
    """The one rule of a test drive booked: the lead asked for a test drive, visit or call (the
    meeting tag, `test-drive` or `meeting` by the playbook's word: workflows/tags.py) or its
    fields say so. The lead's attributes and the dashboard (models/dashboard.py) use it."""
    return bool({"test-drive", "meeting"} & set(tags)) or fields.get("test_drive") is True


def lead_attributes(
    *,
    fields: Mapping[str, Any],
    tags: Iterable[str],
    score: int,
    quality: str,
    channel: str,
    total_conversations: int,
    last_lead_message_at: datetime | None,
) -> LeadAttributes:
    """The attributes of a lead: the one rule, for the API and every CRM."""
    tagged = tuple(tags)
    has = set(tagged)
    sentiment: Literal["positive", "neutral", "negative"] | None = None
    if "sentiment-negative" in has:
        sentiment = "negative"
    elif "sentiment-positive" in has:
        sentiment = "positive"
    elif last_lead_message_at is not None:
        sentiment = "neutral"
    return LeadAttributes(
        lead_score=score,
        lead_quality=quality,
        tags=tagged,
        budget_min=_amount(fields.get("budget_min")),
        budget_max=_amount(fields.get("budget_max")) or _amount(fields.get("budget")),
        urgency="high" if "urgent" in has or fields.get("urgency") is True else "normal",
        test_drive_requested=asked_for_test_drive(fields, tagged),
        financing_needed="financing" in has or fields.get("financing") is True,
        trade_in="trade-in" in has or fields.get("trade_in") is True,
        source_channel=channel,
        sentiment=sentiment,
        last_interest_date=last_lead_message_at.date() if last_lead_message_at else None,
        total_conversations=total_conversations,
    )
