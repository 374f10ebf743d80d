"""Core SQLModel tables: tenants, keys, leads, conversations, messages, scores, escalations, outbox,
knowledge. Enrichment and CRM tables live in their own modules beside this one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"
    id: str = Field(primary_key=True, max_length=64)
    name: str
    settings_encrypted: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    """A tenant's API key, stored hashed (models/api_keys.py issues, rotates and revokes them)."""

    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", index=True)
    label: str = Field(default="", max_length=100)
    prefix: str = Field(index=True, max_length=16)
    key_hash: str = Field(unique=True, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = Field(
        default=None, description="Written at most once a minute per key, off the request path."
    )
    revoked_at: datetime | None = Field(
        default=None, description="Refused from then on; in the future during a rotation's grace."
    )


class Lead(SQLModel, table=True):
    """A contact on one channel, with what we learnt about them."""

    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("tenant_id", "channel", "address"),)
    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenants.id", index=True)
    channel: str = Field(max_length=32)
    address: str = Field(max_length=320)
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    score: int = 0
    quality: str = "COLD"
    do_not_contact: bool = False
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Leads from enrichment jobs (models/lead_service.py): the job whose row created or last
    # enriched the lead, and its company's domain (the third dedupe key after e-mail and phone).
    source_job_id: str | None = Field(default=None, index=True, max_length=64)
    company_domain: str | None = Field(default=None, index=True, max_length=255)
    # The tags workflow code computed from the lead's fields, intents and stage (issue 13): kept
    # here, shown by the API, written as Chatwoot labels and CRM tags.
    tags: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    # A hard bounce (a 5.x.x delivery report) marks the address: no campaign mails it again.
    email_bounced_at: datetime | None = None
    email_bounce: str | None = Field(default=None, max_length=500)


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    id: str = Field(primary_key=True, max_length=400, description="= the workflow id")
    tenant_id: str = Field(foreign_key="tenants.id", index=True)
    channel: str = Field(max_length=32)
    contact: str = Field(max_length=320)
    lead_id: str | None = Field(default=None, foreign_key="leads.id", index=True)
    stage: str = Field(default="awaiting_response", index=True, max_length=32)
    score: int = 0
    quality: str = Field(default="COLD", index=True, max_length=16)
    thread: str | None = None
    turns: int = 0
    last_message_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("conversation_id", "dedupe_key"),)
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, max_length=400)
    tenant_id: str = Field(index=True, max_length=64)
    role: str = Field(max_length=16)
    text: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime
    provider_message_id: str | None = None
    dedupe_key: str = Field(
        max_length=400, description="Provider id or turn key; makes recording idempotent."
    )
    knowledge_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class LeadScoreRecord(SQLModel, table=True):
    __tablename__ = "lead_scores"
    __table_args__ = (
        UniqueConstraint(
            "conversation_id", "dedupe_key", name="uq_lead_scores_conversation_id_dedupe_key"
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True, max_length=64)
    lead_id: str = Field(foreign_key="leads.id", index=True)
    conversation_id: str = Field(max_length=400)
    dedupe_key: str | None = Field(
        default=None, max_length=200, description="The turn key; a replayed turn scores once."
    )
    total: int
    quality: str = Field(max_length=16)
    components: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    at: datetime = Field(default_factory=utcnow)


class Escalation(SQLModel, table=True):
    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("conversation_id", "dedupe_key"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True, max_length=64)
    conversation_id: str = Field(max_length=400, index=True)
    dedupe_key: str = Field(max_length=200)
    rule: str
    reason: str
    notified: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None


class OutboxMessage(SQLModel, table=True):
    """Every message leadflow sends; with no channel configured, the message stays here."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True, max_length=64)
    idempotency_key: str = Field(unique=True, max_length=400)
    conversation_id: str | None = Field(default=None, index=True, max_length=400)
    channel: str = Field(max_length=32)
    to: str = Field(max_length=320)
    text: str = Field(sa_column=Column(Text, nullable=False))
    thread: str | None = None
    status: str = Field(default="pending", max_length=16, description="pending | sent | stored")
    delivered_via: str | None = None
    provider_message_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class KnowledgeDocument(SQLModel, table=True):
    __tablename__ = "knowledge_documents"
    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenants.id", index=True)
    title: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
