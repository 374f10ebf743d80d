"""The LLM provider interface. Every provider returns pydantic-validated structured output and
reports token usage; providers make exactly one attempt (Temporal owns retries)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import httpx

from models.agent import (
    AnalyseInput,
    AnalysisResult,
    GeneratedReply,
    GenerateReplyInput,
    WriteEmailInput,
    WrittenEmail,
)
from models.settings import Settings


class LlmProvider(Protocol):
    name: str

    async def analyse(self, request: AnalyseInput) -> AnalysisResult: ...

    async def generate_reply(self, request: GenerateReplyInput) -> GeneratedReply: ...

    async def write_email(self, request: WriteEmailInput) -> WrittenEmail: ...


LlmProviderFactory = Callable[[Settings, httpx.AsyncClient], LlmProvider]
"""Registered by plugins under a name; `LEADFLOW_LLM_PROVIDER` picks one."""
