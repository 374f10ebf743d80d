"""Temporal activities for the agent's LLM steps; the provider is picked by `LEADFLOW_LLM_PROVIDER`.

Providers make exactly one attempt (Temporal owns retries). A provider name that no plugin
registered is a configuration error no retry can fix, so it fails the activity for good.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm.base import LlmProvider, LlmProviderFactory
from models.agent import (
    AnalyseInput,
    AnalysisResult,
    GeneratedReply,
    GenerateReplyInput,
    WriteEmailInput,
    WrittenEmail,
)
from models.settings import Settings


class LlmActivities:
    def __init__(
        self,
        factories: Mapping[str, LlmProviderFactory],
        settings: Settings,
        http: httpx.AsyncClient,
    ) -> None:
        self._factories = dict(factories)
        self._settings = settings
        self._http = http
        self._provider: LlmProvider | None = None

    def provider(self) -> LlmProvider:
        """The configured provider, built on first use (workers start even if it is missing,
        and the error then names the problem on the activity that needed it)."""
        if self._provider is None:
            name = self._settings.llm_provider
            factory = self._factories.get(name)
            if factory is None:
                available = ", ".join(sorted(self._factories)) or "none"
                raise ApplicationError(
                    f"LLM provider {name!r} is not registered (LEADFLOW_LLM_PROVIDER); "
                    f"available providers: {available}",
                    type="UnknownLlmProvider",
                    non_retryable=True,
                )
            self._provider = factory(self._settings, self._http)
        return self._provider

    @activity.defn
    async def analyse_messages(self, request: AnalyseInput) -> AnalysisResult:
        """Intent, priority, fields and the escalation decision for the lead's new messages."""
        result = await self.provider().analyse(request)
        activity.logger.info(
            "analysed %d message(s): %s", len(request.new_messages), result.analysis.summary
        )
        return result

    @activity.defn
    async def generate_reply(self, request: GenerateReplyInput) -> GeneratedReply:
        """The next message for the lead (or a specialist), in the lead's language."""
        return await self.provider().generate_reply(request)

    @activity.defn
    async def write_email(self, request: WriteEmailInput) -> WrittenEmail:
        """A personalised outreach e-mail grounded on the enrichment's company facts."""
        return await self.provider().write_email(request)
