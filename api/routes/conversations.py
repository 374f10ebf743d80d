"""Conversations: list and inspect them, start outreach, hand over to a human and back, send
operator messages and close them. State comes from the database (it outlives the workflow runs);
every change goes to the conversation's workflow as an Update, whose answer (the resulting stage,
or the reason it was refused) is the response. An `Idempotency-Key` header (or `request_id` in
the body) names the Update, so a retried request acts once and answers the same."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator, model_validator
from temporalio.service import RPCError

from api.conversations_gateway import (
    CommandPending,
    CommandRefused,
    ConversationNotRunning,
    command_conversation,
    command_update_id,
)
from api.deps import (
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_PATTERN,
    CurrentTenant,
    IdempotencyKey,
    Session,
    State,
    Temporal,
)
from api.errors import ApiError
from api.responses import errors
from models import inbox_view
from models.common import Channel, LeadQuality, Stage
from models.conversation import (
    UPDATE_CLOSE,
    UPDATE_HANDOFF,
    UPDATE_OPERATOR_MESSAGE,
    UPDATE_RELEASE,
    CloseRequest,
    CommandResult,
    HandoffRequest,
    OperatorMessage,
    ReleaseRequest,
)
from models.identity import normalise_contact
from models.inbox_view import ConversationSummary, ConversationView
from models.outreach import ConversationRunning, OutreachRefused, start_outreach
from models.repo import conversations as repo
from models.repo import deployment_keys
from models.repo import inbox_view as inbox_repo
from models.repo import usage as usage_repo
from models.repo.inbox_view import InboxFilter
from models.usage import UsageTotals

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


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

    @model_validator(mode="after")
    def _normalised(self) -> StartConversation:
        # The contact as the channel's webhooks name it, so the outreach and the lead's answers
        # are one conversation (models/identity.py); a bad id is a ValueError, so a 422.
        # normalise_contact also refuses a channel form over the limit (a bare phone gains
        # `@c.us`), which once reached the workflow id and was a 500 (schemathesis).
        self.contact = normalise_contact(self.channel, self.contact)
        return self


class CommandBody(BaseModel):
    request_id: str | None = Field(
        default=None,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="The idempotency key, when the client cannot send the header.",
    )


class OperatorText(CommandBody):
    text: str = Field(min_length=1, max_length=4096)
    author: str = Field(default="operator", max_length=100)


class HandoffBody(CommandBody):
    reason: str = Field(default="operator took over", min_length=1, max_length=500)


class CloseBody(CommandBody):
    reason: str = Field(default="closed by an operator", min_length=1, max_length=500)


class HandoffView(BaseModel):
    reason: str
    since: datetime
    rule: str | None
    human_replied: bool


class CommandAnswer(BaseModel):
    """What a command left the conversation in (200), or that it is still under way (202)."""

    id: str = Field(description="The conversation.")
    command: Literal["handoff", "release", "message", "close"]
    request_id: str = Field(description="The command's id: retry with it to get its outcome.")
    status: Literal["done", "pending"] = "done"
    stage: Stage | None = None
    handoff: HandoffView | None = None
    sent: bool | None = Field(
        default=None, description="Messages only: sent and recorded, or not (see detail)."
    )
    provider_message_id: str | None = None
    detail: str = ""


class Accepted(BaseModel):
    id: str
    status: str


COMMAND_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": CommandAnswer, "description": "Done: the resulting stage."},
    202: {"model": CommandAnswer, "description": "Accepted, not finished within the wait."},
    404: {"description": "Unknown conversation, or no running workflow behind it."},
    409: {"description": "Refused by the conversation: the detail says why; nothing was done."},
    422: {"description": "Bad input (text, reason, Idempotency-Key / request_id)."},
    503: {"description": "Temporal unavailable, or the command was not taken in time; retry."},
}


@router.get("")
async def list_conversations(
    tenant: CurrentTenant,
    session: Session,
    stage: Annotated[Stage | None, Query()] = None,
    quality: Annotated[LeadQuality | None, Query()] = None,
    channel: Annotated[Channel | None, Query()] = None,
    needs_human: Annotated[
        bool | None,
        Query(description="true: handed to a human (human_handoff); false: the others."),
    ] = None,
    campaign_id: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="Conversations this campaign wrote to."),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=inbox_repo.SEARCH_MAX_CHARS,
            description="Search (case-insensitive): the lead's name, phone or e-mail, the "
            "contact id, or the text of any message.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    # bounded: SQLite and PostgreSQL take a signed 64-bit OFFSET (a larger one was a 500)
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ConversationList:
    """The inbox: the tenant's conversations, newest activity first, with their lead's name,
    last message and campaign; every filter narrows it."""
    where = InboxFilter(
        stage=stage.value if stage else None,
        quality=quality.value if quality else None,
        channel=channel.value if channel else None,
        needs_human=needs_human,
        campaign_id=campaign_id,
        search=q.strip() if q and q.strip() else None,
    )
    rows, total = await inbox_view.inbox(
        session, tenant_id=tenant.id, where=where, limit=limit, offset=offset
    )
    return ConversationList(conversations=rows, total=total)


@router.get("/{conversation_id}/view", responses=errors(404))
async def view_conversation(
    conversation_id: str,
    tenant: CurrentTenant,
    session: Session,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=inbox_view.MAX_TRANSCRIPT,
            description="Transcript lines (the latest).",
        ),
    ] = inbox_view.DEFAULT_TRANSCRIPT,
) -> ConversationView:
    """The conversation's page: the transcript with who wrote each line and how each sent line
    was delivered, the lead, the score with its components, escalations and who was told,
    the lead's state in each CRM and what the conversation's model calls cost."""
    view = await inbox_view.conversation_view(
        session, tenant_id=tenant.id, conversation_id=conversation_id, limit=limit
    )
    if view is None:
        raise ApiError(404, "conversation not found", conversation_id)
    return view


@router.get("/{conversation_id}", responses=errors(404))
async def get_conversation(
    conversation_id: str, tenant: CurrentTenant, session: Session
) -> ConversationDetail:
    summary = await inbox_view.conversation_summary(
        session, tenant_id=tenant.id, conversation_id=conversation_id
    )
    if summary is None:
        raise ApiError(404, "conversation not found", conversation_id)
    conv = summary
    messages = await repo.transcript(session, conversation_id=conv.id)
    score = await repo.latest_score(session, conversation_id=conv.id)
    escalations = await repo.escalations(session, conversation_id=conv.id)
    calls = await usage_repo.calls_for_conversation(session, conversation_id=conv.id)
    return ConversationDetail(
        **summary.model_dump(),
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


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(
        409, _409="The contact opted out (do not contact), or their conversation is running."
    ),
)
async def start_conversation(
    body: StartConversation,
    tenant: CurrentTenant,
    state: State,
    client: Temporal,
    session: Session,
) -> Accepted:
    """Outreach: start a conversation with a first message to a contact."""
    await deployment_keys.ensure_loaded(state.db)  # an API started while its database was down
    # A lead who opted out (under this id or the same phone/e-mail elsewhere) is refused before
    # anything starts; the workflow also refuses to send an outreach to one, as a backstop.
    try:
        workflow_id = await start_outreach(
            client,
            session,
            state.settings,
            tenant_id=tenant.id,
            channel=body.channel,
            contact=body.contact,
            contact_name=body.contact_name,
            thread=body.thread,
            text=body.text,
            instruction=body.instruction,
        )
    except OutreachRefused as exc:
        raise ApiError(409, "do not contact", exc.reason) from exc
    except ConversationRunning as exc:
        raise ApiError(
            409,
            "conversation already running",
            f"{exc.workflow_id} is active; send an operator message instead",
        ) from exc
    return Accepted(id=workflow_id, status="started")


def _update_id(command: str, header: str | None, body: CommandBody | None) -> str:
    key = header.strip() if header else None
    given = body.request_id.strip() if body and body.request_id else None
    if key and given and key != given:
        raise ApiError(422, "conflicting idempotency keys", "Idempotency-Key and request_id differ")
    return command_update_id(command, key or given)


async def _command(
    client: Any,
    tenant_id: str,
    conversation_id: str,
    command: Literal["handoff", "release", "message", "close"],
    update: str,
    arg: object,
    update_id: str,
) -> CommandAnswer | JSONResponse:
    # The workflow id names its tenant, so ownership is known before the first turn is recorded.
    if not conversation_id.startswith(f"conv:{tenant_id}:"):
        raise ApiError(404, "conversation not found", conversation_id)
    answer = CommandAnswer(id=conversation_id, command=command, request_id=update_id)
    try:
        result = await command_conversation(
            client, conversation_id, update, arg, update_id=update_id
        )
    except ConversationNotRunning as exc:
        raise ApiError(
            404,
            "conversation is not running",
            f"{conversation_id} has no running workflow (closed, or never started); "
            "a message from the lead starts a new run",
        ) from exc
    except CommandRefused as exc:
        raise ApiError(409, f"{command} refused", exc.reason) from exc
    except CommandPending as exc:
        if not exc.accepted:
            raise ApiError(
                503,
                "the conversation did not take the command in time",
                f"retry with Idempotency-Key {update_id.partition(':')[2]!r}; it acts once",
            ) from exc
        pending = answer.model_copy(
            update={
                "status": "pending",
                "detail": "accepted, still under way; retry with the "
                "same Idempotency-Key for the outcome",
            }
        )
        return JSONResponse(status_code=202, content=pending.model_dump(mode="json"))
    except RPCError as exc:
        raise ApiError(503, "Temporal is unavailable", exc.message) from exc
    return _answered(answer, result)


def _answered(answer: CommandAnswer, result: CommandResult) -> CommandAnswer:
    handoff = result.handoff
    return answer.model_copy(
        update={
            "stage": result.stage,
            "handoff": HandoffView(
                reason=handoff.reason,
                since=handoff.since,
                rule=handoff.rule,
                human_replied=handoff.human_replied,
            )
            if handoff
            else None,
            "sent": result.sent,
            "provider_message_id": result.provider_message_id,
            "detail": result.detail,
        }
    )


@router.post(
    "/{conversation_id}/handoff", response_model=CommandAnswer, responses=COMMAND_RESPONSES
)
async def handoff(
    conversation_id: str,
    tenant: CurrentTenant,
    client: Temporal,
    idempotency_key: IdempotencyKey = None,
    body: HandoffBody | None = None,
) -> CommandAnswer | JSONResponse:
    """A human takes over: the AI stays silent (a running turn stops before it sends) until
    released. 409 when the conversation is closed or already with a human."""
    update_id = _update_id("handoff", idempotency_key, body)
    request = HandoffRequest(reason=body.reason if body else "operator took over")
    return await _command(
        client, tenant.id, conversation_id, "handoff", UPDATE_HANDOFF, request, update_id
    )


@router.post(
    "/{conversation_id}/release", response_model=CommandAnswer, responses=COMMAND_RESPONSES
)
async def release(
    conversation_id: str,
    tenant: CurrentTenant,
    client: Temporal,
    idempotency_key: IdempotencyKey = None,
    body: CommandBody | None = None,
) -> CommandAnswer | JSONResponse:
    """The AI answers again. 409 when nothing is handed to a human."""
    update_id = _update_id("release", idempotency_key, body)
    return await _command(
        client, tenant.id, conversation_id, "release", UPDATE_RELEASE, ReleaseRequest(), update_id
    )


@router.post(
    "/{conversation_id}/messages", response_model=CommandAnswer, responses=COMMAND_RESPONSES
)
async def operator_message(
    conversation_id: str,
    body: OperatorText,
    tenant: CurrentTenant,
    client: Temporal,
    idempotency_key: IdempotencyKey = None,
) -> CommandAnswer | JSONResponse:
    """Send an operator's message to the lead through the conversation's channel. Answered once
    it was sent and recorded (`sent: true`), or not sent (`sent: false`, the detail says why:
    the channel refused it); 409 when the conversation is closed or the lead opted out."""
    update_id = _update_id("message", idempotency_key, body)
    message = OperatorMessage(text=body.text, author=body.author, request_id=update_id)
    return await _command(
        client, tenant.id, conversation_id, "message", UPDATE_OPERATOR_MESSAGE, message, update_id
    )


@router.post("/{conversation_id}/close", response_model=CommandAnswer, responses=COMMAND_RESPONSES)
async def close(
    conversation_id: str,
    tenant: CurrentTenant,
    client: Temporal,
    idempotency_key: IdempotencyKey = None,
    body: CloseBody | None = None,
) -> CommandAnswer | JSONResponse:
    """End the conversation: nothing more is sent (a running turn stops before it sends); a
    later message from the lead starts a new run that resumes from the database. 409 when it is
    already closed."""
    update_id = _update_id("close", idempotency_key, body)
    request = CloseRequest(reason=body.reason if body else "closed by an operator")
    return await _command(
        client, tenant.id, conversation_id, "close", UPDATE_CLOSE, request, update_id
    )
