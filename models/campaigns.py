"""Contracts of campaigns (issue 13): what a campaign is asked to do (`CampaignSpec`), the input
and state of its `CampaignWorkflow` (also its continue-as-new state), its updates and query,
its activities, and the numbers the API and the CLI show.

A campaign sends one first message per frozen recipient by starting one outreach conversation
per lead, at a rate, inside a send window. Its numbers are computed from the recipients joined
with their conversations and leads (`campaign_numbers`), never counted by the workflow."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time
from enum import StrEnum
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from models.common import Channel, LeadQuality, Stage
from models.messages import Frozen
from models.playbook import QuietHours

WORKFLOW_NAME = "CampaignWorkflow"
"""The API starts campaigns by this name: it must not import workflows/."""

UPDATE_PAUSE = "pause_campaign"
UPDATE_RESUME = "resume_campaign"
UPDATE_CANCEL = "cancel_campaign"
UPDATE_APPROVE = "approve_campaign"
QUERY_PROGRESS = "progress"
CAMPAIGN_CONTROL_REFUSED = "CampaignControlRefused"
"""ApplicationError type of an update its validator refused; the message is the reason."""
CONTROL_IDS_KEPT = 100
"""Ids of recent control updates, carried across continue-as-new so a retry acts once."""

MAX_RECIPIENTS = 10_000
"""Leads one campaign freezes; a bigger list is several campaigns (a filter per segment)."""

CAMPAIGN_CHANNELS = (Channel.EMAIL, Channel.WHATSAPP, Channel.WAHA)
"""E-mail through SMTP; WhatsApp through the Meta Cloud API or WAHA (only opted-in leads)."""


def campaign_workflow_id(tenant_id: str, campaign_id: str) -> str:
    return f"campaign:{tenant_id}:{campaign_id}"


class CampaignStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


TERMINAL_STATUSES = frozenset({CampaignStatus.CANCELLED, CampaignStatus.COMPLETED})


class CampaignAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    APPROVE = "approve"


def control_refusal(action: CampaignAction, status: CampaignStatus) -> str | None:
    """Why `action` cannot apply to a campaign in `status`, or None when it can. The workflow's
    validators ask it of the status the campaign is heading for; the API of the stored status
    once the workflow has ended."""
    if status == CampaignStatus.COMPLETED:
        return "campaign is completed"
    if status == CampaignStatus.CANCELLED:
        return (
            "campaign is already cancelled"
            if action == CampaignAction.CANCEL
            else "campaign is cancelled"
        )
    if action == CampaignAction.CANCEL:
        return None
    if action == CampaignAction.APPROVE:
        return (
            None
            if status == CampaignStatus.AWAITING_APPROVAL
            else f"campaign is not awaiting approval (it is {status.value})"
        )
    if status == CampaignStatus.AWAITING_APPROVAL:
        return "campaign is awaiting approval: approve it (or cancel it) first"
    if action == CampaignAction.PAUSE and status == CampaignStatus.PAUSED:
        return "campaign is already paused"
    if action == CampaignAction.RESUME and status != CampaignStatus.PAUSED:
        return f"campaign is not paused (it is {status.value})"
    return None


class RecipientStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    """The send's activity began starting the conversation: a retry asks Temporal whether it
    did (the conversation's memo names the campaign) before starting it again."""
    SENT = "sent"
    SKIPPED = "skipped"


class SkipReason(StrEnum):
    """Why a recipient got no first message, decided at send time (recorded on the recipient)."""

    DO_NOT_CONTACT = "do_not_contact"
    """The lead, or the same person on another channel, is do-not-contact: an earlier opt-out
    (a reply, an unsubscribe), an operator or a CRM set it."""
    BOUNCED = "bounced"
    """The lead's e-mail address hard-bounced (`Lead.email_bounced_at`)."""
    IN_CONVERSATION = "in_conversation"
    """The lead already has a running conversation on this channel that this campaign did not
    start: a campaign never interrupts it."""
    NO_OPT_IN = "no_opt_in"
    """WhatsApp: the lead's opt-in was withdrawn since the campaign was created."""
    LEAD_GONE = "lead_gone"
    """The lead was erased since the campaign was created."""
    NO_ADDRESS = "no_address"
    """The lead's address on the campaign's channel is gone or no longer valid."""
    NO_MESSAGE = "no_message"
    """The enrichment row whose personalised e-mail the lead was to get is gone (erased)."""


# ---- what the API is asked --------------------------------------------------------------------


class SendWindow(Frozen):
    """When mail may go out, each day, in `timezone` (`start` == `end`: any time)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time = Field(description="Local time sending starts, e.g. 09:00.")
    end: time = Field(description="Local time sending stops, e.g. 17:30 (before start: overnight).")
    timezone: str = Field(default="UTC", description="IANA time zone, e.g. Europe/Amsterdam.")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Amsterdam)") from exc
        return value

    def as_quiet_hours(self) -> QuietHours:
        """The window's complement: the quiet hours the follow-up rule already understands
        (`workflows.timing.next_allowed_time`), so campaigns and conversations share one rule."""
        return QuietHours(start=self.end, end=self.start, timezone=self.timezone)

    @classmethod
    def of_quiet_hours(cls, quiet: QuietHours) -> SendWindow:
        return cls(start=quiet.end, end=quiet.start, timezone=quiet.timezone)


class LeadSelection(Frozen):
    """The same filters as `GET /api/v1/leads` (models/lead_service.py `LeadFilter`), under
    their names there (`source_job`, `q`) or the filter's (`source_job_id`, `search`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quality: LeadQuality | None = None
    source_job_id: str | None = Field(
        default=None,
        max_length=64,
        validation_alias=AliasChoices("source_job_id", "source_job"),
    )
    has_email: bool | None = None
    has_phone: bool | None = None
    do_not_contact: bool | None = None
    search: str | None = Field(
        default=None, max_length=200, validation_alias=AliasChoices("search", "q")
    )


class CampaignMessage(Frozen):
    """The first message. Without `text` each lead gets the personalised e-mail its enrichment
    wrote (subject and body of the job's row for that lead). `text` and `subject` may name
    `{name}`, `{first_name}` and `{company}`, filled per lead (empty when unknown)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str | None = Field(default=None, max_length=300)
    text: str | None = Field(default=None, min_length=1, max_length=10_000)


class CampaignSpec(BaseModel):
    """`POST /api/v1/campaigns`: which leads (`job_id` or `leads`), how, when, how fast."""

    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored

    name: str | None = Field(default=None, max_length=200)
    job_id: str | None = Field(
        default=None, max_length=64, description="Every lead this enrichment job made/updated."
    )
    leads: LeadSelection | None = Field(default=None, description="Or a filter of the leads.")
    channel: Channel = Field(
        default=Channel.EMAIL,
        description="email (SMTP), or whatsapp / waha for leads with a phone and an opt-in.",
    )
    message: CampaignMessage = Field(default_factory=CampaignMessage)
    hold_for_approval: bool = Field(
        default=False, description="Nothing is sent until POST /api/v1/campaigns/{id}/approve."
    )
    send_window: SendWindow | None = Field(
        default=None,
        description="Default: outside the tenant playbook's quiet hours (21:00-08:00 in the "
        "tenant's time zone when the playbook sets none).",
    )
    rate_per_hour: float = Field(
        default=50, gt=0, le=36_000, description="First messages per hour at most."
    )

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: Channel) -> Channel:
        if value not in CAMPAIGN_CHANNELS:
            names = ", ".join(c.value for c in CAMPAIGN_CHANNELS)
            raise ValueError(f"a campaign sends by {names}, not {value.value}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CampaignSpec:
        if (self.job_id is None) == (self.leads is None):
            raise ValueError("give exactly one of job_id (an enrichment job) or leads (a filter)")
        return self


# ---- the workflow -----------------------------------------------------------------------------


class CampaignInput(BaseModel):
    """Start input, and the state carried across continue-as-new."""

    tenant_id: str
    campaign_id: str
    total: int = Field(ge=0, description="Recipients frozen at creation, positions 1..total.")
    rate_per_hour: float = Field(gt=0)
    quiet_hours: QuietHours | None = Field(
        default=None, description="When not to send (the send window's complement)."
    )
    awaiting_approval: bool = False
    paused: bool = False
    next_position: int = 1
    sent: int = 0
    skipped: int = 0
    last_sent_at: datetime | None = Field(
        default=None, description="The pace counts from the last message sent."
    )
    run: int = 1
    recipients_per_run: int = Field(
        default=500, ge=1, description="Continue as new after this many recipients."
    )
    control_ids: tuple[str, ...] = ()


class CampaignControl(Frozen):
    """The argument of every control update (pause, resume, cancel, approve)."""

    by: str = "operator"


class CampaignControlResult(Frozen):
    status: CampaignStatus


class CampaignProgress(Frozen):
    """What the `progress` query returns (the workflow's own view; numbers live in the DB)."""

    status: CampaignStatus
    total: int
    next_position: int
    sent: int
    skipped: int
    next_send_at: datetime | None = Field(
        default=None, description="When the next message is due (the pace and the window)."
    )
    run: int


class SendStepInput(Frozen):
    tenant_id: str
    campaign_id: str
    position: int


class SendStepResult(Frozen):
    position: int
    status: RecipientStatus = Field(description="sent or skipped")
    reason: SkipReason | None = None
    conversation_id: str | None = None


class CampaignStatusUpdate(Frozen):
    tenant_id: str
    campaign_id: str
    status: CampaignStatus


# ---- numbers ----------------------------------------------------------------------------------

POSITIVE_STAGES = frozenset({Stage.QUALIFYING, Stage.SCHEDULING})
POSITIVE_QUALITIES = frozenset({LeadQuality.HOT.value, LeadQuality.WARM.value})


def meeting_booked(stage: str | None) -> bool:
    """The one rule of a booked meeting: the conversation is in the scheduling stage (the lead
    asked for a meeting). A campaign's numbers and the dashboard (models/dashboard.py) count
    with it."""
    return stage == Stage.SCHEDULING


class RecipientFacts(NamedTuple):
    """One recipient joined with its conversation and lead, as the numbers need it."""

    status: str
    skip_reason: str | None
    sent_at: datetime | None
    turns: int | None
    stage: str | None
    escalations: int
    do_not_contact: bool | None
    email_bounced_at: datetime | None
    quality: str | None


class CampaignNumbers(Frozen):
    total: int
    queued: int
    sent: int
    skipped: int
    skipped_by_reason: dict[str, int]
    replied: int = Field(description="Sent, and the conversation has a turn (the lead wrote).")
    positive_replies: int = Field(
        description="Replied, not opted out, and the conversation is qualifying or scheduling "
        "or the lead is HOT/WARM."
    )
    escalations: int = Field(description="Conversations with at least one escalation.")
    meetings_booked: int = Field(
        description="Conversations in the scheduling stage (the lead asked for a meeting)."
    )
    opted_out: int = Field(description="Sent, and the lead is do-not-contact now.")
    bounced: int = Field(description="Sent, and the address hard-bounced after the send.")
    reply_rate: float = Field(description="replied / sent (0 before the first send).")
    positive_reply_rate: float = Field(description="positive_replies / sent.")


def campaign_numbers(rows: Iterable[RecipientFacts]) -> CampaignNumbers:
    """The one definition of a campaign's numbers (the API, the CLI and the docs use these)."""
    counts: dict[str, int] = dict.fromkeys(
        (
            "total",
            "queued",
            "sent",
            "skipped",
            "replied",
            "positive",
            "escalations",
            "meetings",
            "opted_out",
            "bounced",
        ),
        0,
    )
    reasons: dict[str, int] = {}
    for row in rows:
        counts["total"] += 1
        if row.status == RecipientStatus.SKIPPED:
            counts["skipped"] += 1
            reason = row.skip_reason or "unknown"
            reasons[reason] = reasons.get(reason, 0) + 1
            continue
        if row.status != RecipientStatus.SENT:
            counts["queued"] += 1  # queued, or a send under way
            continue
        counts["sent"] += 1
        opted_out = bool(row.do_not_contact)
        replied = (row.turns or 0) > 0
        counts["opted_out"] += opted_out
        counts["replied"] += replied
        counts["escalations"] += row.escalations > 0
        counts["meetings"] += meeting_booked(row.stage)
        positive = replied and not opted_out
        positive = positive and (row.stage in POSITIVE_STAGES or row.quality in POSITIVE_QUALITIES)
        counts["positive"] += positive
        bounced = row.email_bounced_at is not None and (
            row.sent_at is None or _aware(row.email_bounced_at) >= _aware(row.sent_at)
        )
        counts["bounced"] += bounced
    sent = counts["sent"]
    return CampaignNumbers(
        total=counts["total"],
        queued=counts["queued"],
        sent=sent,
        skipped=counts["skipped"],
        skipped_by_reason=dict(sorted(reasons.items())),
        replied=counts["replied"],
        positive_replies=counts["positive"],
        escalations=counts["escalations"],
        meetings_booked=counts["meetings"],
        opted_out=counts["opted_out"],
        bounced=counts["bounced"],
        reply_rate=round(counts["replied"] / sent, 4) if sent else 0.0,
        positive_reply_rate=round(counts["positive"] / sent, 4) if sent else 0.0,
    )


def _aware(value: datetime) -> datetime:
    # SQLite hands datetimes back naive (they were written in UTC).
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


class CampaignView(Frozen):
    """A campaign as the API and the CLI show it."""

    id: str
    name: str | None
    status: CampaignStatus
    channel: Channel
    job_id: str | None
    selection: dict[str, Any] | None
    subject: str | None
    text: str | None
    personalised: bool = Field(description="Each lead gets its enrichment's personalised e-mail.")
    hold_for_approval: bool
    approved_at: datetime | None
    send_window: SendWindow | None
    rate_per_hour: float
    workflow_id: str
    created_at: datetime
    finished_at: datetime | None
    numbers: CampaignNumbers
    excluded: dict[str, int] = Field(
        default_factory=dict,
        description="Selected leads not frozen as recipients, by reason (creation only).",
    )
