"""inventory items and inventory sources (issue 12)

Revision ID: 0011_inventory
Revises: 0010_workflow_id_key
Create Date: 2026-11-29 03:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011_inventory"
down_revision: str | Sequence[str] | None = "0010_workflow_id_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "inventory_items",
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("key", S(length=200), nullable=False),
        sa.Column("source_id", S(length=64), nullable=False),
        sa.Column("make", S(length=80), nullable=False),
        sa.Column("make_norm", S(length=80), nullable=False),
        sa.Column("model", S(length=120), nullable=False),
        sa.Column("model_norm", S(length=120), nullable=False),
        sa.Column("variant", S(length=200), nullable=False),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("price", sa.Numeric(12, 2), nullable=True),
        sa.Column("currency", S(length=3), nullable=False),
        sa.Column("fuel", S(length=20), nullable=True),
        sa.Column("transmission", S(length=20), nullable=True),
        sa.Column("mileage", sa.Integer(), nullable=True),
        sa.Column("colour", S(length=80), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("image_url", sa.Text(), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("content_hash", S(length=32), nullable=False),
        sa.Column("indexed", sa.Boolean(), nullable=False),
        sa.Column("removed_at", T(), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("updated_at", T(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "key"),
    )
    op.create_index("ix_inventory_items_tenant_make", "inventory_items", ["tenant_id", "make_norm"])
    op.create_index("ix_inventory_items_tenant_price", "inventory_items", ["tenant_id", "price"])
    op.create_index(
        "ix_inventory_items_tenant_source", "inventory_items", ["tenant_id", "source_id"]
    )
    op.create_index("ix_inventory_items_unindexed", "inventory_items", ["tenant_id", "indexed"])
    op.create_table(
        "knowledge_sources",
        sa.Column("id", S(length=32), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("name", S(length=120), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("updated_at", T(), nullable=False),
        sa.Column("last_run_at", T(), nullable=True),
        sa.Column("last_result", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_knowledge_sources_tenant_id", "knowledge_sources", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_knowledge_sources_tenant_id", table_name="knowledge_sources")
    op.drop_table("knowledge_sources")
    for name in ("unindexed", "tenant_source", "tenant_price", "tenant_make"):
        op.drop_index(f"ix_inventory_items_{name}", table_name="inventory_items")
    op.drop_table("inventory_items")
