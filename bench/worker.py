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

from activities.llm.base import (
    BackendSpec,
    EmailContext,
    Perceived,
    PerceptionContext,
    WritingContext,
    Written,
    WrittenEmailDraft,
)
from activities.llm.offline import OfflineBackend
from activities.plugin_api import LeadflowPlugin
from models.settings import Settings

PROVIDER_NAME = "bench-delayed-offline"


class DelayedOffline:
    """Offline rules behind a fixed delay (an agent backend). Labelled: its calls say `bench`."""

    provider = PROVIDER_NAME
    model = "bench"
    key = PROVIDER_NAME

    def __init__(self, latency: float) -> None:
        self.inner = OfflineBackend()
        self.latency = latency

    async def perceive(self, context: PerceptionContext) -> Perceived:
        await asyncio.sleep(self.latency)
        return await self.inner.perceive(context)

    async def write(self, context: WritingContext) -> Written:
        await asyncio.sleep(self.latency)
        return await self.inner.write(context)

    async def write_email(self, context: EmailContext) -> WrittenEmailDraft:
        await asyncio.sleep(self.latency)
        return await self.inner.write_email(context)


def delayed_offline(spec: BackendSpec, settings: Settings) -> DelayedOffline:
    latency = float(os.environ.get("BENCH_LLM_LATENCY_MS", "500")) / 1000
    return DelayedOffline(latency)


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
