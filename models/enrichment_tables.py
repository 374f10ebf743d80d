"""Enrichment tables: jobs, their records (one row per CSV row, stored once), and the per-tenant
cache of researched websites."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class EnrichmentJob(SQLModel, table=True):
    __tablename__ = "enrichment_jobs"
    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    filename: str = Field(max_length=255)
    status: str = Field(default="running", max_length=16)
    total: int = 0
    columns: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    delimiter: str = Field(default=",", max_length=1)
    source: str | None = Field(
        default=None,
        sa_column=Column(Text, nullable=True),
        description="The validated CSV as text until its rows are stored; then cleared.",
    )
    rows_stored: bool = False
    concurrency: int = 1
    steps: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    playbook: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class EnrichmentRecord(SQLModel, table=True):
    __tablename__ = "enrichment_records"
    __table_args__ = (
        UniqueConstraint("job_id", "row_number"),
        Index("ix_enrichment_records_job_status", "job_id", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="enrichment_jobs.id", max_length=64)
    tenant_id: str = Field(max_length=64)
    row_number: int
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = 0
    website: str | None = Field(default=None, max_length=2000)
    website_source: str | None = Field(default=None, max_length=16)
    summary: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    emails: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    phones: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    social_links: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    email_subject: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    email_body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None


class FetchCacheEntry(SQLModel, table=True):
    """A researched website per tenant, reused until `expires_at` (identical companies are
    fetched once)."""

    __tablename__ = "enrichment_fetch_cache"
    __table_args__ = (UniqueConstraint("tenant_id", "site_key"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=64)
    site_key: str = Field(max_length=400)
    research: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    fetched_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
