"""ConversationWorkflow: one durable conversation per (tenant, channel, contact).

The workflow is the conversation's single writer: webhooks signal messages in, it debounces
bursts, runs turns (analyse → knowledge → reply → score → send → record), hands over to humans,
sends follow-ups on durable timers and continues as new before its history grows large.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.channels.activities import ChannelActivities
    from activities.crm.activities import CrmSyncRequester
    from activities.llm.activities import LlmActivities
    from activities.store import StoreActivities
    from models import search_attributes as sa
    from models.agent import (
        AnalyseInput,
        AnalysisResult,
        DraftTurnInput,
        GeneratedReply,
        GenerateReplyInput,
        LegacyEscalation,
        Perception,
        TurnDraft,
    )
    from models.common import Channel, Priority, ReplyPurpose, Role, Stage
    from models.conversation import (
        COMMAND_REFUSED,
        COMMAND_RESULTS_KEPT,
        SEEN_IDS_KEPT,
        TRANSCRIPT_TAIL,
        UPDATE_CLOSE,
        UPDATE_HANDOFF,
        UPDATE_OPERATOR_MESSAGE,
        UPDATE_RELEASE,
        CloseRequest,
        CommandResult,
        ConversationInput,
        ConversationSnapshot,
        EscalationRecord,
        HandoffRequest,
        HandoffState,
        NotifyResult,
        NotifySpecialistInput,
        OperatorMessage,
        PreparedTurn,
        PrepareTurnInput,
        RecordTurnInput,
        ReleaseRequest,
        ResumeState,
        SendAndRecordInput,
        TurnContext,
        TurnContextInput,
        lead_id_for,
    )
    from models.crm import RequestCrmSyncInput
    from models.messages import InboundMessage, OutboundMessage, SendResult, TranscriptEntry
    from models.policy import ConversationPolicy, PlaybookRef
    from models.tenant import Specialist
    from workflows import policies
    from workflows.escalation import (
        EscalationDecision,
        decide_escalation,
        keep_declared,
        priority_of,
    )
    from workflows.scoring import score_lead
    from workflows.stages import (
        next_stage,
        not_interested,
        opted_out,
        stage_after_close,
        stage_after_follow_up,
        stage_after_outreach,
        stage_after_release,
        stage_for_outreach,
        stage_on_handoff,
        stage_on_resume,
    )
    from workflows.tags import lead_tags
    from workflows.timing import next_allowed_time

MAX_DEBOUNCE_FACTOR = 10  # a steady stream of messages is still answered after this many windows
OPERATOR_TEXT_MAX = 4096  # characters of an operator message (the API refuses longer ones too)


PATCH_RECORD_OPERATOR_HANDOFF = "record-operator-handoff"
PATCH_RELEASE_SEARCH_ATTRIBUTES = "release-updates-search-attributes"
# Providers perceive, the workflow decides (escalation, priority, fields); a failed or blocked
# reply sends the playbook's holding text. Histories from before decided inside the provider.
PATCH_AGENT_BOUNDARY = "agent-boundary"

# Activity failure types that mean "no model can answer this turn" and which rule hands over.
FALLBACK_RULES = {
    "LlmBudgetExhausted": "budget_exhausted",
    "InvalidLlmOutput": "invalid_model_output",
}


@workflow.defn(name="ConversationWorkflow")
class ConversationWorkflow:
    @workflow.init
    def __init__(self, state: ConversationInput) -> None:
        self._s = state.model_copy(deep=True)
        # Its own id as started: a keyed hash of the contact, or the contact itself for a run
        # started before hashed ids (models/workflow_ids.py). Never recomputed here: the key is
        # not the workflow's to hold, and both forms must run (and replay) the same code.
        self._id = workflow.info().workflow_id
        self._lead_id = lead_id_for(state.tenant_id, state.channel, state.contact)
        self._ref = PlaybookRef(
            tenant_id=state.tenant_id,
            hash=state.policy.playbook_hash if state.policy else None,
        )
        self._close_reason: str | None = None
        # Until a context says otherwise (e.g. right after continue-as-new), a changed lead
        # requests its CRM sync: asking once too often is harmless, never asking is not.
        self._crm_connected = True
        self._released = False
        self._handed_over = False
        self._sending: list[str] = []
        # Version ≥ 3. Set by an operator's handoff or close (and an agent's reply) while a turn
        # awaits: the turn stops before it sends. Reset when a turn starts.
        self._operator_stop = False
        # The do-not-contact change the next record carries (True: the lead opted out).
        self._dnc_to_record: bool | None = None
        # Operator messages sent (or not) by the main loop, for their waiting Updates.
        self._operator_outcomes: dict[str, CommandResult] = {}
        self._awaited: set[str] = set()
        # The provider ids the database knew when this run resumed: redeliveries to drop.
        self._resumed_ids: frozenset[str] = frozenset()
        # The search attributes as Temporal holds them: a run at version ≥ 1 starts with what
        # its starter set and upserts only what changes (each upsert is an event and a
        # visibility write on the server).
        self._indexed: dict[str, object] = (
            {pair.key.name: pair.value for pair in workflow.info().typed_search_attributes}
            if state.version >= 1
            else {}
        )

    def _patched(self, patch_id: str) -> bool:
        """A run started at version ≥ 1 takes every patch that predates versions without
        asking Temporal (which records a marker and a search-attribute upsert per run)."""
        return self._s.version >= 1 or workflow.patched(patch_id)

    # ---- signals and queries -------------------------------------------------------------

    @workflow.signal(name="inbound")
    def inbound(self, message: InboundMessage) -> None:
        if message.provider_message_id in self._s.seen_message_ids:
            return  # a redelivered webhook
        self._s.seen_message_ids.append(message.provider_message_id)
        del self._s.seen_message_ids[:-SEEN_IDS_KEPT]
        if message.thread and (not self._s.thread or self._s.channel == Channel.EMAIL):
            # E-mail answers the lead's latest mail (its Message-ID: In-Reply-To); other
            # channels keep the provider conversation they started in.
            self._s.thread = message.thread
        if message.subject and not self._s.subject:
            self._s.subject = message.subject  # e-mail: answers are "Re: <the lead's subject>"
        if message.contact_name and not self._s.contact_name:
            self._s.contact_name = message.contact_name
        if message.role == Role.HUMAN:
            if self._is_echo(message):
                return  # our own message, reported back by the provider (e.g. Chatwoot)
            self._s.human_queue.append(message)
        else:
            self._s.pending.append(message)

    def _is_echo(self, message: InboundMessage) -> bool:
        if message.text in self._sending:
            return True
        for entry in reversed(self._s.transcript[-10:]):
            if entry.role in (Role.AI, Role.HUMAN) and (
                (
                    entry.provider_message_id
                    and entry.provider_message_id == message.provider_message_id
                )
                or (entry.role == Role.AI and entry.text == message.text)
            ):
                return True
        return False

    @workflow.signal(name="operator_message")
    def operator_message(self, message: OperatorMessage) -> None:
        if message.request_id in self._s.seen_message_ids:
            return
        self._s.seen_message_ids.append(message.request_id)
        self._s.operator_queue.append(message)

    @workflow.signal(name="handoff")
    def handoff(self, request: HandoffRequest) -> None:
        if self._s.stage != Stage.CLOSED and self._s.handoff is None:
            if self._s.version >= 3 and self._close_reason is not None:
                return  # closing: as the Update's validator refuses
            self._take_over(request.reason)

    @workflow.signal(name="release")
    def release(self, request: ReleaseRequest) -> None:
        if self._s.handoff is not None:
            self._hand_back()

    @workflow.signal(name="close")
    def close(self, request: CloseRequest) -> None:
        self._close_reason = request.reason
        self._operator_stop = True

    def _take_over(self, reason: str) -> None:
        self._enter_handoff(reason, rule=None, human_replied=True)
        self._operator_stop = True
        # Record the new stage at once (API, Temporal UI); histories from before this change
        # recorded nothing here and must replay unchanged.
        if self._patched(PATCH_RECORD_OPERATOR_HANDOFF):
            self._handed_over = True

    def _hand_back(self) -> None:
        self._s.handoff = None
        self._s.stage = stage_after_release(self._s.stage)
        self._released = True

    # ---- operator commands as Updates (version 3; any running version answers them) -----
    #
    # A validator that refuses raises COMMAND_REFUSED: Temporal writes nothing to the history
    # and the caller gets the reason. Handoff and release answer at once with the state they
    # decided (durable in the history; the database record follows in the next step, after a
    # running turn's current activity). Close answers once the conversation is closed (a
    # running turn stops first); an operator message once it was sent and recorded, or with
    # `sent=False` and why. Results are kept by update id across continue-as-new, so a retry
    # that Temporal no longer deduplicates (another run) answers the same without acting.

    @workflow.update(name=UPDATE_HANDOFF)
    def handoff_command(self, request: HandoffRequest) -> CommandResult:
        done = self._done_before()
        if done is not None:
            return done
        self._take_over(request.reason.strip())
        return self._command_done(self._result())

    @handoff_command.validator
    def _validate_handoff(self, request: HandoffRequest) -> None:
        if self._done_before() is not None:
            return
        self._refuse_when_closed()
        if not request.reason.strip():
            _refuse("a handoff needs a reason")
        if self._s.handoff is not None:
            _refuse(f"already handed to a human: {self._s.handoff.reason}")

    @workflow.update(name=UPDATE_RELEASE)
    def release_command(self, request: ReleaseRequest) -> CommandResult:
        done = self._done_before()
        if done is not None:
            return done
        self._hand_back()
        return self._command_done(self._result())

    @release_command.validator
    def _validate_release(self, request: ReleaseRequest) -> None:
        if self._done_before() is not None:
            return
        self._refuse_when_closed()
        if self._s.handoff is None:
            _refuse("the conversation is not handed to a human: nothing to release")

    @workflow.update(name=UPDATE_OPERATOR_MESSAGE)
    async def operator_message_command(self, message: OperatorMessage) -> CommandResult:
        done = self._done_before()
        if done is not None:
            return done
        request_id = message.request_id
        if request_id in self._s.seen_message_ids:
            # Queued by the signal path (or a result too old to keep): never sent twice.
            return self._result(detail="this request was taken before; it is not sent again")
        self._awaited.add(request_id)
        self.operator_message(message.model_copy(update={"text": message.text.strip()}))
        await workflow.wait_condition(lambda: request_id in self._operator_outcomes)
        self._awaited.discard(request_id)
        return self._command_done(self._operator_outcomes.pop(request_id))

    @operator_message_command.validator
    def _validate_operator_message(self, message: OperatorMessage) -> None:
        if self._done_before() is not None:
            return
        self._refuse_when_closed()
        if self._s.do_not_contact:
            _refuse("the lead asked not to be contacted: nothing is sent")
        if not message.text.strip():
            _refuse("the message is empty")
        if len(message.text) > OPERATOR_TEXT_MAX:
            _refuse(f"the message is longer than {OPERATOR_TEXT_MAX} characters")
        if not message.request_id.strip():
            _refuse("the message needs a request id")

    @workflow.update(name=UPDATE_CLOSE)
    async def close_command(self, request: CloseRequest) -> CommandResult:
        done = self._done_before()
        if done is not None:
            return done
        self.close(request.model_copy(update={"reason": request.reason.strip()}))
        # The main loop closes once a running turn has stopped; answered with the closed state.
        await workflow.wait_condition(lambda: self._s.stage == Stage.CLOSED)
        return self._command_done(self._result())

    @close_command.validator
    def _validate_close(self, request: CloseRequest) -> None:
        if self._done_before() is not None:
            return
        if self._s.stage == Stage.CLOSED or self._close_reason is not None:
            _refuse("the conversation is already closed")
        if not request.reason.strip():
            _refuse("closing needs a reason")

    def _refuse_when_closed(self) -> None:
        if self._s.stage == Stage.CLOSED:
            _refuse("the conversation is closed")
        if self._close_reason is not None:
            _refuse(f"the conversation is closing ({self._close_reason})")

    def _done_before(self) -> CommandResult | None:
        info = workflow.current_update_info()
        return self._s.command_results.get(info.id) if info is not None else None

    def _command_done(self, result: CommandResult) -> CommandResult:
        info = workflow.current_update_info()
        if info is not None:
            self._s.command_results[info.id] = result
            for stale in list(self._s.command_results)[:-COMMAND_RESULTS_KEPT]:
                del self._s.command_results[stale]
        return result

    def _result(self, **outcome: Any) -> CommandResult:
        return CommandResult(stage=self._s.stage, handoff=self._s.handoff, **outcome)

    @workflow.query(name="state")
    def state(self) -> ConversationSnapshot:
        return ConversationSnapshot(
            workflow_id=self._id,
            tenant_id=self._s.tenant_id,
            channel=self._s.channel,
            contact=self._s.contact,
            stage=self._s.stage,
            score=self._s.score,
            fields=dict(self._s.fields),
            transcript=tuple(self._s.transcript),
            turns=self._s.turns,
            pending_messages=len(self._s.pending),
            handoff=self._s.handoff,
        )

    # ---- main loop -----------------------------------------------------------------------

    @workflow.run
    async def run(self, state: ConversationInput) -> ConversationSnapshot:
        self._upsert_search_attributes()
        if self._s.outreach is not None and self._s.turns == 0:
            try:
                await self._send_outreach()
            except ActivityError as exc:
                self._s.outreach = None
                entry = self._system_entry(f"the outreach failed: {exc.cause or exc}")
                await self._record([entry], turn_key="outreach-failed")
        while True:
            if self._close_reason is not None and self._s.stage != Stage.CLOSED:
                await self._close()
            if self._s.stage == Stage.CLOSED and not self._has_work():
                if not await self._handlers_finished():
                    continue
                return self.state()
            if self._may_continue_as_new() and self._should_continue_as_new():
                if not await self._handlers_finished(carry=self._s.version >= 3):
                    continue
                workflow.continue_as_new(self._s)
            await self._step()

    async def _handlers_finished(self, *, carry: bool = False) -> bool:
        """Wait for running signal and update handlers before the run ends. From version 3
        an Update may wait for the main loop (an operator message to send): new work wakes
        the loop instead (False), so the two never wait for each other. With `carry`, work
        the next run takes over (see `_may_continue_as_new`) does not count."""
        if self._s.version < 3:
            await workflow.wait_condition(workflow.all_handlers_finished)
            return True
        busy = self._must_finish_here if carry else self._has_work
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() or busy())
        return not busy()

    def _may_continue_as_new(self) -> bool:
        """Version ≥ 3 continues as new also while lead or agent messages wait: they are in the
        state the next run starts from. Before, only an idle run did, and a lead who wrote
        during every turn kept one run growing past its history limit."""
        if self._s.version < 3:
            return not self._has_work()
        return not self._must_finish_here()

    def _must_finish_here(self) -> bool:
        # Work that is not carried: operator messages (their Updates wait on this run), the
        # handoff/release flags and a close in progress.
        return bool(
            self._s.operator_queue
            or self._released
            or self._handed_over
            or (self._close_reason is not None and self._s.stage != Stage.CLOSED)
        )

    def _has_work(self) -> bool:
        return bool(
            self._s.pending
            or self._s.operator_queue
            or self._s.human_queue
            or self._released
            or self._handed_over
            or (self._close_reason is not None and self._s.stage != Stage.CLOSED)
        )

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._s.history_limit
        )

    async def _step(self) -> None:
        if self._handed_over:
            self._handed_over = False
            await self._record((), turn_key=self._event_key("handoff"))
            self._upsert_search_attributes()
            self._details("handed to a human by an operator; the AI stays silent")
        if self._released:
            self._released = False
            await self._record((), turn_key=self._event_key("release"))
            if self._patched(PATCH_RELEASE_SEARCH_ATTRIBUTES):
                self._upsert_search_attributes()
            self._details("released by a human; the AI answers again")
        if self._s.human_queue:
            await self._record_human_messages()
        if self._s.operator_queue:
            await self._send_operator_messages()
            return
        if self._s.stage == Stage.CLOSED:
            if self._s.pending:
                await self._record_silently()
            return
        if self._s.pending:
            if self._s.handoff is not None:
                await self._record_silently()
            else:
                await self._debounce()
                await self._turn()
            return
        await self._wait_for_event_or_timer()

    async def _wait_for_event_or_timer(self) -> None:
        due, action = self._next_timer()
        if due is None:
            await workflow.wait_condition(self._has_work)
            return
        delay = max((due - workflow.now()).total_seconds(), 0.0)
        try:
            await workflow.wait_condition(self._has_work, timeout=timedelta(seconds=delay))
        except TimeoutError:
            try:
                if action == "holding":
                    await self._send_holding_message()
                elif action == "follow_up":
                    await self._send_follow_up()
                elif action == "nurture":
                    await self._send_nurture()
            except ActivityError as exc:
                entry = self._system_entry(f"the {action} message failed: {exc.cause or exc}")
                await self._record([entry], turn_key=self._event_key(f"{action}-failed"))

    def _next_timer(self) -> tuple[datetime | None, str]:
        # The policy lives in the state, so a continued-as-new run keeps its timers.
        playbook = self._s.policy
        if playbook is None:
            return None, ""
        handoff = self._s.handoff
        if handoff is not None:
            if handoff.human_replied or handoff.holding_sent:
                return None, ""
            return handoff.since + playbook.handoff.holding_after, "holding"
        if (
            self._s.version >= 3
            and self._s.nurture_at is not None
            and self._s.stage not in (Stage.CLOSED, Stage.HUMAN_HANDOFF)
        ):
            return next_allowed_time(self._s.nurture_at, playbook.quiet_hours), "nurture"
        cadence = playbook.follow_up.cadence
        if (
            self._s.last_reply_at is None
            or self._s.follow_ups_sent >= len(cadence)
            or self._s.stage in (Stage.CLOSED, Stage.HUMAN_HANDOFF)
        ):
            return None, ""
        due = self._s.last_reply_at + cadence[self._s.follow_ups_sent]
        return next_allowed_time(due, playbook.quiet_hours), "follow_up"

    async def _debounce(self) -> None:
        """Wait until the lead is quiet for the debounce window: a burst gets one answer."""
        window = timedelta(seconds=self._s.debounce_seconds)
        for _ in range(MAX_DEBOUNCE_FACTOR):
            seen = len(self._s.pending)
            try:
                await workflow.wait_condition(
                    lambda seen=seen: (
                        len(self._s.pending) != seen or self._close_reason is not None
                    ),  # type: ignore[misc]
                    timeout=window,
                )
            except TimeoutError:
                return
            if self._close_reason is not None:
                return

    # ---- a turn --------------------------------------------------------------------------

    async def _turn(self) -> None:
        if self._s.version >= 3:
            await self._turn_v3()
            return
        batch = list(self._s.pending)
        # Messages that arrive from here on stay pending and are answered in the next turn.
        self._s.pending.clear()
        self._s.turns += 1
        turn_key = f"turn:{self._s.turns}"
        self._s.lead_messages += len(batch)
        inbound_entries = [
            TranscriptEntry(
                role=Role.LEAD, text=m.text, at=m.sent_at, provider_message_id=m.provider_message_id
            )
            for m in batch
        ]
        history = tuple(self._s.transcript)
        self._append(inbound_entries)
        self._details(f"turn {self._s.turns}: answering {len(batch)} message(s)")

        query = " ".join(m.text for m in batch)
        prepared: TurnDraft | None = None
        if self._s.version >= 2:
            try:
                ready = await self._prepare(batch, query)
            except ActivityError as exc:
                # As when a version-1 turn's draft fails for good: hand over, with the context
                # read on its own (its failure is the turn's failure, as in version 1).
                context = await self._context(query)
                await self._hand_over_after_failure(context, inbound_entries, turn_key, exc)
                self._turn_done()
                return
            context, prepared = self._take_context(ready.context), ready.draft
        else:
            context = await self._context(query)
        if context.do_not_contact:
            # The CRM says so: record what the lead wrote and close without answering.
            await self._record(inbound_entries, turn_key=turn_key)
            self._close_reason = self._close_reason or "do not contact"
            return
        try:
            await self._answer(context, batch, history, inbound_entries, turn_key, prepared)
        except ActivityError as exc:
            await self._hand_over_after_failure(context, inbound_entries, turn_key, exc)
        self._turn_done()

    async def _turn_v3(self) -> None:
        """A turn from version 3: it stops before sending when an operator hands over or closes
        meanwhile; a fresh run's first turn resumes from the database (and drops redeliveries
        of messages an earlier run saw); a do-not-contact lead is recorded, never answered."""
        batch = list(self._s.pending)
        # Messages that arrive from here on stay pending and are answered in the next turn.
        self._s.pending.clear()
        self._s.nurture_at = None  # the lead wrote: no nurture message is due any more
        self._s.turns += 1
        query = " ".join(m.text for m in batch)
        if self._s.handoff is not None or self._close_reason is not None:
            # Handed over or closed while the burst was debounced: recorded, not answered (a
            # fresh run still learns its history first, so its turn key follows the last run's).
            if not self._s.resume_checked:
                await self._context(query)
            batch = [m for m in batch if m.provider_message_id not in self._resumed_ids]
            if batch:
                entries = self._take_lead_messages(batch)
                await self._record(entries, turn_key=f"turn:{self._s.turns}")
            return
        self._operator_stop = False
        self._details(f"turn {self._s.turns}: answering {len(batch)} message(s)")
        prepared: TurnDraft | None = None
        failure: ActivityError | None = None
        try:
            ready = await self._prepare(batch, query)
            context, prepared = self._take_context(ready.context), ready.draft
        except ActivityError as exc:
            # As in version 2: hand over, with the context read on its own.
            failure = exc
            context = await self._context(query)
        # A resumed run knows the earlier turns now: number on from them (keys stay unique).
        turn_key = f"turn:{self._s.turns}"
        batch = [m for m in batch if m.provider_message_id not in self._resumed_ids]
        if not batch:
            self._s.turns -= 1
            self._details("only redeliveries of messages answered before: nothing to do")
            return
        history = tuple(self._s.transcript)
        inbound_entries = self._take_lead_messages(batch)
        if self._s.do_not_contact:
            # The lead opted out (or the CRM says so): record what they wrote, never answer.
            await self._record(inbound_entries, turn_key=turn_key)
            self._close_reason = self._close_reason or "do not contact"
            return
        if failure is not None:
            if self._stopped_by_operator() or self._s.handoff is not None:
                await self._stop_turn(inbound_entries, turn_key)
            else:
                await self._hand_over_after_failure(context, inbound_entries, turn_key, failure)
                self._turn_done()
            return
        try:
            await self._answer(context, batch, history, inbound_entries, turn_key, prepared)
        except ActivityError as exc:
            if self._stopped_by_operator():
                await self._stop_turn(inbound_entries, turn_key)
                return
            await self._hand_over_after_failure(context, inbound_entries, turn_key, exc)
        self._turn_done()

    def _take_lead_messages(self, batch: list[InboundMessage]) -> list[TranscriptEntry]:
        self._s.lead_messages += len(batch)
        entries = [
            TranscriptEntry(
                role=Role.LEAD, text=m.text, at=m.sent_at, provider_message_id=m.provider_message_id
            )
            for m in batch
        ]
        self._append(entries)
        return entries

    def _stopped_by_operator(self) -> bool:
        """Version ≥ 3, asked after every await of a turn and before it sends: an operator
        handed over or closed, or an agent answered the lead, while the turn awaited."""
        return self._s.version >= 3 and (self._operator_stop or bool(self._s.human_queue))

    async def _stop_turn(self, entries: list[TranscriptEntry], turn_key: str) -> None:
        """The AI stays silent: what the lead wrote (and what was perceived) is recorded."""
        await self._record(entries, turn_key=turn_key)
        self._turn_done()
        self._details(f"turn {self._s.turns} stopped before replying: a human took over")

    def _turn_done(self) -> None:
        self._upsert_search_attributes()
        score = self._s.score
        self._details(
            f"turn {self._s.turns} done · stage {self._s.stage.value}"
            + (f" · score {score.total} ({score.quality.value})" if score else "")
        )

    async def _answer(
        self,
        context: TurnContext,
        batch: list[InboundMessage],
        history: tuple[TranscriptEntry, ...],
        inbound_entries: list[TranscriptEntry],
        turn_key: str,
        prepared: TurnDraft | None = None,
    ) -> None:
        policy = self._policy()
        texts = tuple(m.text for m in batch)
        knowledge_ids = tuple(hit.document_id for hit in context.knowledge)
        if prepared is not None:  # version ≥ 2: perceived and drafted with the context
            result, draft = prepared.analysis, prepared.reply
        else:
            result, draft = await self._perceive_and_draft(batch, knowledge_ids)
        perception = result.perception
        self._s.language = perception.language
        self._s.sentiment = perception.sentiment  # for the lead's tags (workflows/tags.py)
        decides_here = self._patched(PATCH_AGENT_BOUNDARY)
        if decides_here:
            self._s.fields.update(keep_declared(policy, perception.fields))
        else:
            self._s.fields.update(perception.fields)
        for intent in (perception.intent, *perception.secondary_intents):
            if intent not in self._s.intents_seen:
                self._s.intents_seen.append(intent)
        if decides_here:
            decision = decide_escalation(
                policy, perception, text="\n".join(texts), fields=self._s.fields
            )
            priority = priority_of(
                policy, perception, self._s.fields, escalated=decision is not None
            )
        else:
            decision, priority = self._legacy_decision(policy, result.legacy)
        self._s.score = score_lead(
            policy.scoring,
            self._s.fields,
            tuple(self._s.intents_seen),
            self._s.lead_messages,
            priority,
        )

        v3 = self._s.version >= 3
        if v3 and opted_out(perception):
            # Sticks: the lead is marked do-not-contact (stored and synced to the CRMs by the
            # record step) and the conversation closes after the acknowledgement below.
            self._s.do_not_contact = True
            self._dnc_to_record = True
            self._close_reason = self._close_reason or "the lead opted out"
        if v3 and (self._stopped_by_operator() or self._s.handoff is not None):
            # An operator took over while the turn awaited (or the resumed conversation is with
            # a human): what was perceived is kept, nothing is decided or sent.
            await self._stop_turn(inbound_entries, turn_key)
            return
        if decision is not None:
            # A drafted reply is discarded: the lead gets the escalation notice instead.
            await self._escalate(context, perception, decision, turn_key, inbound_entries)
            return
        self._s.stage = next_stage(
            self._s.stage,
            perception,
            after_not_interested=policy.follow_up.after_not_interested if v3 else None,
        )
        reply = draft or await self._generate(
            ReplyPurpose.REPLY,
            # The summary is for people (the UI, the ledger); the writer reads the transcript.
            perception=perception.model_copy(update={"summary": ""}),
            knowledge_ids=knowledge_ids,
            new_messages=texts,
        )
        if v3 and self._stopped_by_operator():
            await self._stop_turn(inbound_entries, turn_key)
            return
        if reply.guard is not None:
            verdict = reply.guard
            await self._hand_over(
                context,
                inbound_entries,
                turn_key,
                rule="reply_blocked",
                reason=f"the reply guard blocked the AI's reply ({verdict.rule}): {verdict.reason}",
                note=f"blocked reply, not sent: {reply.text}",
                language=perception.language,
            )
            return
        if self._s.version >= 2:
            await self._send_and_record(
                reply.text,
                turn_key,
                inbound_entries,
                knowledge_ids=reply.knowledge_ids or knowledge_ids,
            )
        else:
            entry = await self._send(
                reply.text, turn_key, knowledge_ids=reply.knowledge_ids or knowledge_ids
            )
            await self._record((*inbound_entries, entry), turn_key=turn_key)
        self._s.last_reply_at = workflow.now()
        self._s.follow_ups_sent = 0
        if v3 and not_interested(perception):
            # No cadence for a lead who declined: closed (the stage says so), or one nurture
            # message after the playbook's pause.
            self._s.last_reply_at = None
            if self._s.stage == Stage.NURTURE:
                self._s.nurture_at = workflow.now() + policy.follow_up.nurture_after

    async def _perceive_and_draft(
        self, batch: list[InboundMessage], knowledge_ids: tuple[str, ...]
    ) -> tuple[AnalysisResult, GeneratedReply | None]:
        """Runs at versions 0 and 1 (version 2 perceives inside `prepare_turn`)."""
        asked = AnalyseInput(
            tenant_id=self._s.tenant_id,
            playbook=self._ref,
            conversation_id=self._id,
            new_messages=tuple(m.text for m in batch),
            knowledge_ids=knowledge_ids,
            turn=self._s.turns,
        )
        if self._s.version >= 1:
            # Perceive and draft in one activity; the decision still is the workflow's.
            turn_draft = await workflow.execute_activity_method(
                LlmActivities.draft_turn,
                DraftTurnInput(
                    **asked.model_dump(), stage=self._s.stage, contact_name=self._s.contact_name
                ),
                start_to_close_timeout=policies.DRAFT_TIMEOUT,
                retry_policy=policies.LLM_RETRY,
                summary=f"perceive {len(batch)} message(s) of turn {self._s.turns}, draft a reply",
            )
            return turn_draft.analysis, turn_draft.reply
        result = await workflow.execute_activity_method(
            LlmActivities.analyse_messages,
            asked,
            start_to_close_timeout=policies.LLM_TIMEOUT,
            retry_policy=policies.LLM_RETRY,
            summary=f"analyse {len(batch)} message(s) of turn {self._s.turns}",
        )
        return result, None

    def _legacy_decision(
        self, policy: ConversationPolicy, legacy: LegacyEscalation | None
    ) -> tuple[EscalationDecision | None, Priority]:
        """Replays a turn recorded when the provider decided the escalation itself."""
        legacy = legacy or LegacyEscalation()
        if not legacy.escalate:
            return None, legacy.priority
        name = legacy.rule or "escalation"
        rule = next((r for r in policy.escalation if r.name == name), None)
        decision = EscalationDecision(
            rule=name, reason=legacy.reason or name, notify=rule.notify if rule else ()
        )
        return decision, legacy.priority

    def _policy(self) -> ConversationPolicy:
        if self._s.policy is None:  # a turn always loads its context first
            raise RuntimeError("the conversation has no policy yet")
        return self._s.policy

    async def _hand_over_after_failure(
        self,
        context: TurnContext,
        inbound_entries: list[TranscriptEntry],
        turn_key: str,
        exc: ActivityError,
    ) -> None:
        """The LLM or the channel failed for good: keep what the lead wrote and give the
        conversation to a human rather than fail the run (and lose the messages)."""
        if exc.activity_type in ("send_message", "send_and_record"):
            rule, what = "delivery_failed", "sending the reply"
        else:
            failure_type = getattr(exc.cause, "type", None)
            rule = FALLBACK_RULES.get(str(failure_type), "ai_unavailable")
            what = "the AI"
        reason = f"{what} failed: {exc.cause or exc}"
        workflow.logger.warning("turn %s handed to a human: %s", turn_key, reason)
        if not self._patched(PATCH_AGENT_BOUNDARY):
            await self._hand_over(
                context, inbound_entries, turn_key, rule=rule, reason=reason, holding=False
            )
            return
        await self._hand_over(
            context,
            inbound_entries,
            turn_key,
            rule=rule,
            reason=reason,
            note=f"handed to a human: {reason}",
            holding=rule != "delivery_failed",  # a channel that refuses cannot carry it either
            language=self._language(),
        )

    async def _hand_over(
        self,
        context: TurnContext,
        inbound_entries: list[TranscriptEntry],
        turn_key: str,
        *,
        rule: str,
        reason: str,
        note: str | None = None,
        holding: bool = True,
        language: str | None = None,
    ) -> None:
        """No model answer may go out this turn: tell the lead the playbook's holding text (no
        model needed), tell the specialists why, and wait for a human."""
        self._enter_handoff(reason, rule=rule, human_replied=False)
        alert = self._specialist_alert(reason)
        entries: list[TranscriptEntry] = list(inbound_entries)
        if note:
            entries.append(self._system_entry(note))
        results = await asyncio.gather(
            *(
                self._notify(specialist, via, alert, turn_key)
                for specialist in context.specialists
                for via in self._notification_routes(specialist)
            )
        )
        if holding and self._s.policy is not None and not self._stopped_by_operator():
            text = self._s.policy.fallback_text(language)
            entries.append(await self._try_send(text, f"{turn_key}:holding"))
            if self._s.handoff is not None:
                self._s.handoff = self._s.handoff.model_copy(update={"holding_sent": True})
        await self._record(
            entries,
            turn_key=turn_key,
            escalation=EscalationRecord(
                rule=rule,
                reason=reason,
                notified=tuple(
                    f"{r.specialist}:{r.via}:{'ok' if r.ok else 'failed'}" for r in results
                ),
            ),
        )

    def _context_input(self, query: str) -> TurnContextInput:
        policy = self._s.policy
        return TurnContextInput(
            tenant_id=self._s.tenant_id,
            lead_id=self._lead_id,
            query=query,
            policy_hash=policy.playbook_hash if policy else None,
            # A fresh run's first context (version ≥ 3) brings the lead's history along: the
            # resume rides inside the load the turn makes anyway, no extra activity.
            resume=self._s.version >= 3 and not self._s.resume_checked,
        )

    async def _context(self, query: str) -> TurnContext:
        context = await workflow.execute_local_activity_method(
            StoreActivities.load_turn_context,
            self._context_input(query),
            start_to_close_timeout=policies.STORE_TIMEOUT,
            retry_policy=policies.STORE_RETRY,
            summary="load playbook and knowledge",
        )
        return self._take_context(context)

    def _take_context(self, context: TurnContext) -> TurnContext:
        if context.policy is not None:
            self._s.policy = context.policy
        # Histories from before this field decode it as True: they requested every sync.
        self._crm_connected = context.crm_connected
        self._ref = PlaybookRef(tenant_id=self._s.tenant_id, hash=context.playbook.hash)
        if self._s.version >= 3:
            # The database is the truth (an opt-out recorded, a CRM's flag, an operator's lift).
            self._s.do_not_contact = context.do_not_contact or self._dnc_to_record is True
            if not self._s.resume_checked:
                self._s.resume_checked = True
                if context.resume is not None:
                    self._resume(context.resume)
        return context

    def _resume(self, earlier: ResumeState) -> None:
        """A fresh run of a conversation with history continues from what the database holds:
        its turn numbers (turn keys must not repeat an earlier run's: records and sends are
        idempotent by key), fields, score, stage, transcript tail, name and seen message ids."""
        self._s.turns += earlier.turns
        self._s.fields = {**earlier.fields, **self._s.fields}
        if self._s.score is None:
            self._s.score = earlier.score
        if not self._s.contact_name:
            self._s.contact_name = earlier.contact_name
        if not self._s.tags:
            # What the lead holds: sticky tags (complaint, test-drive, ...) stay, and the first
            # record sends tags only if they differ.
            self._s.tags = list(earlier.tags)
        self._s.do_not_contact = self._s.do_not_contact or earlier.do_not_contact
        ours = {e.provider_message_id for e in self._s.transcript if e.provider_message_id}
        before = [
            e
            for e in earlier.transcript
            if e.provider_message_id not in ours or not e.provider_message_id
        ]
        self._s.transcript = [*before, *self._s.transcript][-TRANSCRIPT_TAIL:]
        self._s.lead_messages += sum(1 for e in before if e.role == Role.LEAD)
        # Messages of this run's first batch the database already holds are redeliveries.
        this_run = set(self._s.seen_message_ids)
        self._resumed_ids = frozenset(earlier.seen_message_ids)
        self._s.seen_message_ids = [
            *(i for i in earlier.seen_message_ids if i not in this_run),
            *self._s.seen_message_ids,
        ][-SEEN_IDS_KEPT:]
        # An outreach keeps its own stage, and so does a handoff this run already took (an
        # operator's, in the run's first workflow task).
        if self._s.outreach is None and self._s.handoff is None:
            self._s.stage = stage_on_resume(earlier.stage)
            if self._s.stage == Stage.HUMAN_HANDOFF and self._s.handoff is None:
                # A human had the conversation when the last run ended: still theirs.
                self._s.handoff = HandoffState(
                    reason="a human had the conversation when its last run ended",
                    since=workflow.now(),
                    human_replied=True,
                )
        self._details(f"resumed after {earlier.turns} earlier turn(s)")

    async def _prepare(self, batch: list[InboundMessage], query: str) -> PreparedTurn:
        """Version ≥ 2: the context, the perception and a draft reply in one activity."""
        return await workflow.execute_activity_method(
            LlmActivities.prepare_turn,
            PrepareTurnInput(
                context=self._context_input(query),
                draft=DraftTurnInput(
                    tenant_id=self._s.tenant_id,
                    playbook=self._ref,
                    conversation_id=self._id,
                    new_messages=tuple(m.text for m in batch),
                    turn=self._s.turns,
                    stage=self._s.stage,
                    contact_name=self._s.contact_name,
                ),
            ),
            start_to_close_timeout=policies.DRAFT_TIMEOUT,
            retry_policy=policies.LLM_RETRY,
            summary=f"load context, perceive {len(batch)} message(s) of turn {self._s.turns}, "
            "draft a reply",
        )

    async def _generate(
        self,
        purpose: ReplyPurpose,
        *,
        perception: Perception | None = None,
        knowledge_ids: tuple[str, ...] = (),
        new_messages: tuple[str, ...] = (),
        escalation_rule: str | None = None,
    ) -> GeneratedReply:
        return await workflow.execute_activity_method(
            LlmActivities.generate_reply,
            GenerateReplyInput(
                tenant_id=self._s.tenant_id,
                playbook=self._ref,
                purpose=purpose,
                stage=self._s.stage,
                conversation_id=self._id,
                perception=perception,
                new_messages=new_messages,
                knowledge_ids=knowledge_ids,
                contact_name=self._s.contact_name,
                language=perception.language if perception else self._language(),
                follow_up_number=self._s.follow_ups_sent + 1,
                instruction=self._s.outreach.instruction if self._s.outreach else None,
                escalation_rule=escalation_rule,
                turn=self._s.turns,
            ),
            start_to_close_timeout=policies.LLM_TIMEOUT,
            retry_policy=policies.LLM_RETRY,
            summary=f"write {purpose.value}",
        )

    def _language(self) -> str | None:
        if self._s.language:
            return self._s.language
        language = self._s.fields.get("language")
        return str(language) if language else None

    async def _send(
        self, text: str, key: str, *, role: Role = Role.AI, knowledge_ids: tuple[str, ...] = ()
    ) -> TranscriptEntry:
        self._sending.append(text)
        try:
            result = await self._send_activity(text, key)
        finally:
            self._sending.remove(text)
        entry = TranscriptEntry(
            role=role,
            text=text,
            at=workflow.now(),
            provider_message_id=result.provider_message_id,
            knowledge_ids=knowledge_ids,
        )
        self._append([entry])
        return entry

    def _outbound(self, text: str, key: str) -> OutboundMessage:
        return OutboundMessage(
            tenant_id=self._s.tenant_id,
            channel=self._s.channel,
            to=self._s.contact,
            text=text,
            idempotency_key=f"{self._id}:{key}",
            thread=self._s.thread,
            subject=self._s.subject,
            conversation_id=self._id,
            campaign_id=self._s.campaign_id,
        )

    async def _send_activity(self, text: str, key: str) -> SendResult:
        return await workflow.execute_activity_method(
            ChannelActivities.send_message,
            self._outbound(text, key),
            start_to_close_timeout=policies.SEND_TIMEOUT,
            retry_policy=policies.SEND_RETRY,
            summary=f"send {key} via {self._s.channel.value}",
        )

    async def _send_and_record(
        self,
        text: str,
        turn_key: str,
        inbound_entries: list[TranscriptEntry],
        *,
        knowledge_ids: tuple[str, ...],
    ) -> None:
        """Version ≥ 2: the reply sent and the turn recorded in one activity."""
        at = workflow.now()
        record = self._record_input(inbound_entries, turn_key=turn_key)
        self._sending.append(text)
        try:
            done = await workflow.execute_activity_method(
                ChannelActivities.send_and_record,
                SendAndRecordInput(
                    message=self._outbound(text, turn_key),
                    record=record,
                    knowledge_ids=knowledge_ids,
                    at=at,
                ),
                start_to_close_timeout=policies.SEND_TIMEOUT,
                retry_policy=policies.SEND_RETRY,
                summary=f"send {turn_key} via {self._s.channel.value}, record it",
            )
        finally:
            self._sending.remove(text)
        entry = TranscriptEntry(
            role=Role.AI,
            text=text,
            at=at,
            provider_message_id=done.sent.provider_message_id,
            knowledge_ids=knowledge_ids,
        )
        self._append([entry])
        if not done.recorded:
            # Sent, but the database failed: record with the record step's unbounded retries.
            await self._record((*inbound_entries, entry), turn_key=turn_key)
            return
        self._dnc_to_record = None
        if record.tags is not None:
            self._s.tags = list(record.tags)
        if done.lead_changed and self._crm_connected:
            await self._request_crm_sync(turn_key)

    async def _record(
        self,
        entries: tuple[TranscriptEntry, ...] | list[TranscriptEntry],
        *,
        turn_key: str,
        escalation: EscalationRecord | None = None,
    ) -> None:
        record = self._record_input(entries, turn_key=turn_key, escalation=escalation)
        changed = await workflow.execute_local_activity_method(
            StoreActivities.record_turn,
            record,
            start_to_close_timeout=policies.STORE_TIMEOUT,
            retry_policy=policies.STORE_RETRY,
            summary=f"record {turn_key}",
        )
        if record.do_not_contact is not None:
            self._dnc_to_record = None  # written: later records leave it as it is
        if record.tags is not None:
            self._s.tags = list(record.tags)  # written: later records send them on change only
        if changed and self._crm_connected:
            await self._request_crm_sync(turn_key)

    def _record_input(
        self,
        entries: tuple[TranscriptEntry, ...] | list[TranscriptEntry],
        *,
        turn_key: str,
        escalation: EscalationRecord | None = None,
    ) -> RecordTurnInput:
        return RecordTurnInput(
            conversation_id=self._id,
            tenant_id=self._s.tenant_id,
            channel=self._s.channel,
            contact=self._s.contact,
            contact_name=self._s.contact_name,
            thread=self._s.thread,
            turn_key=turn_key,
            entries=tuple(entries),
            stage=self._s.stage,
            lead_id=self._lead_id,
            score=self._s.score,
            fields=dict(self._s.fields),
            escalation=escalation,
            turns=self._s.turns,
            do_not_contact=self._dnc_to_record,
            tags=self._changed_tags(),
        )

    def _changed_tags(self) -> tuple[str, ...] | None:
        """The lead's tags now (workflows/tags.py), or None when they are the ones last recorded:
        most records carry none, so a turn's history grows only when a tag changes. Pure code,
        no workflow command: histories recorded before tags replay unchanged. Without a policy
        yet (a record before the first context) the taxonomy is unknown: nothing is sent."""
        policy = self._s.policy
        if policy is None:
            return None
        score = self._s.score
        tags = lead_tags(
            policy.taxonomy,
            fields=self._s.fields,
            intents_seen=self._s.intents_seen,
            stage=self._s.stage,
            channel=self._s.channel,
            quality=score.quality if score else None,
            score=score.total if score else None,
            escalated=self._s.handoff is not None,
            sentiment=self._s.sentiment,
            previous=self._s.tags,
        )
        return None if list(tags) == self._s.tags else tags

    async def _request_crm_sync(self, turn_key: str) -> None:
        """The lead changed: its CrmSyncWorkflow (one per lead, coalescing) updates the CRMs."""
        try:
            await workflow.execute_activity_method(
                CrmSyncRequester.request_crm_sync,
                RequestCrmSyncInput(
                    tenant_id=self._s.tenant_id,
                    lead_id=self._lead_id,
                    reason=f"conversation {turn_key}",
                ),
                start_to_close_timeout=policies.CRM_REQUEST_TIMEOUT,
                retry_policy=policies.CRM_REQUEST_RETRY,
                summary="request CRM sync of the lead",
            )
        except ActivityError as exc:
            # The conversation goes on; the next change requests the sync again.
            workflow.logger.warning("requesting the CRM sync failed: %s", exc.cause)

    def _append(self, entries: list[TranscriptEntry]) -> None:
        self._s.transcript.extend(entries)
        del self._s.transcript[:-TRANSCRIPT_TAIL]

    # ---- escalation and handoff ----------------------------------------------------------

    def _enter_handoff(self, reason: str, *, rule: str | None, human_replied: bool) -> None:
        if self._s.version >= 3 and self._s.handoff is not None:
            return  # a human has it already (an operator's reason is kept)
        self._s.handoff = HandoffState(
            reason=reason, since=workflow.now(), rule=rule, human_replied=human_replied
        )
        self._s.stage = stage_on_handoff(self._s.stage)
        self._s.last_reply_at = None

    async def _escalate(
        self,
        context: TurnContext,
        perception: Perception,
        decision: EscalationDecision,
        turn_key: str,
        inbound_entries: list[TranscriptEntry],
    ) -> None:
        self._enter_handoff(decision.reason, rule=decision.rule, human_replied=False)
        roles = set(decision.notify)
        specialists = [s for s in context.specialists if not roles or s.role in roles]
        alert = self._specialist_alert(decision.reason)
        notifications = [
            self._notify(specialist, via, alert, turn_key)
            for specialist in specialists
            for via in self._notification_routes(specialist)
        ]
        # Specialists are told in parallel with writing the lead's notice.
        notice_task = self._generate(
            ReplyPurpose.ESCALATION_NOTICE, perception=perception, escalation_rule=decision.rule
        )
        results = await asyncio.gather(notice_task, *notifications)
        notice = results[0]
        assert isinstance(notice, GeneratedReply)
        notified = tuple(
            f"{r.specialist}:{r.via}:{'ok' if r.ok else 'failed'}"
            for r in results[1:]
            if isinstance(r, NotifyResult)
        )
        entries = list(inbound_entries)
        text = notice.text
        if notice.guard is not None:
            entries.append(
                self._system_entry(
                    f"escalation notice blocked by the reply guard ({notice.guard.reason}), "
                    f"not sent: {notice.text}"
                )
            )
            text = self._policy().fallback_text(perception.language)
        if self._stopped_by_operator():
            entries.append(
                self._system_entry(f"closed before the escalation notice was sent: {text}")
            )
        else:
            entries.append(await self._send(text, f"{turn_key}:handoff"))
        await self._record(
            entries,
            turn_key=turn_key,
            escalation=EscalationRecord(
                rule=decision.rule, reason=decision.reason, notified=notified
            ),
        )

    def _notification_routes(self, specialist: Specialist) -> list[str]:
        routes = []
        if specialist.whatsapp:
            routes.append("whatsapp")
        if specialist.email:
            routes.append("email")
        if specialist.chatwoot_agent_id is not None and self._s.thread:
            routes.append("chatwoot")
        return routes

    def _specialist_alert(self, reason: str) -> str:
        name = self._s.contact_name or self._s.contact
        fields = ", ".join(f"{k}: {v}" for k, v in sorted(self._s.fields.items())) or "none yet"
        last = [e.text for e in self._s.transcript if e.role == Role.LEAD][-3:]
        score = self._s.score
        return (
            f"[leadflow] {name} on {self._s.channel.value} needs a human: {reason}.\n"
            f"Score: {score.total if score else '?'} ({score.quality.value if score else '?'}). "
            f"Known: {fields}.\n"
            "Last messages:\n"
            + "\n".join(f"> {text}" for text in last)
            + f"\nConversation: {self._id}"
        )

    async def _notify(
        self, specialist: Specialist, via: str, text: str, turn_key: str
    ) -> NotifyResult:
        try:
            return await workflow.execute_activity_method(
                ChannelActivities.notify_specialist,
                NotifySpecialistInput(
                    tenant_id=self._s.tenant_id,
                    conversation_id=self._id,
                    specialist=specialist,
                    via=via,
                    text=text,
                    idempotency_key=f"{self._id}:{turn_key}:notify:{specialist.name}:{via}",
                    chatwoot_conversation_id=self._s.thread,
                ),
                start_to_close_timeout=policies.NOTIFY_TIMEOUT,
                retry_policy=policies.NOTIFY_RETRY,
                summary=f"notify {specialist.name} via {via}",
            )
        except ActivityError as exc:
            # One unreachable specialist must not stop the others or the handoff itself.
            workflow.logger.warning("notifying %s via %s failed: %s", specialist.name, via, exc)
            return NotifyResult(
                specialist=specialist.name, via=via, ok=False, detail=str(exc.cause)
            )

    async def _record_silently(self) -> None:
        """In handoff or closed: the lead's messages are recorded, the AI stays silent."""
        batch = list(self._s.pending)
        self._s.pending.clear()
        if self._s.version >= 3 and not self._s.resume_checked:
            # A fresh run handed over before its first turn (an operator's handoff in the same
            # workflow task as the start) still learns its history and drops redeliveries.
            await self._context(" ".join(m.text for m in batch))
            batch = [m for m in batch if m.provider_message_id not in self._resumed_ids]
            if not batch:
                return
        self._s.lead_messages += len(batch)
        entries = [
            TranscriptEntry(
                role=Role.LEAD, text=m.text, at=m.sent_at, provider_message_id=m.provider_message_id
            )
            for m in batch
        ]
        self._append(entries)
        await self._record(entries, turn_key=f"silent:{batch[0].provider_message_id}")

    async def _record_human_messages(self) -> None:
        batch = list(self._s.human_queue)
        self._s.human_queue.clear()
        entries = [
            TranscriptEntry(
                role=Role.HUMAN,
                text=m.text,
                at=m.sent_at,
                provider_message_id=m.provider_message_id,
            )
            for m in batch
        ]
        self._append(entries)
        # A human answering the lead takes the conversation over; the AI must not talk over them.
        if self._s.handoff is None and self._s.stage != Stage.CLOSED:
            self._enter_handoff("an agent replied", rule=None, human_replied=True)
        elif self._s.handoff is not None and not self._s.handoff.human_replied:
            self._s.handoff = self._s.handoff.model_copy(update={"human_replied": True})
        await self._record(entries, turn_key=f"human:{batch[0].provider_message_id}")
        self._upsert_search_attributes()

    async def _send_operator_messages(self) -> None:
        while self._s.operator_queue:
            message = self._s.operator_queue.pop(0)
            key = f"operator:{message.request_id}"
            outcome: dict[str, Any]
            if self._s.version >= 3 and (self._s.stage == Stage.CLOSED or self._s.do_not_contact):
                # Queued before the conversation closed (or the lead opted out): not sent.
                why = (
                    "the lead asked not to be contacted"
                    if self._s.do_not_contact
                    else ("the conversation was closed")
                )
                entry = self._system_entry(f"operator's message not sent ({why}): {message.text}")
                outcome = {"sent": False, "detail": why}
            else:
                try:
                    entry = await self._send(message.text, key, role=Role.HUMAN)
                    outcome = {"sent": True, "provider_message_id": entry.provider_message_id}
                except ActivityError as exc:
                    # The operator reads this in the transcript instead of a silent loss.
                    entry = self._system_entry(
                        f"could not send the operator's message ({exc.cause or exc}): "
                        f"{message.text}"
                    )
                    outcome = {"sent": False, "detail": f"not sent: {exc.cause or exc}"}
                if self._s.handoff is not None and not self._s.handoff.human_replied:
                    self._s.handoff = self._s.handoff.model_copy(update={"human_replied": True})
            await self._record([entry], turn_key=key)
            if message.request_id in self._awaited:
                # The Update waiting for it answers now: sent (or not) and recorded.
                self._operator_outcomes[message.request_id] = self._result(**outcome)

    def _system_entry(self, text: str) -> TranscriptEntry:
        entry = TranscriptEntry(role=Role.SYSTEM, text=text, at=workflow.now())
        self._append([entry])
        return entry

    async def _try_send(self, text: str, key: str) -> TranscriptEntry:
        """A send outside a turn (holding, follow-up, outreach): a permanent failure becomes a
        system note in the transcript instead of failing the conversation."""
        try:
            return await self._send(text, key)
        except ActivityError as exc:
            workflow.logger.warning("%s could not be sent: %s", key, exc.cause or exc)
            return self._system_entry(f"{key} could not be sent ({exc.cause or exc}): {text}")

    async def _written(self, purpose: ReplyPurpose) -> str | None:
        """A message outside a turn; None (and a system note) when the reply guard blocked it."""
        reply = await self._generate(purpose)
        if reply.guard is None:
            return reply.text
        self._system_entry(
            f"{purpose.value} blocked by the reply guard ({reply.guard.reason}), "
            f"not sent: {reply.text}"
        )
        return None

    async def _send_holding_message(self) -> None:
        handoff = self._s.handoff
        if handoff is None:
            return
        # Marked first: a failure below must not re-arm the timer in a loop.
        self._s.handoff = handoff.model_copy(update={"holding_sent": True})
        await self._context("")
        try:
            text = await self._written(ReplyPurpose.HOLDING)
        except ActivityError:
            if not self._patched(PATCH_AGENT_BOUNDARY):
                raise
            text = None  # no model: the playbook's own holding text needs none
        if text is None:
            text = self._policy().fallback_text(self._language())
        key = self._event_key("holding")
        entry = await self._try_send(text, key)
        await self._record([entry], turn_key=key)
        self._details("no human answered in time: holding message sent")

    async def _send_follow_up(self) -> None:
        context = await self._context("")
        if self._s.version >= 3 and context.do_not_contact:
            self._close_reason = self._close_reason or "do not contact"
            return
        number = self._s.follow_ups_sent + 1
        # Counted first: a failure below must not re-arm the same follow-up in a loop.
        self._s.follow_ups_sent = number
        self._s.stage = stage_after_follow_up(self._s.stage)
        text = await self._written(ReplyPurpose.FOLLOW_UP)
        key = (
            self._event_key(f"follow_up-{number}")
            if self._s.version >= 3
            else f"follow_up:{self._s.turns}:{number}"
        )
        if text is None:
            entry = self._s.transcript[-1]  # the guard's note
        else:
            entry = await self._try_send(text, key)
        await self._record([entry], turn_key=key)
        self._upsert_search_attributes()
        self._details(f"follow-up {number} sent; waiting for the lead")

    async def _send_outreach(self) -> None:
        outreach = self._s.outreach
        assert outreach is not None
        self._s.stage = stage_for_outreach(self._s.stage)
        await self._context(outreach.instruction or "")  # also: do-not-contact, resume
        key = self._event_key("outreach", legacy="outreach")
        if self._s.version >= 3 and self._s.do_not_contact:
            # The API refuses outreach to a do-not-contact lead; this holds for any other starter.
            self._s.outreach = None
            entry = self._system_entry("outreach not sent: the lead asked not to be contacted")
            await self._record([entry], turn_key=key)
            self._close_reason = self._close_reason or "do not contact"
            return
        text = outreach.text or await self._written(ReplyPurpose.OUTREACH)
        if text is None:
            entry = self._s.transcript[-1]  # the guard's note
        else:
            entry = await self._try_send(text, key)
        self._s.stage = stage_after_outreach(self._s.stage)
        self._s.outreach = None
        self._s.last_reply_at = workflow.now()
        await self._record([entry], turn_key=key)
        self._upsert_search_attributes()

    async def _send_nurture(self) -> None:
        """Version ≥ 3: the one message after not-interested (`follow_up.after_not_interested:
        nurture`); no cadence follows it."""
        self._s.nurture_at = None  # cleared first: a failure below must not re-arm it
        context = await self._context("")
        if context.do_not_contact:
            self._close_reason = self._close_reason or "do not contact"
            return
        text = await self._written(ReplyPurpose.FOLLOW_UP)
        key = self._event_key("nurture")
        entry = self._s.transcript[-1] if text is None else await self._try_send(text, key)
        await self._record([entry], turn_key=key)
        self._details("the nurture message was sent; nothing more is planned")

    async def _close(self) -> None:
        self._s.stage = stage_after_close(self._s.stage)
        self._s.handoff = None
        self._s.last_reply_at = None
        await self._record((), turn_key=self._event_key("close"))
        self._upsert_search_attributes()
        self._details(f"closed: {self._close_reason}")

    def _event_key(self, kind: str, *, legacy: str | None = None) -> str:
        """The key of a record or send outside a turn. Before version 3 `kind:turns` (or
        `legacy`), which repeats when two handoffs fall between the same turns or a new run
        starts at the same turn: records and sends are idempotent by key, so the second was
        dropped. From version 3 the run and its history length make it unique and stable."""
        if self._s.version < 3:
            return legacy if legacy is not None else f"{kind}:{self._s.turns}"
        info = workflow.info()
        return f"{kind}:{self._s.turns}:{info.run_id[:8]}.{info.get_current_history_length()}"

    # ---- visibility ----------------------------------------------------------------------

    def _upsert_search_attributes(self) -> None:
        if not self._s.search_attributes:
            return
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.TENANT.value_set(self._s.tenant_id),
            sa.CHANNEL.value_set(self._s.channel.value),
            sa.STAGE.value_set(self._s.stage.value),
        ]
        if self._s.score is not None:
            updates += [
                sa.LEAD_SCORE.value_set(self._s.score.total),
                sa.LEAD_QUALITY.value_set(self._s.score.quality.value),
            ]
        if self._s.version >= 1:
            updates = [u for u in updates if self._indexed.get(u.key.name, None) != u.value]
            if not updates:
                return
            self._indexed.update({u.key.name: u.value for u in updates})
        workflow.upsert_search_attributes(updates)

    def _details(self, headline: str) -> None:
        score = self._s.score
        lines = [
            f"**{headline}**",
            f"- stage: {self._s.stage.value}",
            f"- score: {score.total} ({score.quality.value})" if score else "- score: not yet",
            f"- turns: {self._s.turns}, pending messages: {len(self._s.pending)}",
        ]
        if self._s.handoff is not None:
            lines.append(f"- with a human since {self._s.handoff.since:%Y-%m-%d %H:%M} UTC")
        workflow.set_current_details("\n".join(lines))


def _refuse(reason: str) -> NoReturn:
    """A validator's refusal: the Update is rejected (no history event) with this reason."""
    raise ApplicationError(reason, type=COMMAND_REFUSED, non_retryable=True)
