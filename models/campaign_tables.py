"""Campaign tables (issue 13): campaigns, their recipients frozen at creation (references to
leads and to the enrichment rows whose personalised e-mail they get, never copies), and
recorded WhatsApp opt-ins."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class Campaign(SQLModel, table=True):
    __tablename__ = "campaigns"
    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    status: str = Field(default="running", max_length=24)
    channel: str = Field(max_length=32)
    source_job_id: str | None = Field(default=None, max_length=64)
    selection: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    subject: str | None = Field(default=None, max_length=300)
    text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    hold_for_approval: bool = False
    approved_at: datetime | None = None
    window_start: time | None = None
    window_end: time | None = None
    window_timezone: str | None = Field(default=None, max_length=64)
    rate_per_hour: float = 50.0
    total: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class CampaignRecipient(SQLModel, table=True):
    __tablename__ = "campaign_recipients"
    __table_args__ = (
        UniqueConstraint("campaign_id", "position"),
        UniqueConstraint("campaign_id", "lead_id"),
        Index("ix_campaign_recipients_campaign_status", "campaign_id", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.id", max_length=64)
    tenant_id: str = Field(max_length=64)
    position: int = Field(description="1..total: the order the workflow sends in.")
    lead_id: str = Field(index=True, max_length=64)
    enrichment_record_id: int | None = Field(
        default=None, description="The row whose personalised e-mail this lead gets."
    )
    status: str = Field(default="queued", max_length=16)
    skip_reason: str | None = Field(default=None, max_length=32)
    conversation_id: str | None = Field(default=None, index=True, max_length=400)
    sent_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class WhatsAppOptIn(SQLModel, table=True):
    """A lead's recorded consent to be written to first on WhatsApp (Meta requires one for
    business-initiated messages): only leads with a row here get a WhatsApp campaign."""

    __tablename__ = "whatsapp_opt_ins"
    __table_args__ = (UniqueConstraint("tenant_id", "lead_id"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=64)
    lead_id: str = Field(max_length=64)
    source: str = Field(max_length=200, description="Where the consent was given (form, event…).")
    recorded_by: str = Field(default="api", max_length=100)
    recorded_at: datetime = Field(default_factory=utcnow)
