"""Contracts of ConversationWorkflow: its input/state, signals, queries and turn activities."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from models import workflow_ids
from models.agent import DraftTurnInput, FieldValue, KnowledgeHit, LeadScore, TurnDraft
from models.common import Channel, Intent, Stage
from models.messages import Frozen, InboundMessage, OutboundMessage, SendResult, TranscriptEntry
from models.playbook import Playbook
from models.policy import ConversationPolicy, PlaybookRef, policy_of
from models.tenant import Specialist

# The behaviour a new conversation run is started with, kept in its input across continue-as-new.
# Asking Temporal `workflow.patched()` costs every new run a marker and a search-attribute upsert,
# so a run started at a known version takes the branches of that version without asking.
#   0: runs started before versions existed: they ask `workflow.patched()` as before.
#   1: every patch up to "agent-boundary" applies; search attributes are upserted only when a
#      value changes (the starter sets tenant, channel and the first stage).
#   2: a turn loads its context inside its model activity (`prepare_turn`) and records a plain
#      reply inside its send (`send_and_record`): no local activity on a plain turn's path.
#   3: operator commands are Updates (handoff, release, message, close); an operator's handoff or
#      close stops a running turn before it sends; an opt-out closes and marks the lead
#      do-not-contact; not-interested follows the playbook (`follow_up.after_not_interested`)
#      instead of the cadence; a fresh run resumes from what the database holds of the lead
#      (`TurnContextInput.resume`), continuing its turn numbers and its seen message ids.
CONVERSATION_VERSION = 3

TRANSCRIPT_TAIL = 40  # entries the workflow keeps for context; the database keeps them all
SEEN_IDS_KEPT = 500  # provider message ids remembered to drop redeliveries


WORKFLOW_NAME = "ConversationWorkflow"
SIGNAL_INBOUND = "inbound"
SIGNAL_OPERATOR_MESSAGE = "operator_message"
SIGNAL_HANDOFF = "handoff"
SIGNAL_RELEASE = "release"
SIGNAL_CLOSE = "close"
QUERY_STATE = "state"
# Operator commands as Updates (version 3): answered with a CommandResult, or refused by their
# validator with an ApplicationError of type COMMAND_REFUSED whose message says why. The
# signals above stay for running histories and old senders (the Chatwoot release webhook).
UPDATE_HANDOFF = "operator_handoff"
UPDATE_RELEASE = "operator_release"
UPDATE_OPERATOR_MESSAGE = "operator_message_sent"
UPDATE_CLOSE = "operator_close"
COMMAND_REFUSED = "CommandRefused"
COMMAND_RESULTS_KEPT = 100  # results of recent commands, kept across continue-as-new


def conversation_workflow_id(tenant_id: str, channel: Channel | str, contact: str) -> str:
    """The workflow id of this contact's conversation: `conv:{tenant}:{channel}:{keyed hash}`,
    or the id of its running conversation started before hashed ids (models/workflow_ids.py).
    Workflow code reads its id from `workflow.info()` instead (no key in the worker)."""
    return workflow_ids.conversation_id(tenant_id, channel, contact)


def lead_id_for(tenant_id: str, channel: Channel | str, contact: str) -> str:
    """Deterministic, so the workflow knows its lead's id without asking the database."""
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"leadflow:{tenant_id}:{Channel(channel).value}:{contact}")
    )


class OutreachRequest(Frozen):
    text: str | None = Field(default=None, description="Send exactly this; else the LLM writes it.")
    instruction: str | None = None


class HandoffState(Frozen):
    reason: str
    since: datetime
    rule: str | None = None
    human_replied: bool = False
    holding_sent: bool = False


class OperatorMessage(Frozen):
    text: str
    author: str = "operator"
    request_id: str = Field(description="Idempotency key of the API call.")


class CommandResult(Frozen):
    """What an operator command (an Update) left the conversation in."""

    stage: Stage
    handoff: HandoffState | None = None
    sent: bool | None = Field(
        default=None,
        description="Operator message only: True once sent and recorded, False when it could "
        "not be sent (the detail says why; the transcript holds a note).",
    )
    provider_message_id: str | None = None
    detail: str = ""


class ConversationInput(BaseModel):
    """Start input, and the state carried across continue-as-new."""

    tenant_id: str
    channel: Channel
    contact: str
    contact_name: str | None = None
    thread: str | None = None
    stage: Stage = Stage.AWAITING_RESPONSE
    score: LeadScore | None = None
    fields: dict[str, FieldValue] = Field(default_factory=dict)
    transcript: list[TranscriptEntry] = Field(default_factory=list)
    pending: list[InboundMessage] = Field(default_factory=list)
    seen_message_ids: list[str] = Field(default_factory=list)
    intents_seen: list[Intent] = Field(default_factory=list)
    operator_queue: list[OperatorMessage] = Field(default_factory=list)
    human_queue: list[InboundMessage] = Field(default_factory=list)
    turns: int = 0
    lead_messages: int = 0
    follow_ups_sent: int = 0
    last_reply_at: datetime | None = None
    handoff: HandoffState | None = None
    outreach: OutreachRequest | None = None
    campaign_id: str | None = Field(
        default=None,
        description="The campaign that started this conversation (an outreach of it): its "
        "e-mails carry List-Unsubscribe, its numbers count this conversation.",
    )
    subject: str | None = Field(
        default=None, description="E-mail: the subject of the outreach; replies are 'Re: …'."
    )
    language: str | None = Field(
        default=None, description="The language the lead wrote in, as last perceived."
    )
    policy: ConversationPolicy | None = Field(
        default=None,
        description="The playbook's policy the workflow decides with (refreshed when the "
        "playbook's hash changes); carried across continue-as-new so timers keep firing.",
    )
    debounce_seconds: float = 2.0
    history_limit: int = 2000
    search_attributes: bool = Field(
        default=True,
        description="Upsert leadflow's search attributes (off where the server lacks them, "
        "e.g. the time-skipping test server).",
    )
    do_not_contact: bool = Field(
        default=False,
        description="Version ≥ 3: the lead opted out (or the database says so): messages are "
        "recorded, never answered.",
    )
    resume_checked: bool = Field(
        default=False,
        description="Version ≥ 3: this conversation's first context load asked the database for "
        "the lead's history; carried across continue-as-new so only a fresh run asks.",
    )
    nurture_at: datetime | None = Field(
        default=None,
        description="Version ≥ 3: when the one nurture message after not-interested is due.",
    )
    tags: list[str] = Field(
        default_factory=list,
        description="The lead's tags as last recorded (workflows/tags.py): a record sends them "
        "only when they changed; sticky tags (complaint, test-drive, ...) stay from here.",
    )
    sentiment: float | None = Field(
        default=None, description="The sentiment of the last perception (for the tags)."
    )
    command_results: dict[str, CommandResult] = Field(
        default_factory=dict,
        description="Version ≥ 3: results of recent operator commands by update id, so a retry "
        "after continue-as-new (where Temporal's own update-id dedup ends) acts once.",
    )
    version: int = Field(
        default=0,
        description="The workflow behaviour this run was started with (CONVERSATION_VERSION); "
        "0 for runs started before versions existed. Set by `ConversationInput.new`.",
    )

    @classmethod
    def new(cls, **fields: Any) -> ConversationInput:
        """The input of a conversation started now: at the current CONVERSATION_VERSION."""
        return cls(**fields, version=CONVERSATION_VERSION)


class HandoffRequest(Frozen):
    reason: str = "operator took over"
    by: str = "operator"


class ReleaseRequest(Frozen):
    by: str = "operator"


class CloseRequest(Frozen):
    reason: str


class ConversationSnapshot(Frozen):
    """What the `state` query returns: the Temporal UI and CLI can show it."""

    workflow_id: str
    tenant_id: str
    channel: Channel
    contact: str
    stage: Stage
    score: LeadScore | None
    fields: dict[str, FieldValue]
    transcript: tuple[TranscriptEntry, ...]
    turns: int
    pending_messages: int
    handoff: HandoffState | None


class TurnContextInput(Frozen):
    tenant_id: str
    lead_id: str
    query: str = Field(description="Text of the new messages, for knowledge search.")
    policy_hash: str | None = Field(
        default=None, description="The policy the workflow holds: not sent back if unchanged."
    )
    resume: bool = Field(
        default=False,
        description="The first turn of a fresh run (not continued-as-new): send back what the "
        "database knows of the lead's earlier runs (`TurnContext.resume`).",
    )


class ResumeState(Frozen):
    """What the database holds of a lead whose conversation starts a new run (after a close, a
    failed run, a lost workflow): the run continues from it instead of starting from zero."""

    stage: Stage = Field(description="The stage the last run left the conversation in.")
    score: LeadScore | None = None
    fields: dict[str, FieldValue] = Field(default_factory=dict)
    transcript: tuple[TranscriptEntry, ...] = Field(
        default=(), description=f"The last {TRANSCRIPT_TAIL} entries, oldest first."
    )
    seen_message_ids: tuple[str, ...] = Field(
        default=(), description="Provider ids of the lead's recent messages (redeliveries)."
    )
    turns: int = 0
    contact_name: str | None = None
    do_not_contact: bool = False
    tags: tuple[str, ...] = Field(default=(), description="The lead's tags as recorded.")


class TurnContext(Frozen):
    playbook: PlaybookRef
    policy: ConversationPolicy | None = Field(
        default=None, description="Only when the playbook changed since `policy_hash`."
    )
    knowledge: tuple[KnowledgeHit, ...] = Field(
        default=(), description="Hits for the new messages: ids and titles, no text."
    )
    specialists: tuple[Specialist, ...] = ()
    timezone: str = "UTC"
    channels: tuple[str, ...] = Field(default=(), description="Channels configured for the tenant.")
    do_not_contact: bool = False
    resume: ResumeState | None = Field(
        default=None,
        description="Only when asked (`TurnContextInput.resume`) and the lead has history.",
    )
    crm_connected: bool = Field(
        default=True,
        description="The tenant connected a CRM: a changed lead requests its CrmSyncWorkflow. "
        "Without one the turn's record step is the whole sync (the built-in lead table).",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_legacy_shape(cls, data: Any) -> Any:
        # Histories recorded before the agent boundary carry the whole playbook here.
        if isinstance(data, dict) and isinstance(data.get("playbook"), dict):
            raw = data["playbook"]
            if "tenant_id" not in raw:
                playbook = Playbook.model_validate(raw)
                data = dict(data)
                data["playbook"] = PlaybookRef(tenant_id="", hash=playbook.content_hash)
                data["policy"] = policy_of(playbook)
        return data


class EscalationRecord(Frozen):
    rule: str
    reason: str
    notified: tuple[str, ...] = ()


class RecordTurnInput(Frozen):
    """Everything one turn (or an event in handoff) changes, written in one transaction."""

    conversation_id: str
    tenant_id: str
    channel: Channel
    contact: str
    contact_name: str | None = None
    thread: str | None = None
    turn_key: str
    entries: tuple[TranscriptEntry, ...] = ()
    stage: Stage
    lead_id: str
    score: LeadScore | None = None
    fields: dict[str, FieldValue] = Field(default_factory=dict)
    escalation: EscalationRecord | None = None
    turns: int = 0
    do_not_contact: bool | None = Field(
        default=None,
        description="True: the lead opted out (stored on the lead, synced to the CRMs); "
        "False: an operator lifted it; None: unchanged.",
    )
    tags: tuple[str, ...] | None = Field(
        default=None,
        description="The lead's tags (workflows/tags.py) when they changed since the last "
        "record; None: unchanged (most records: the history stays small).",
    )


class PrepareTurnInput(Frozen):
    """Load the turn's context, then perceive and draft (version ≥ 2: one activity)."""

    context: TurnContextInput
    draft: DraftTurnInput = Field(
        description="Its playbook reference and knowledge ids are replaced by the context's."
    )


class PreparedTurn(Frozen):
    context: TurnContext
    draft: TurnDraft | None = Field(
        default=None, description="None when the lead is do-not-contact: nothing was perceived."
    )


class SendAndRecordInput(Frozen):
    """Send the reply, then record the turn with it (version ≥ 2: one activity)."""

    message: OutboundMessage
    record: RecordTurnInput = Field(
        description="The turn without the reply: the reply's entry (with the provider's message "
        "id) is appended once it is sent."
    )
    knowledge_ids: tuple[str, ...] = ()
    at: datetime = Field(description="When the workflow decided to send (the reply's entry time).")


class SendAndRecordResult(Frozen):
    sent: SendResult
    lead_changed: bool
    recorded: bool = Field(
        default=True,
        description="False when the record failed after the send: the workflow records the "
        "turn itself.",
    )


class NotifySpecialistInput(Frozen):
    tenant_id: str
    conversation_id: str
    specialist: Specialist
    via: str = Field(description="whatsapp | email | chatwoot")
    text: str
    idempotency_key: str
    chatwoot_conversation_id: str | None = None


class NotifyResult(Frozen):
    specialist: str
    via: str
    ok: bool
    detail: str = ""
