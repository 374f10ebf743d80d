"""Temporal activities for the agent's model steps; they delegate to the one `Agent` of the
worker process (activities/llm/agent.py), which the enrichment activities share."""

from __future__ import annotations

import asyncio

from temporalio import activity

from activities import turn_steps
from activities.llm.agent import Agent, Reading
from models.agent import (
    AnalyseInput,
    AnalysisResult,
    DraftTurnInput,
    GeneratedReply,
    GenerateReplyInput,
    TurnDraft,
    WriteEmailInput,
    WrittenEmail,
)
from models.common import ReplyPurpose
from models.conversation import PreparedTurn, PrepareTurnInput


class LlmActivities:
    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    @activity.defn
    async def analyse_messages(self, request: AnalyseInput) -> AnalysisResult:
        """What the lead's new messages say: intents, confidence, language, sentiment, fields.
        Perception only: the workflow decides what to do with it."""
        return await self._perceive(request)

    async def _perceive(
        self, request: AnalyseInput, reading: Reading | None = None
    ) -> AnalysisResult:
        result = await self._agent.perceive(request, reading)
        activity.logger.info(
            "perceived %d message(s): %s (%s)",
            len(request.new_messages),
            result.perception.intent.value,
            result.usage.provider,
        )
        return result

    @activity.defn
    async def draft_turn(self, request: DraftTurnInput) -> TurnDraft:
        """Perceive the new messages, then draft the reply to them, in one activity.

        The reply is drafted before the workflow has decided anything: it uses the draft when
        it answers the turn with a plain reply and discards it when a rule hands the lead to a
        human (one model call wasted on such turns, one workflow task and one activity saved
        on every other). A failed draft is not this activity's failure: the perception is
        returned and the workflow asks `generate_reply`, with its own retries and fallback."""
        async with self._agent.one_ledger_write():
            return await self._draft_turn(request)

    async def _draft_turn(self, request: DraftTurnInput) -> TurnDraft:
        reading = await self._agent.read(request)  # once, for both steps
        analysis = await self._perceive(request, reading)
        perception = analysis.perception
        try:
            reply = await self._agent.write_reply(
                GenerateReplyInput(
                    tenant_id=request.tenant_id,
                    playbook=request.playbook,
                    purpose=ReplyPurpose.REPLY,
                    stage=request.stage,
                    conversation_id=request.conversation_id,
                    # The summary is for people (the UI, the ledger); the writer reads the
                    # transcript.
                    perception=perception.model_copy(update={"summary": ""}),
                    new_messages=request.new_messages,
                    knowledge_ids=request.knowledge_ids,
                    contact_name=request.contact_name,
                    turn=request.turn,
                ),
                reading,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            activity.logger.warning("drafting the reply failed; the workflow will ask: %s", exc)
            return TurnDraft(analysis=analysis, draft_error=str(exc) or type(exc).__name__)
        return TurnDraft(analysis=analysis, reply=reply)

    @activity.defn
    async def prepare_turn(self, request: PrepareTurnInput) -> PreparedTurn:
        """Load the turn's context (playbook reference, knowledge hits, do-not-contact), then
        perceive and draft as `draft_turn` does. One activity where runs before version 2 took
        a local activity and this one: a do-not-contact lead is not perceived at all."""
        context = await turn_steps.load_turn_context(
            self._agent.db, self._agent.resolver, request.context, knowledge=self._agent.knowledge
        )
        if context.do_not_contact:
            return PreparedTurn(context=context)
        update: dict[str, object] = {
            "playbook": context.playbook,
            "knowledge_ids": tuple(hit.document_id for hit in context.knowledge),
        }
        earlier = context.resume
        if earlier is not None:
            # A fresh run's first turn learns the lead's history only here: the writer gets the
            # name the lead gave before and the turn number the workflow will record (the stage
            # stays the workflow's to decide).
            update["turn"] = request.draft.turn + earlier.turns
            if not request.draft.contact_name and earlier.contact_name:
                update["contact_name"] = earlier.contact_name
        draft = request.draft.model_copy(update=update)
        return PreparedTurn(context=context, draft=await self.draft_turn(draft))

    @activity.defn
    async def generate_reply(self, request: GenerateReplyInput) -> GeneratedReply:
        """The next message for the lead, checked by the reply guard (a blocked text comes back
        with `guard` set and must not be sent)."""
        return await self._agent.write_reply(request)

    @activity.defn
    async def write_email(self, request: WriteEmailInput) -> WrittenEmail:
        """A personalised outreach e-mail grounded on the enrichment's company facts."""
        return await self._agent.write_email(request)
