"""Inventory items and inventory sources (issue 12); knowledge documents are in models/tables.py."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, Index, Numeric, Text
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class InventoryItemRow(SQLModel, table=True):
    """The canonical copy of one item of a tenant's inventory (models/inventory.py
    `InventoryItem`). `indexed` is False while the search backend has not yet taken this version
    (or, with `removed_at` set, not yet forgotten the item): models/knowledge/service.py pushes
    such rows on every write, so a backend that failed once catches up on the next."""

    __tablename__ = "inventory_items"
    __table_args__ = (
        Index("ix_inventory_items_tenant_make", "tenant_id", "make_norm"),
        Index("ix_inventory_items_tenant_price", "tenant_id", "price"),
        Index("ix_inventory_items_tenant_source", "tenant_id", "source_id"),
        Index("ix_inventory_items_unindexed", "tenant_id", "indexed"),
    )

    tenant_id: str = Field(foreign_key="tenants.id", primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=200)
    source_id: str = Field(default="api", max_length=64, description="'api' or a source's id.")
    make: str = Field(max_length=80)
    make_norm: str = Field(max_length=80, description="Lowercase, accents dropped: filters.")
    model: str = Field(default="", max_length=120)
    model_norm: str = Field(default="", max_length=120)
    variant: str = Field(default="", max_length=200)
    year: int | None = None
    price: Decimal | None = Field(default=None, sa_column=Column(Numeric(12, 2), nullable=True))
    currency: str = Field(default="EUR", max_length=3)
    fuel: str | None = Field(default=None, max_length=20)
    transmission: str | None = Field(default=None, max_length=20)
    mileage: int | None = None
    colour: str = Field(default="", max_length=80)
    url: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    image_url: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    available: bool = True
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    content_hash: str = Field(max_length=32)
    indexed: bool = False
    removed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class KnowledgeSourceRow(SQLModel, table=True):
    """A listing page or feed fetched on a Temporal Schedule (`ingest-source:<tenant>:<id>`)."""

    __tablename__ = "knowledge_sources"
    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    name: str = Field(max_length=120)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_run_at: datetime | None = None
    last_result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
