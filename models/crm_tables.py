"""CRM tables: connections, per-lead links, sync runs, idempotency records and write markers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class Integration(SQLModel, table=True):
    """One CRM connection of a tenant. Credentials are stored encrypted, never returned."""

    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    kind: str = Field(max_length=32)
    name: str = Field(max_length=128)
    base_url: str = Field(max_length=500)
    position: int = Field(default=0, description="Saga order within the tenant (ascending).")
    credentials_encrypted: str = Field(default="", sa_column=Column(Text, nullable=False))
    field_mapping: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    mode: str = Field(default="saga", max_length=16)
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class CrmLink(SQLModel, table=True):
    """Where a lead lives in one CRM, and how its last sync went."""

    __tablename__ = "crm_links"
    __table_args__ = (UniqueConstraint("integration_id", "lead_id"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True, max_length=64)
    # not a foreign key: the built-in table is a virtual integration ("builtin")
    integration_id: str = Field(index=True, max_length=64)
    lead_id: str = Field(index=True, max_length=64)
    remote_id: str | None = Field(default=None, index=True, max_length=128)
    last_synced_at: datetime | None = None
    last_version: int | None = None
    outcome: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow)


class CrmSyncRun(SQLModel, table=True):
    """One saga execution, as recorded at its end."""

    __tablename__ = "crm_sync_runs"
    id: int | None = Field(default=None, primary_key=True)
    run_key: str = Field(unique=True, max_length=400)
    tenant_id: str = Field(index=True, max_length=64)
    lead_id: str = Field(index=True, max_length=64)
    version: int
    status: str = Field(max_length=32)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    steps: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = Field(default_factory=utcnow)


class CrmIdempotencyRecord(SQLModel, table=True):
    """The result of a CRM write, by idempotency key: a retried step answers from here."""

    __tablename__ = "crm_idempotency"
    key: str = Field(primary_key=True, max_length=400)
    tenant_id: str = Field(index=True, max_length=64)
    integration_id: str = Field(max_length=64)
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class CrmWriteMarker(SQLModel, table=True):
    """A property value leadflow just wrote, so its webhook echo can be recognised and ignored."""

    __tablename__ = "crm_write_markers"
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True, max_length=64)
    integration_id: str = Field(max_length=64)
    remote_id: str = Field(max_length=128)
    prop: str = Field(max_length=200)
    value: str = Field(sa_column=Column(Text, nullable=False))
    expires_at: datetime = Field(index=True)
