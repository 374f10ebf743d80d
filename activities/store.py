"""Short database steps of a conversation turn. They run as local activities: they are fast and
local, and a regular activity would cost a workflow-task round trip each (see DESIGN.md)."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.conversation import RecordTurnInput, TurnContext, TurnContextInput
from models.db import Database
from models.repo import conversations as conversation_repo
from models.repo import knowledge as knowledge_repo
from models.repo import tenants as tenant_repo
from models.repo.playbooks import playbook_for
from models.settings import Settings
from models.tables import Lead


class StoreActivities:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._secret = settings.secret_key.get_secret_value()

    @activity.defn
    async def load_turn_context(self, request: TurnContextInput) -> TurnContext:
        """The tenant's playbook, specialists and the knowledge hits for the new messages."""
        async with self._db.session() as session:
            tenant = await tenant_repo.get_tenant(session, tenant_id=request.tenant_id)
            if tenant is None:
                raise ApplicationError(
                    f"tenant {request.tenant_id!r} does not exist",
                    type="UnknownTenant",
                    non_retryable=True,
                )
            settings = tenant_repo.tenant_settings(tenant, secret_key=self._secret)
            lead = await session.get(Lead, request.lead_id)
            hits = (
                await knowledge_repo.search(
                    session, tenant_id=request.tenant_id, query=request.query, limit=3
                )
                if request.query.strip()
                else []
            )
        try:
            playbook = playbook_for(settings)
        except ValueError as exc:
            raise ApplicationError(str(exc), type="InvalidPlaybook", non_retryable=True) from exc
        configured = tuple(
            name
            for name in ("waha", "whatsapp", "messenger", "chatwoot", "smtp")
            if getattr(settings, name) is not None
        )
        return TurnContext(
            playbook=playbook,
            knowledge=tuple(hits),
            specialists=tuple(settings.specialists),
            timezone=settings.timezone,
            channels=configured,
            do_not_contact=bool(lead and lead.do_not_contact),
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
