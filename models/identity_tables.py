"""Tables of one-person-one-id (models/identity.py): message keys already received, and WAHA's
hidden-user ids (`@lid`) mapped to phones."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class InboundKey(SQLModel, table=True):
    """A provider message key seen in the last days, written in the inbox's transaction.

    The same message reaching leadflow under two ids (WAHA's @c.us and @lid twins) or twice (a
    redelivery) has one key (`models.identity.message_key`): the second insert conflicts and the
    copy is acknowledged as a duplicate and delivered nowhere. Pruned after KEY_RETENTION."""

    __tablename__ = "inbound_keys"
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel", "key", name="uq_inbound_keys_key"),
        # Ids never reused (pruning deletes by id ranges).
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=64)
    channel: str = Field(max_length=16)
    key: str = Field(max_length=200, description="message_key(); hashed when longer")
    workflow_id: str = Field(max_length=400, description="Where the first copy went.")
    received_at: datetime = Field(default_factory=utcnow, index=True)


class WahaLid(SQLModel, table=True):
    """A WAHA hidden-user id and the phone chat id WAHA's lids API gave for it.

    Written once known (the mapping does not change); an unknown phone is not stored, so it is
    asked again later (WAHA learns it when the lead is added to the contacts)."""

    __tablename__ = "waha_lids"
    tenant_id: str = Field(primary_key=True, max_length=64)
    lid: str = Field(primary_key=True, max_length=100, description="`123…@lid`, no device part")
    phone: str = Field(max_length=100, description="`{digits}@c.us`")
    created_at: datetime = Field(default_factory=utcnow)
