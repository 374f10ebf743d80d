"""Contracts of the LLM usage ledger: one record per model call, aggregates, provider health."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from models.messages import Frozen
from models.tables import utcnow


class CallOutcome(StrEnum):
    OK = "ok"
    INVALID_OUTPUT = "invalid_output"  # the answer did not validate, even after a repair
    REPAIRED = "repaired"  # the first answer did not validate; a repair prompt fixed it
    ERROR = "error"  # the vendor call failed
    BUDGET_EXHAUSTED = "budget_exhausted"  # not sent: the tenant's daily budget was spent


SUCCESSFUL_OUTCOMES = frozenset({CallOutcome.OK, CallOutcome.REPAIRED})
"""Outcomes that are not counted as errors in usage summaries."""


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class LlmCallRecord(Frozen):
    """One model call as the agent reports it to the ledger (the `llm_calls` row without its id)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    # Lengths as in the table, so a bad record fails here, with its field named, on both databases.
    tenant_id: str = Field(max_length=64)
    conversation_id: str | None = Field(default=None, max_length=400)
    job_id: str | None = Field(default=None, max_length=64)
    step: str = Field(max_length=64, description="analysis | reply | email | ...")
    purpose: str | None = Field(default=None, max_length=64, description="reply | follow_up | ...")
    provider: str = Field(max_length=64)
    model: str = Field(max_length=200)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0.0)
    latency_ms: int = Field(default=0, ge=0)
    outcome: CallOutcome
    error: str | None = None
    output: dict[str, Any] | None = Field(
        default=None,
        description="A compact summary of what the call produced (intent, fields), for evaluation.",
    )
    at: datetime = Field(default_factory=utcnow)


class UsageTotals(Frozen):
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    errors: int = Field(default=0, description="Calls whose outcome is neither ok nor repaired.")
    avg_latency_ms: float = 0.0


class UsageGroup(UsageTotals):
    key: str = Field(description='An ISO date, "provider:model" or a step, by the grouping.')


class ProviderHealth(Frozen):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    key: str
    worker: str
    state: BreakerState
    changed_at: datetime
    last_error: str | None = None


def worker_identity() -> str:
    """This process, as the `worker` of its provider-health rows: hostname:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"
