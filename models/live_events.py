"""What the console's live events say (issue 14): one `conversation` event per thing that
happened to a conversation, with what the inbox row needs to update itself. The API's poller
(api/event_stream.py) reads the changed rows; the rule that names what happened is here."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from models.common import Role, Stage
from models.repo.inbox_view import ChangeRow

EventKind = Literal["message", "stage", "handoff", "reply_sent", "closed"]

_RECEIVED = frozenset({Role.LEAD.value, Role.SYSTEM.value})
_SENT = frozenset({Role.AI.value, Role.HUMAN.value})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ConversationEvent(BaseModel):
    """The data of a `conversation` event."""

    id: str = Field(description="The conversation.")
    kind: EventKind = Field(
        description="message: a new line from the lead (or a system note); reply_sent: a "
        "reply (the AI's or a person's) was sent and recorded; handoff: handed to a human; "
        "closed; stage: any other change (a stage, the score, a release)."
    )
    stage: str
    needs_human: bool
    last_message_at: datetime | None


@dataclass(frozen=True, slots=True)
class Seen:
    """What a poller last saw of a conversation."""

    updated_at: datetime | None
    stage: str | None
    last_message_id: int | None

    @classmethod
    def of(cls, row: ChangeRow) -> Seen:
        return cls(row.updated_at, row.stage, row.last_message_id)

    def same(self, row: ChangeRow) -> bool:
        return (self.updated_at, self.stage, self.last_message_id) == (
            row.updated_at,
            row.stage,
            row.last_message_id,
        )


def _stage_kind(stage: str) -> EventKind:
    if stage == Stage.HUMAN_HANDOFF.value:
        return "handoff"
    if stage == Stage.CLOSED.value:
        return "closed"
    return "stage"


def _message_kinds(roles: Collection[str]) -> list[EventKind]:
    kinds: list[EventKind] = []
    if _RECEIVED & set(roles):
        kinds.append("message")
    if _SENT & set(roles):
        kinds.append("reply_sent")
    return kinds


def kinds_of(row: ChangeRow, seen: Seen, new_roles: Collection[str]) -> list[EventKind]:
    """What happened between `seen` and `row`: new lines (by their roles), then a stage change.
    A conversation the poller never saw (`seen.stage` None) counts as changing stage only into
    a handoff or a close, and only without new lines (a line recorded in a handoff is a
    message, not a new handoff). Something else (the score, the turn count) is a `stage`."""
    if seen.same(row):
        return []
    kinds = _message_kinds(new_roles)
    if seen.stage is None:
        if not kinds and row.stage in (Stage.HUMAN_HANDOFF.value, Stage.CLOSED.value):
            kinds.append(_stage_kind(row.stage))
    elif row.stage != seen.stage:
        kinds.append(_stage_kind(row.stage))
    return kinds or ["stage"]


def kinds_at_resume(row: ChangeRow, *, since: datetime, margin: timedelta) -> list[EventKind]:
    """A conversation changed after a client's `Last-Event-ID` (`since`), with nothing known of
    before: its last line when that is recent, and its stage when it is a handoff or a close."""
    kinds: list[EventKind] = []
    recent = row.last_message_at is not None and row.last_message_at > since - margin
    if recent and row.last_role is not None:
        kinds = _message_kinds([row.last_role])
    if row.stage in (Stage.HUMAN_HANDOFF.value, Stage.CLOSED.value):
        kinds.append(_stage_kind(row.stage))
    return kinds or ["stage"]


def event_of(row: ChangeRow, kind: EventKind) -> ConversationEvent:
    return ConversationEvent(
        id=row.id,
        kind=kind,
        stage=row.stage,
        needs_human=row.stage == Stage.HUMAN_HANDOFF.value,
        last_message_at=row.last_message_at,
    )


def micros(at: datetime) -> int:
    """An event id's time part: microseconds since 1970 (UTC)."""
    return (at - EPOCH) // timedelta(microseconds=1)


def at_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)
