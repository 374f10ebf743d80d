"""Mail in (issue 13): the Message-ID of every e-mail leadflow sent to a lead, so a reply that
names it in In-Reply-To/References is threaded into that conversation whatever address it comes
from (models/email_in/service.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class EmailThread(SQLModel, table=True):
    __tablename__ = "email_threads"
    __table_args__ = (Index("ix_email_threads_tenant_from", "tenant_id", "from_address"),)
    tenant_id: str = Field(foreign_key="tenants.id", primary_key=True, max_length=64)
    message_id: str = Field(primary_key=True, max_length=500, description="`<id@host>`")
    conversation_id: str | None = Field(default=None, max_length=400, description="Workflow id.")
    contact: str = Field(max_length=320, description="The address we wrote to (normalised).")
    campaign_id: str | None = Field(default=None, index=True, max_length=64)
    from_address: str = Field(default="", max_length=320, description="Ours, lower-cased.")
    sent_at: datetime = Field(default_factory=utcnow)
