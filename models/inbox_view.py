"""The operator console's inbox (issue 14): what a conversation looks like in the list and on its
page, built from what the workflow and the activities recorded (models/repo/inbox_view.py).

The rules live here, once: who wrote a transcript line (`author_of`), how a sent line finds the
outbox row of its send (`deliveries`), what state a lead is in per CRM (`crm_state`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common import Role, Stage
from models.repo import inbox_view as repo
from models.repo.inbox_view import CrmRow, InboxFilter, MessageRow, OutboxRow, SummaryRow

Author = Literal["lead", "ai", "person", "system"]
Delivery = Literal["pending", "sent", "stored", "failed"]

_AUTHORS: dict[str, Author] = {
    Role.LEAD.value: "lead",
    Role.AI.value: "ai",
    # An operator's message through the API, or an agent answering in Chatwoot / on the phone.
    Role.HUMAN.value: "person",
    Role.SYSTEM.value: "system",
}
_SENT_BY_US = frozenset({Role.AI.value, Role.HUMAN.value})
_DELIVERIES: frozenset[str] = frozenset({"pending", "sent", "stored", "failed"})

DEFAULT_TRANSCRIPT = 500
MAX_TRANSCRIPT = 2000


def author_of(role: str) -> Author:
    """Who wrote a transcript line, in the console's words (messages.role: lead, ai, human,
    system)."""
    return _AUTHORS.get(role, "system")


class LastMessage(BaseModel):
    role: Author = Field(description="Who wrote it: lead, ai, person or system.")
    text: str = Field(description=f"Its first {repo.LAST_MESSAGE_CHARS} characters.")
    at: datetime


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
    lead_id: str | None = None
    lead_name: str | None = None
    needs_human: bool = Field(default=False, description="Handed to a human (human_handoff).")
    last_message: LastMessage | None = None
    campaign_id: str | None = Field(
        default=None, description="The latest campaign that wrote to this conversation."
    )


def summary_of(row: SummaryRow) -> ConversationSummary:
    last = (
        LastMessage(role=author_of(row.last_role), text=row.last_text or "", at=row.last_at)
        if row.last_role is not None and row.last_at is not None
        else None
    )
    return ConversationSummary(
        id=row.id,
        channel=row.channel,
        contact=row.contact,
        stage=row.stage,
        score=row.score,
        quality=row.quality,
        turns=row.turns,
        last_message_at=row.last_message_at,
        updated_at=row.updated_at,
        lead_id=row.lead_id,
        lead_name=row.lead_name,
        needs_human=row.stage == Stage.HUMAN_HANDOFF.value,
        last_message=last,
        campaign_id=row.campaign_id,
    )


async def inbox(
    session: AsyncSession, *, tenant_id: str, where: InboxFilter, limit: int, offset: int
) -> tuple[list[ConversationSummary], int]:
    """The tenant's conversations for the inbox, newest activity first, and how many match."""
    rows, total = await repo.list_inbox(
        session, tenant_id=tenant_id, where=where, limit=limit, offset=offset
    )
    return [summary_of(row) for row in rows], total


LEAD_CONVERSATIONS = 50
"""How many of a lead's conversations its page lists (the latest): a lead written to by many
campaigns or on many channels must not make `GET /api/v1/leads/{id}` unbounded."""


async def conversations_of_lead(
    session: AsyncSession, *, tenant_id: str, lead_id: str, limit: int = LEAD_CONVERSATIONS
) -> tuple[list[ConversationSummary], int]:
    """The lead's latest `limit` conversations as the inbox lists them (same row, same order:
    newest activity first) and how many it has; only the tenant's rows."""
    return await inbox(
        session, tenant_id=tenant_id, where=InboxFilter(lead_id=lead_id), limit=limit, offset=0
    )


async def conversation_summary(
    session: AsyncSession, *, tenant_id: str, conversation_id: str
) -> ConversationSummary | None:
    row = await repo.summary(session, tenant_id=tenant_id, conversation_id=conversation_id)
    return summary_of(row) if row is not None else None


# ---- a conversation's page -----------------------------------------------------------------------


class TranscriptItem(BaseModel):
    id: int
    author: Author
    text: str
    at: datetime
    delivery: Delivery | None = Field(
        description="Lines leadflow sent (ai, person): the state of the send in the outbox; "
        "null for lines it received or noted (and for a person's reply made outside leadflow)."
    )


class LeadView(BaseModel):
    id: str
    name: str | None
    phone: str | None
    email: str | None
    score: int
    quality: str
    fields: dict[str, Any]
    tags: list[str]
    do_not_contact: bool


class ScoreView(BaseModel):
    total: int
    quality: str
    components: list[dict[str, Any]] = Field(
        description="Each part of the score with its points and the reason (explainable)."
    )


class EscalationView(BaseModel):
    rule: str
    reason: str
    notified: list[str] = Field(description="Who was told (the specialists' names).")
    created_at: datetime
    resolved_at: datetime | None


CrmState = Literal[
    "synced",
    "pending",
    "not_synced",
    "disabled",
    "failed",
    "compensated",
    "compensation_failed",
    "skipped",
]


class CrmView(BaseModel):
    integration: str = Field(description="The connection's name.")
    integration_id: str = Field(description='The connection id ("builtin": the lead table).')
    kind: str
    state: CrmState = Field(
        description="synced: the lead's latest version is there; pending: the lead changed "
        "since (a sync is due or under way); not_synced: never synced there; disabled: the "
        "connection is off; else the last sync's outcome there."
    )
    last_synced_at: datetime | None
    error: str | None
    external_id: str | None = Field(description="The record's id in that CRM.")
    url: str | None = Field(
        default=None, description="A link to the record; null where leadflow cannot name it."
    )


class CostView(BaseModel):
    usd: float
    calls: int
    by_model: dict[str, float]


class ConversationView(BaseModel):
    conversation: ConversationSummary
    transcript: list[TranscriptItem]
    transcript_truncated: bool = Field(
        description="Older lines exist beyond `limit` (the latest are shown)."
    )
    lead: LeadView | None
    score: ScoreView | None
    escalations: list[EscalationView]
    crm: list[CrmView]
    cost: CostView


_TURN_INDEX = re.compile(r"^(?P<turn>.+):\d+$")


def deliveries(
    conversation_id: str, messages: Sequence[MessageRow], outbox: Sequence[OutboxRow]
) -> dict[int, Delivery | None]:
    """The delivery state of each line leadflow sent, from the outbox row of its send.

    A send's outbox key is `{conversation}:{send key}` and its line is recorded under the
    provider's message id when the provider gave one (else `{turn key}:{index}`, where the
    turn's reply is sent under the turn key). So a line finds its row by the provider id, else
    by a key of its turn with the same text, else (a holding or follow-up message, sent under a
    key of its own) by the same text: each row serves one line, in order."""
    by_provider = {row.provider_message_id: row for row in outbox if row.provider_message_id}
    used: set[int] = set()
    found: dict[int, Delivery | None] = {}

    def take(row: OutboxRow) -> Delivery | None:
        used.add(row.id)
        return row.status if row.status in _DELIVERIES else None  # type: ignore[return-value]

    for message in messages:
        if message.role not in _SENT_BY_US:
            found[message.id] = None
            continue
        row = by_provider.get(message.provider_message_id or "")
        if row is not None and row.id not in used:
            found[message.id] = take(row)
            continue
        turn = _TURN_INDEX.match(message.dedupe_key)
        prefix = f"{conversation_id}:{turn['turn']}" if turn else None
        candidates = [r for r in outbox if r.id not in used and r.text == message.text]
        keyed = [r for r in candidates if prefix and r.idempotency_key.startswith(prefix)]
        chosen = (keyed or candidates)[0] if keyed or candidates else None
        # A person's reply made outside leadflow (Chatwoot, the phone) has no row: null.
        found[message.id] = take(chosen) if chosen is not None else None
    return found


def crm_state(row: CrmRow, *, lead_version: int) -> CrmState:
    if not row.enabled:
        return "disabled"
    if not row.linked:
        return "not_synced"
    if row.outcome == "succeeded":
        return "synced" if (row.last_version or 0) >= lead_version else "pending"
    if row.outcome in {"failed", "compensated", "compensation_failed", "skipped"}:
        return row.outcome  # type: ignore[return-value]
    return "pending"


def crm_view(row: CrmRow, *, lead_version: int) -> CrmView:
    state = crm_state(row, lead_version=lead_version)
    return CrmView(
        integration="built-in lead table" if row.integration_id == "builtin" else row.name,
        integration_id=row.integration_id,
        kind=row.kind,
        state=state,
        last_synced_at=row.last_synced_at,
        error=row.reason if state not in {"synced", "pending"} else None,
        external_id=row.remote_id,
    )


async def conversation_view(
    session: AsyncSession,
    *,
    tenant_id: str,
    conversation_id: str,
    limit: int = DEFAULT_TRANSCRIPT,
) -> ConversationView | None:
    """Everything the conversation's page shows; None when it is not the tenant's."""
    summary = await conversation_summary(
        session, tenant_id=tenant_id, conversation_id=conversation_id
    )
    if summary is None:
        return None
    messages, truncated = await repo.transcript(
        session, conversation_id=conversation_id, limit=limit
    )
    outbox = await repo.outbox_of(session, tenant_id=tenant_id, conversation_id=conversation_id)
    states = deliveries(conversation_id, messages, outbox)
    lead = (
        await repo.lead_of(session, tenant_id=tenant_id, lead_id=summary.lead_id)
        if summary.lead_id
        else None
    )
    crm = (
        [
            crm_view(row, lead_version=lead.version)
            for row in await repo.crm_of_lead(session, tenant_id=tenant_id, lead_id=lead.id)
        ]
        if lead is not None
        else []
    )
    score = await repo.latest_score(session, conversation_id=conversation_id)
    costs = await repo.cost_by_model(session, conversation_id=conversation_id)
    by_model: dict[str, float] = {}
    for model, _calls, usd in costs:
        by_model[model] = round(by_model.get(model, 0.0) + usd, 8)
    return ConversationView(
        conversation=summary,
        transcript=[
            TranscriptItem(
                id=m.id, author=author_of(m.role), text=m.text, at=m.at, delivery=states[m.id]
            )
            for m in messages
        ],
        transcript_truncated=truncated,
        lead=LeadView(
            id=lead.id,
            name=lead.name,
            phone=lead.phone,
            email=lead.email,
            score=lead.score,
            quality=lead.quality,
            fields=dict(lead.fields),
            tags=list(lead.tags or ()),
            do_not_contact=lead.do_not_contact,
        )
        if lead is not None
        else None,
        score=ScoreView(total=score[0], quality=score[1], components=score[2])
        if score is not None
        else None,
        escalations=[
            EscalationView(
                rule=e.rule,
                reason=e.reason,
                notified=e.notified,
                created_at=e.created_at,
                resolved_at=e.resolved_at,
            )
            for e in await repo.escalations(session, conversation_id=conversation_id)
        ],
        crm=crm,
        cost=CostView(
            usd=round(sum(usd for _m, _c, usd in costs), 8),
            calls=sum(calls for _m, calls, _u in costs),
            by_model=by_model,
        ),
    )
