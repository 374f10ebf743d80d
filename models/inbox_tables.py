"""The webhook inbox: inbound messages written before the webhook is acknowledged.

A row lives from the webhook's 2xx until Temporal has the message (signal-with-start), so an API
that crashes, or a Temporal that is slow or down, loses nothing that was acknowledged."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class InboxMessage(SQLModel, table=True):
    __tablename__ = "inbox"
    # Ids are never reused (migration 0007): a delivered row is deleted by id a moment later.
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(index=True, max_length=400)
    message: str = Field(sa_column=Column(Text, nullable=False), description="InboundMessage JSON")
    created_at: datetime = Field(default_factory=utcnow)
    lease_until: datetime = Field(
        default_factory=utcnow,
        index=True,
        description="Nobody else delivers the row before this time (its deliverer holds it).",
    )
    claim: str | None = Field(
        default=None, max_length=64, description="Which delivery round holds the lease."
    )
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
