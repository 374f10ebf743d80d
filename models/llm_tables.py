"""LLM tables: the usage ledger (one row per model call) and circuit-breaker state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Numeric, Text
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class LlmCall(SQLModel, table=True):
    """One model call: who asked, what it cost, how it went and a compact summary of its output.

    Rows are only ever inserted; the budget and GET /api/v1/usage aggregate them."""

    __tablename__ = "llm_calls"
    # The budget and the usage API both read one tenant's calls within a time range.
    __table_args__ = (Index("ix_llm_calls_tenant_id_at", "tenant_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True, max_length=64)
    conversation_id: str | None = Field(default=None, index=True, max_length=400)
    job_id: str | None = Field(default=None, index=True, max_length=64)
    step: str = Field(max_length=64, description="analysis | reply | email | ...")
    purpose: str | None = Field(default=None, max_length=64, description="reply | follow_up | ...")
    provider: str = Field(max_length=64)
    model: str = Field(max_length=200)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    # asdecimal=False: Python sees a float on both databases (PostgreSQL would hand back Decimal).
    cost_usd: float = Field(
        default=0.0,
        sa_column=Column(Numeric(18, 8, asdecimal=False), nullable=False, default=0.0),
    )
    latency_ms: int = 0
    outcome: str = Field(
        max_length=32, description="ok | invalid_output | repaired | error | budget_exhausted"
    )
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    output: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="A compact summary of what the call produced (intent, fields), for evaluation.",
    )
    at: datetime = Field(default_factory=utcnow, index=True)


class LlmProviderHealth(SQLModel, table=True):
    """A circuit breaker's state, per worker process and provider credential."""

    __tablename__ = "llm_provider_health"
    key: str = Field(primary_key=True, max_length=200, description='e.g. "anthropic:ab12cd34"')
    worker: str = Field(primary_key=True, max_length=200, description="hostname:pid")
    state: str = Field(max_length=16, description="closed | open | half_open")
    changed_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
