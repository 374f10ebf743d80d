"""A lead's history for its page in the console (`GET /api/v1/leads/{id}/history`): what
changed, when, and who did it, newest first, read from what leadflow already keeps:

- `score`: each turn's score record where the total or the quality changed (with the
  components that explain it), by the conversation;
- `conversation` / `stage`: each conversation's start, and the stage it is in now (when it last
  changed): leadflow keeps a conversation's current stage, not each transition;
- `handoff` / `released`: escalations (the rule, why, who was notified) and their resolution;
- `note`: system entries of the transcripts: operators' decisions (do-not-contact set or lifted,
  with who and why), sends that failed, closes;
- `action`: the audit log's entries about the lead or its conversations (edits, do-not-contact,
  handoffs, replies by a person, syncs), with the person or key that acted and the outcome;
- `crm_sync`: each CRM sync run's outcome.

Tags are the lead's current ones: the workflow recomputes them each turn and no earlier set is
kept, so their changes are not in the history (they would need a table of their own)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from models.repo import lead_history as history_repo
from models.repo import leads as lead_repo

EntryKind = Literal[
    "created", "conversation", "stage", "score", "handoff", "released", "note", "action", "crm_sync"
]
ActorKind = Literal["conversation", "api_key", "cli", "user", "crm"]

PER_SOURCE = 200  # newest rows read from each source; `complete` says when one had more


class HistoryActor(BaseModel):
    kind: ActorKind = Field(
        description="conversation: leadflow's own decision in a turn; api_key, user, cli: "
        "who acted, as the audit log names them; crm: a CRM sync."
    )
    name: str | None = None


class HistoryEntry(BaseModel):
    at: datetime
    kind: EntryKind
    summary: str
    by: HistoryActor | None = None
    conversation_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class LeadHistory(BaseModel):
    lead_id: str
    tags: list[str] = Field(description="The current tags (their changes are not recorded).")
    do_not_contact: bool
    entries: list[HistoryEntry] = Field(description="Newest first.")
    complete: bool = Field(
        description=f"False when a source had more than {PER_SOURCE} rows: the oldest are left out."
    )


def _aware(at: datetime) -> datetime:
    # SQLite hands datetimes back naive; they were stored as UTC.
    return at if at.tzinfo else at.replace(tzinfo=UTC)


_BY_CONVERSATION = HistoryActor(kind="conversation")


def _actor_kind(stored: str) -> ActorKind:
    """The audit log's actor kind (api_key | cli | user)."""
    if stored == "cli":
        return "cli"
    if stored == "user":
        return "user"
    return "api_key"


async def lead_history(
    session: AsyncSession, *, tenant_id: str, lead_id: str
) -> LeadHistory | None:
    """The lead's history, or None for a lead the tenant does not have."""
    lead = await lead_repo.get_lead(session, tenant_id=tenant_id, lead_id=lead_id)
    if lead is None:
        return None
    conversations = await lead_repo.conversations_of_lead(
        session, tenant_id=tenant_id, lead_id=lead_id
    )
    conversation_ids = [c.id for c in conversations]
    entries: list[HistoryEntry] = [
        HistoryEntry(
            at=_aware(lead.created_at),
            kind="created",
            summary=f"lead created ({lead.channel})"
            + (f" from enrichment job {lead.source_job_id}" if lead.source_job_id else ""),
        )
    ]
    for conv in conversations:
        entries.append(
            HistoryEntry(
                at=_aware(conv.created_at),
                kind="conversation",
                summary=f"conversation started on {conv.channel}",
                conversation_id=conv.id,
            )
        )
        entries.append(
            HistoryEntry(
                at=_aware(conv.updated_at),
                kind="stage",
                summary=f"conversation on {conv.channel} is in {conv.stage}",
                by=_BY_CONVERSATION,
                conversation_id=conv.id,
                detail={"stage": conv.stage, "turns": conv.turns},
            )
        )

    scores = await history_repo.score_records(
        session, tenant_id=tenant_id, lead_id=lead_id, limit=PER_SOURCE
    )
    previous: tuple[int, str] | None = None
    for record in reversed(scores):  # oldest first, to compare each with the one before
        now = (record.total, record.quality)
        if now != previous:
            was = f", was {previous[0]} ({previous[1]})" if previous else ""
            entries.append(
                HistoryEntry(
                    at=_aware(record.at),
                    kind="score",
                    summary=f"score {record.total} ({record.quality}){was}",
                    by=_BY_CONVERSATION,
                    conversation_id=record.conversation_id,
                    detail={
                        "total": record.total,
                        "quality": record.quality,
                        "components": record.components,
                    },
                )
            )
        previous = now

    escalations = await history_repo.escalations(
        session, tenant_id=tenant_id, conversation_ids=conversation_ids, limit=PER_SOURCE
    )
    for esc in escalations:
        notified = f"; notified {', '.join(esc.notified)}" if esc.notified else ""
        entries.append(
            HistoryEntry(
                at=_aware(esc.created_at),
                kind="handoff",
                summary=f"handed to a human: {esc.rule} ({esc.reason}){notified}",
                by=_BY_CONVERSATION,
                conversation_id=esc.conversation_id,
                detail={"rule": esc.rule, "notified": list(esc.notified)},
            )
        )
        if esc.resolved_at is not None:
            entries.append(
                HistoryEntry(
                    at=_aware(esc.resolved_at),
                    kind="released",
                    summary=f"handoff resolved ({esc.rule})",
                    conversation_id=esc.conversation_id,
                    detail={"rule": esc.rule},
                )
            )

    notes = await history_repo.system_notes(
        session, tenant_id=tenant_id, conversation_ids=conversation_ids, limit=PER_SOURCE
    )
    for note in notes:
        entries.append(
            HistoryEntry(
                at=_aware(note.at),
                kind="note",
                summary=note.text[:500],
                conversation_id=note.conversation_id,
            )
        )

    audited = await history_repo.audit_entries(
        session,
        tenant_id=tenant_id,
        resource_ids=[lead_id, *conversation_ids],
        limit=PER_SOURCE,
    )
    for event in audited:
        kind = _actor_kind(event.actor_kind)
        outcome = "" if event.outcome == "ok" else f" ({event.outcome}, {event.status})"
        entries.append(
            HistoryEntry(
                at=_aware(event.at),
                kind="action",
                summary=f"{event.action} by {event.actor}{outcome}",
                by=HistoryActor(kind=kind, name=event.actor),
                conversation_id=event.resource_id if event.resource_id != lead_id else None,
                detail={
                    "action": event.action,
                    "outcome": event.outcome,
                    "status": event.status,
                    **dict(event.detail or {}),
                },
            )
        )

    runs = await history_repo.sync_runs(
        session, tenant_id=tenant_id, lead_id=lead_id, limit=PER_SOURCE
    )
    for run in runs:
        names = ", ".join(f"{s.get('name')} {s.get('status')}" for s in run.steps)
        entries.append(
            HistoryEntry(
                at=_aware(run.created_at),
                kind="crm_sync",
                summary=f"CRM sync of v{run.version}: {run.status}"
                + (f" ({names})" if names else ""),
                by=HistoryActor(kind="crm"),
                detail={"version": run.version, "status": run.status, "reason": run.reason},
            )
        )

    entries.sort(key=lambda e: e.at, reverse=True)
    complete = all(len(rows) < PER_SOURCE for rows in (scores, escalations, notes, audited, runs))
    return LeadHistory(
        lead_id=lead.id,
        tags=list(lead.tags or ()),
        do_not_contact=lead.do_not_contact,
        entries=entries,
        complete=complete,
    )
