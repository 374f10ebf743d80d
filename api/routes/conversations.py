"""Conversations: list and inspect them, start outreach, hand over to a human and back, and
send operator messages. State comes from the database (it outlives the workflow runs); every
change goes to the conversation's workflow as a signal."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field, field_validator
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.conversations_gateway import signal_conversation
from api.deps import CurrentTenant, Session, State, Temporal
from api.errors import ApiError
from models import search_attributes, task_queues
from models.common import Channel, LeadQuality, Stage
from models.conversation import (
    SIGNAL_HANDOFF,
    SIGNAL_OPERATOR_MESSAGE,
    SIGNAL_RELEASE,
    WORKFLOW_NAME,
    ConversationInput,
    HandoffRequest,
    OperatorMessage,
    OutreachRequest,
    ReleaseRequest,
    conversation_workflow_id,
)
from models.repo import conversations as repo
from models.repo import usage as usage_repo
from models.tables import Conversation
from models.usage import UsageTotals

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


class ConversationSummary(BaseModel):
    id: str
    channel: str
    contact: str
    stage: str
    score: int
    quality: str
    turns: int
    last_message_at: datetime | None
    updated_at: datetime


class TranscriptLine(BaseModel):
    role: str
    text: str
    at: datetime
    knowledge_ids: list[str] = []


class ScoreView(BaseModel):
    total: int
    quality: str
    components: list[dict[str, Any]]


class EscalationView(BaseModel):
    rule: str
    reason: str
    notified: list[str]
    created_at: datetime
    resolved_at: datetime | None


class AgentCallView(BaseModel):
    """One model call of the conversation (the usage ledger): what it cost and, for an
    analysis, what it perceived; `leadflow eval` reads these."""

    step: str
    purpose: str | None
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    latency_ms: int
    outcome: str
    error: str | None
    output: dict[str, Any] | None
    at: datetime


class ConversationDetail(ConversationSummary):
    lead_id: str | None
    score_detail: ScoreView | None
    transcript: list[TranscriptLine]
    escalations: list[EscalationView]
    usage: UsageTotals = Field(description="Model calls, tokens and cost of this conversation.")
    agent_calls: list[AgentCallView]


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]
    total: int


class StartConversation(BaseModel):
    channel: Channel
    contact: str = Field(min_length=1, max_length=320, description="Phone/chat id/e-mail/PSID.")
    contact_name: str | None = None
    text: str | None = Field(default=None, max_length=4096, description="Exact first message.")
    instruction: str | None = Field(
        default=None, max_length=2000, description="Brief for the LLM when `text` is not given."
    )
    thread: str | None = Field(
        default=None, description="Chatwoot conversation id / e-mail subject."
    )

    @field_validator("contact")
    @classmethod
    def _strip(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("contact must not be blank")
        return value.strip()


class OperatorText(BaseModel):
    text: str = Field(min_length=1, max_length=4096)
    author: str = Field(default="operator", max_length=100)


class HandoffBody(BaseModel):
    reason: str = Field(default="operator took over", max_length=500)


class Accepted(BaseModel):
    id: str
    status: str


def _summary(conv: Conversation) -> ConversationSummary:
    return ConversationSummary(
        id=conv.id,
        channel=conv.channel,
        contact=conv.contact,
        stage=conv.stage,
        score=conv.score,
        quality=conv.quality,
        turns=conv.turns,
        last_message_at=conv.last_message_at,
        updated_at=conv.updated_at,
    )


@router.get("")
async def list_conversations(
    tenant: CurrentTenant,
    session: Session,
    stage: Annotated[Stage | None, Query()] = None,
    quality: Annotated[LeadQuality | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ConversationList:
    rows, total = await repo.list_conversations(
        session,
        tenant_id=tenant.id,
        stage=stage.value if stage else None,
        quality=quality.value if quality else None,
        limit=limit,
        offset=offset,
    )
    return ConversationList(conversations=[_summary(r) for r in rows], total=total)


async def _owned(session: Any, tenant_id: str, conversation_id: str) -> Conversation:
    conv = await repo.get_conversation(
        session, tenant_id=tenant_id, conversation_id=conversation_id
    )
    if conv is None:
        raise ApiError(404, "conversation not found", conversation_id)
    return conv


@router.get("/{conversation_id}")
async def get_conversation(
    conversation_id: str, tenant: CurrentTenant, session: Session
) -> ConversationDetail:
    conv = await _owned(session, tenant.id, conversation_id)
    messages = await repo.transcript(session, conversation_id=conv.id)
    score = await repo.latest_score(session, conversation_id=conv.id)
    escalations = await repo.escalations(session, conversation_id=conv.id)
    calls = await usage_repo.calls_for_conversation(session, conversation_id=conv.id)
    return ConversationDetail(
        **_summary(conv).model_dump(),
        lead_id=conv.lead_id,
        score_detail=ScoreView(
            total=score.total, quality=score.quality, components=score.components
        )
        if score
        else None,
        transcript=[
            TranscriptLine(role=m.role, text=m.text, at=m.at, knowledge_ids=m.knowledge_ids)
            for m in messages
        ],
        escalations=[
            EscalationView(
                rule=e.rule,
                reason=e.reason,
                notified=e.notified,
                created_at=e.created_at,
                resolved_at=e.resolved_at,
            )
            for e in escalations
        ],
        usage=await usage_repo.conversation_usage(session, conversation_id=conv.id),
        agent_calls=[AgentCallView.model_validate(c.model_dump()) for c in calls],
    )


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def start_conversation(
    body: StartConversation, tenant: CurrentTenant, state: State, client: Temporal
) -> Accepted:
    """Outreach: start a conversation with a first message to a contact."""
    workflow_id = conversation_workflow_id(tenant.id, body.channel, body.contact)
    try:
        await client.start_workflow(
            WORKFLOW_NAME,
            ConversationInput.new(
                tenant_id=tenant.id,
                channel=body.channel,
                contact=body.contact,
                contact_name=body.contact_name,
                thread=body.thread,
                outreach=OutreachRequest(text=body.text, instruction=body.instruction),
                debounce_seconds=state.settings.debounce_seconds,
                history_limit=state.settings.conversation_history_limit,
            ),
            id=workflow_id,
            task_queue=task_queues.CONVERSATIONS,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attributes.TENANT, tenant.id),
                    SearchAttributePair(search_attributes.CHANNEL, body.channel.value),
                    SearchAttributePair(search_attributes.STAGE, Stage.INITIAL_OUTREACH.value),
                ]
            ),
        )
    except WorkflowAlreadyStartedError as exc:
        raise ApiError(
            409,
            "conversation already running",
            f"{workflow_id} is active; send an operator message instead",
        ) from exc
    return Accepted(id=workflow_id, status="started")


async def _signal(
    client: Any, tenant_id: str, conversation_id: str, name: str, arg: object
) -> None:
    # The workflow id names its tenant, so ownership is known before the first turn is recorded.
    if not conversation_id.startswith(f"conv:{tenant_id}:"):
        raise ApiError(404, "conversation not found", conversation_id)
    if not await signal_conversation(client, conversation_id, name, arg):
        raise ApiError(409, "conversation is not running", conversation_id)


@router.post("/{conversation_id}/handoff", status_code=status.HTTP_202_ACCEPTED)
async def handoff(
    conversation_id: str,
    tenant: CurrentTenant,
    client: Temporal,
    body: HandoffBody | None = None,
) -> Accepted:
    """A human takes over: the AI stays silent until released."""
    reason = body.reason if body else "operator took over"
    await _signal(client, tenant.id, conversation_id, SIGNAL_HANDOFF, HandoffRequest(reason=reason))
    return Accepted(id=conversation_id, status="handoff requested")


@router.post("/{conversation_id}/release", status_code=status.HTTP_202_ACCEPTED)
async def release(conversation_id: str, tenant: CurrentTenant, client: Temporal) -> Accepted:
    await _signal(client, tenant.id, conversation_id, SIGNAL_RELEASE, ReleaseRequest())
    return Accepted(id=conversation_id, status="release requested")


@router.post("/{conversation_id}/messages", status_code=status.HTTP_202_ACCEPTED)
async def operator_message(
    conversation_id: str,
    body: OperatorText,
    tenant: CurrentTenant,
    client: Temporal,
) -> Accepted:
    """Send an operator's message to the lead through the conversation's channel."""
    message = OperatorMessage(text=body.text, author=body.author, request_id=uuid.uuid4().hex)
    await _signal(client, tenant.id, conversation_id, SIGNAL_OPERATOR_MESSAGE, message)
    return Accepted(id=conversation_id, status="queued")
