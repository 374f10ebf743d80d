"""The database steps of a conversation turn, shared by the activities that run them.

Runs at conversation version 0 and 1 take them as local activities of their own
(`StoreActivities.load_turn_context`, `record_turn`); runs at version ≥ 2 take them inside the
turn's model activity (`LlmActivities.prepare_turn`) and its send (`send_and_record`), which saves
a turn two local activities — two activations in the worker and two marker events on the server
(issue 8). One implementation, whichever activity calls it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from temporalio.exceptions import ApplicationError

from models.agent import KnowledgeHit
from models.common import Role
from models.conversation import RecordTurnInput, TurnContext, TurnContextInput
from models.db import Database
from models.knowledge.index import KnowledgeBackendError
from models.metrics import ESCALATIONS, FAILURE_RULES, TURN_SECONDS, TURNS
from models.playbook_service import PlaybookError, PlaybookResolver, UnknownTenantError
from models.policy import PlaybookRef, policy_of
from models.repo import conversations as conversation_repo
from models.repo import knowledge as knowledge_repo

if TYPE_CHECKING:
    from models.knowledge.service import KnowledgeService

CHANNEL_SETTINGS = ("waha", "whatsapp", "messenger", "chatwoot", "smtp")


async def load_turn_context(
    db: Database,
    resolver: PlaybookResolver,
    request: TurnContextInput,
    *,
    knowledge: KnowledgeService | None = None,
) -> TurnContext:
    """A reference to the tenant's playbook (and its policy when it changed), specialists,
    do-not-contact and the knowledge hits (ids and titles) for the new messages; with
    `request.resume` (a run's first turn) also what the database holds of the lead's earlier
    runs (`TurnContext.resume`, None when it has none): one more statement only for a lead with
    history.

    With `knowledge` the documents are searched through the configured backend (Weaviate's
    hybrid search when set); without it (the local activity of runs before version 2) by the
    database's full text, as those runs always did."""
    try:
        profile = await resolver.tenant(request.tenant_id)
    except UnknownTenantError as exc:
        raise ApplicationError(str(exc), type="UnknownTenant", non_retryable=True) from exc
    except PlaybookError as exc:
        raise ApplicationError(str(exc), type="InvalidPlaybook", non_retryable=True) from exc
    async with db.session() as session:
        lead = await conversation_repo.lead_at_turn_start(
            session, tenant_id=request.tenant_id, lead_id=request.lead_id, resume=request.resume
        )
        hits = (
            await knowledge_repo.search(
                session, tenant_id=request.tenant_id, query=request.query, limit=3
            )
            if request.query.strip() and knowledge is None
            else []
        )
    if knowledge is not None and request.query.strip() and not lead.do_not_contact:
        try:
            hits = await knowledge.search_documents(
                tenant_id=request.tenant_id, query=request.query, limit=3
            )
        except KnowledgeBackendError as exc:
            # Named and retried (the activity's retry policy), never answered without it.
            raise ApplicationError(
                f"the {knowledge.backend} knowledge backend could not search: {exc}",
                type="KnowledgeUnavailable",
            ) from exc
    settings = profile.settings
    changed = request.policy_hash != profile.playbook_hash
    return TurnContext(
        playbook=PlaybookRef(tenant_id=request.tenant_id, hash=profile.playbook_hash),
        policy=policy_of(profile.playbook) if changed else None,
        # Ids and titles only: the activities that need the text read it by id.
        knowledge=tuple(
            KnowledgeHit(document_id=h.document_id, title=h.title[:80], score=round(h.score, 3))
            for h in hits
        ),
        specialists=tuple(settings.specialists),
        timezone=settings.timezone,
        channels=tuple(name for name in CHANNEL_SETTINGS if getattr(settings, name) is not None),
        do_not_contact=lead.do_not_contact,
        resume=lead.resume,
        crm_connected=profile.crm_connected,
    )


async def record_turn(db: Database, record: RecordTurnInput) -> bool:
    """Persist the turn in one transaction (and, unless it hands off, resolve the open
    escalations); returns whether the lead changed (a CRM sync is worth requesting): also when
    the turn set or lifted do-not-contact (`record.do_not_contact`), or gave the lead the phone
    or e-mail its contact id carries."""
    async with db.session() as session:
        changed = await conversation_repo.record_turn(session, record=record)
    count_recorded_turn(record)
    return changed


# Turn metrics (models/metrics.py). Counted by the activities that end a turn, which run once
# per attempt that succeeded; a workflow replay runs none of this.


def count_recorded_turn(record: RecordTurnInput) -> None:
    """A turn that ends in its record: escalated or failed (with the escalation), or silent
    (the lead's messages recorded, nothing answered). A replied turn was counted when its reply
    went out (`count_replied_turn`), so a record with our reply counts nothing here."""
    channel = record.channel.value
    if record.escalation is not None:
        rule = record.escalation.rule
        ESCALATIONS.labels(rule=rule).inc()
        outcome = "failed" if rule in FAILURE_RULES else "escalated"
        TURNS.labels(channel=channel, outcome=outcome).inc()
    elif any(e.role == Role.LEAD for e in record.entries) and not any(
        e.role == Role.AI for e in record.entries
    ):
        TURNS.labels(channel=channel, outcome="silent").inc()


def count_replied_turn(record: RecordTurnInput, *, now: datetime | None = None) -> None:
    """The turn's reply went out: a replied turn, and the time from the lead's first message of
    the turn (its provider timestamp) to now."""
    channel = record.channel.value
    TURNS.labels(channel=channel, outcome="replied").inc()
    asked = [e.at for e in record.entries if e.role == Role.LEAD]
    if not asked:  # an outreach or follow-up: nobody waited for it
        return
    first = min(at if at.tzinfo else at.replace(tzinfo=UTC) for at in asked)
    waited = ((now or datetime.now(UTC)) - first).total_seconds()
    TURN_SECONDS.labels(channel=channel, first="true" if record.turns == 1 else "false").observe(
        max(0.0, waited)  # a provider clock ahead of ours is not a negative wait
    )
