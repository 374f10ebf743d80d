"""The audit log's table: who did what to which resource of a tenant, when, with what outcome.

Written by `models.audit` only (the API middleware's batches and the CLI's commands). Rows hold
names, ids and status codes, never secrets or message bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (
        # The only read: one tenant's events, newest first, maybe narrowed by time or action.
        Index("ix_audit_events_tenant_id_id", "tenant_id", "id"),
        # Ids only grow (the API pages by `before` id), also on SQLite.
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=64)
    at: datetime = Field(default_factory=utcnow)
    actor_kind: str = Field(max_length=16, description="api_key | cli | user")
    actor: str = Field(
        max_length=200,
        description="The key's label (or prefix); the OS user; a person's `Name <email>`.",
    )
    api_key_id: int | None = Field(default=None, description="The key the request used.")
    action: str = Field(max_length=100, description="e.g. key.revoke, conversation.handoff")
    resource_id: str | None = Field(default=None, max_length=400)
    outcome: str = Field(max_length=16, description="ok | refused | error")
    status: int | None = Field(default=None, description="The HTTP status of an API request.")
    request_id: str | None = Field(default=None, max_length=64)
    method: str | None = Field(default=None, max_length=8)
    route: str | None = Field(default=None, max_length=200, description="The route template.")
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
