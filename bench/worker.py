"""`leadflow worker` plus a BENCH-ONLY LLM provider, for when no OpenAI-compatible provider is
loaded: "bench-delayed-offline" sleeps a fixed latency (BENCH_LLM_LATENCY_MS, default 500) and
then answers with the offline templates, so the benchmark sees an LLM's latency without a
network model. It is registered in this process only, never through an entry point: production
workers cannot load it.

    python -m bench.worker --queue leadflow-enrichment
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx

from activities.llm.base import LlmProvider
from activities.llm.offline import offline_provider
from activities.plugin_api import LeadflowPlugin
from models.agent import (
    AnalyseInput,
    AnalysisResult,
    GeneratedReply,
    GenerateReplyInput,
    WriteEmailInput,
    WrittenEmail,
)
from models.settings import Settings

PROVIDER_NAME = "bench-delayed-offline"


class DelayedOffline:
    """Offline templates behind a fixed delay. Labelled: its token usage says `bench`."""

    name = PROVIDER_NAME

    def __init__(self, inner: LlmProvider, latency: float) -> None:
        self.inner = inner
        self.latency = latency

    async def analyse(self, request: AnalyseInput) -> AnalysisResult:
        await asyncio.sleep(self.latency)
        return await self.inner.analyse(request)

    async def generate_reply(self, request: GenerateReplyInput) -> GeneratedReply:
        await asyncio.sleep(self.latency)
        return await self.inner.generate_reply(request)

    async def write_email(self, request: WriteEmailInput) -> WrittenEmail:
        await asyncio.sleep(self.latency)
        written = await self.inner.write_email(request)
        usage = written.usage.model_copy(update={"provider": PROVIDER_NAME})
        return written.model_copy(update={"usage": usage})


def delayed_offline(settings: Settings, http: httpx.AsyncClient) -> DelayedOffline:
    latency = float(os.environ.get("BENCH_LLM_LATENCY_MS", "500")) / 1000
    return DelayedOffline(offline_provider(settings, http), latency)


def bench_plugin() -> LeadflowPlugin:
    return LeadflowPlugin(
        name="bench",
        description="BENCH ONLY: offline templates behind a fixed LLM latency.",
        llm_providers={PROVIDER_NAME: delayed_offline},
    )


def install() -> None:
    """Add the bench plugin to what `workers.worker` discovers, in this process only."""
    from workers import plugins, worker

    original = plugins.discover

    def discover() -> list[plugins.LoadedPlugin]:
        return [
            *original(),
            plugins.LoadedPlugin(entry_point="bench (in-process)", plugin=bench_plugin()),
        ]

    worker.discover = discover  # type: ignore[attr-defined]


def main() -> None:
    install()
    from workers.cli import app

    app(["worker", *sys.argv[1:]], prog_name="bench.worker")


if __name__ == "__main__":
    main()
