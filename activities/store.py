"""Short database steps of a conversation turn. They run as local activities: they are fast and
local, and a regular activity would cost a workflow-task round trip each (see DESIGN.md)."""

from __future__ import annotations

from temporalio import activity

from activities import turn_steps
from models.conversation import RecordTurnInput, TurnContext, TurnContextInput
from models.db import Database
from models.playbook_service import PlaybookResolver
from models.settings import Settings


class StoreActivities:
    def __init__(
        self, db: Database, settings: Settings, resolver: PlaybookResolver | None = None
    ) -> None:
        self._db = db
        self._resolver = resolver or PlaybookResolver(db, settings.secret_key.get_secret_value())

    @activity.defn
    async def load_turn_context(self, request: TurnContextInput) -> TurnContext:
        """A reference to the tenant's playbook (and its policy when it changed), specialists,
        do-not-contact and the knowledge hits (ids and titles) for the new messages; with
        `request.resume`, what the database holds of the lead's earlier runs."""
        return await turn_steps.load_turn_context(self._db, self._resolver, request)

    @activity.defn
    async def record_turn(self, record: RecordTurnInput) -> bool:
        """Persist the turn (and, unless it hands off, resolve the open escalations: one
        transaction); returns whether the lead changed (do-not-contact set or lifted included)."""
        return await turn_steps.record_turn(self._db, record)
