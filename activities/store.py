"""Short database steps of a conversation turn. They run as local activities: they are fast and
local, and a regular activity would cost a workflow-task round trip each (see DESIGN.md)."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.agent import KnowledgeHit
from models.conversation import RecordTurnInput, TurnContext, TurnContextInput
from models.db import Database
from models.playbook_service import PlaybookError, PlaybookResolver, UnknownTenantError
from models.policy import PlaybookRef, policy_of
from models.repo import conversations as conversation_repo
from models.repo import knowledge as knowledge_repo
from models.settings import Settings
from models.tables import Lead


class StoreActivities:
    def __init__(
        self, db: Database, settings: Settings, resolver: PlaybookResolver | None = None
    ) -> None:
        self._db = db
        self._resolver = resolver or PlaybookResolver(db, settings.secret_key.get_secret_value())

    @activity.defn
    async def load_turn_context(self, request: TurnContextInput) -> TurnContext:
        """A reference to the tenant's playbook (and its policy when it changed), specialists,
        do-not-contact and the knowledge hits (ids and titles) for the new messages."""
        try:
            profile = await self._resolver.tenant(request.tenant_id)
        except UnknownTenantError as exc:
            raise ApplicationError(str(exc), type="UnknownTenant", non_retryable=True) from exc
        except PlaybookError as exc:
            raise ApplicationError(str(exc), type="InvalidPlaybook", non_retryable=True) from exc
        async with self._db.session() as session:
            lead = await session.get(Lead, request.lead_id)
            hits = (
                await knowledge_repo.search(
                    session, tenant_id=request.tenant_id, query=request.query, limit=3
                )
                if request.query.strip()
                else []
            )
        playbook = profile.playbook
        settings = profile.settings
        configured = tuple(
            name
            for name in ("waha", "whatsapp", "messenger", "chatwoot", "smtp")
            if getattr(settings, name) is not None
        )
        changed = request.policy_hash != profile.playbook_hash
        return TurnContext(
            playbook=PlaybookRef(tenant_id=request.tenant_id, hash=profile.playbook_hash),
            policy=policy_of(playbook) if changed else None,
            # Ids and titles only: the activities that need the text read it by id.
            knowledge=tuple(
                KnowledgeHit(document_id=h.document_id, title=h.title[:80], score=round(h.score, 3))
                for h in hits
            ),
            specialists=tuple(settings.specialists),
            timezone=settings.timezone,
            channels=configured,
            do_not_contact=bool(lead and lead.do_not_contact),
            crm_connected=profile.crm_connected,
        )

    @activity.defn
    async def record_turn(self, record: RecordTurnInput) -> bool:
        """Persist the turn; returns whether the lead changed."""
        async with self._db.session() as session:
            changed = await conversation_repo.record_turn(session, record=record)
            if record.stage.value != "human_handoff":
                await conversation_repo.resolve_escalations(
                    session, conversation_id=record.conversation_id
                )
        return changed
