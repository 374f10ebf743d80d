"""Temporal activities for the agent's model steps; they delegate to the one `Agent` of the
worker process (activities/llm/agent.py), which the enrichment activities share."""

from __future__ import annotations

from temporalio import activity

from activities.llm.agent import Agent
from models.agent import (
    AnalyseInput,
    AnalysisResult,
    GeneratedReply,
    GenerateReplyInput,
    WriteEmailInput,
    WrittenEmail,
)


class LlmActivities:
    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    @activity.defn
    async def analyse_messages(self, request: AnalyseInput) -> AnalysisResult:
        """What the lead's new messages say: intents, confidence, language, sentiment, fields.
        Perception only: the workflow decides what to do with it."""
        result = await self._agent.perceive(request)
        activity.logger.info(
            "perceived %d message(s): %s (%s)",
            len(request.new_messages),
            result.perception.intent.value,
            result.usage.provider,
        )
        return result

    @activity.defn
    async def generate_reply(self, request: GenerateReplyInput) -> GeneratedReply:
        """The next message for the lead, checked by the reply guard (a blocked text comes back
        with `guard` set and must not be sent)."""
        return await self._agent.write_reply(request)

    @activity.defn
    async def write_email(self, request: WriteEmailInput) -> WrittenEmail:
        """A personalised outreach e-mail grounded on the enrichment's company facts."""
        return await self._agent.write_email(request)
