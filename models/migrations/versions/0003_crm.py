"""crm: integrations, links, sync runs, idempotency records, write markers

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-22 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "integrations",
        sa.Column("id", S(length=64), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("kind", S(length=32), nullable=False),
        sa.Column("name", S(length=128), nullable=False),
        sa.Column("base_url", S(length=500), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("credentials_encrypted", sa.Text(), nullable=False),
        sa.Column("field_mapping", sa.JSON(), nullable=False),
        sa.Column("mode", S(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("updated_at", T(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_index("ix_integrations_tenant_id", "integrations", ["tenant_id"])

    op.create_table(
        "crm_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("integration_id", S(length=64), nullable=False),
        sa.Column("lead_id", S(length=64), nullable=False),
        sa.Column("remote_id", S(length=128), nullable=True),
        sa.Column("last_synced_at", T(), nullable=True),
        sa.Column("last_version", sa.Integer(), nullable=True),
        sa.Column("outcome", S(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("integration_id", "lead_id"),
    )
    op.create_index("ix_crm_links_tenant_id", "crm_links", ["tenant_id"])
    op.create_index("ix_crm_links_integration_id", "crm_links", ["integration_id"])
    op.create_index("ix_crm_links_lead_id", "crm_links", ["lead_id"])
    op.create_index("ix_crm_links_remote_id", "crm_links", ["remote_id"])

    op.create_table(
        "crm_sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_key", S(length=400), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("lead_id", S(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", S(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_key"),
    )
    op.create_index("ix_crm_sync_runs_tenant_id", "crm_sync_runs", ["tenant_id"])
    op.create_index("ix_crm_sync_runs_lead_id", "crm_sync_runs", ["lead_id"])

    op.create_table(
        "crm_idempotency",
        sa.Column("key", S(length=400), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("integration_id", S(length=64), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_crm_idempotency_tenant_id", "crm_idempotency", ["tenant_id"])

    op.create_table(
        "crm_write_markers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("integration_id", S(length=64), nullable=False),
        sa.Column("remote_id", S(length=128), nullable=False),
        sa.Column("prop", S(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("expires_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_crm_write_markers_tenant_id", "crm_write_markers", ["tenant_id"])
    op.create_index("ix_crm_write_markers_expires_at", "crm_write_markers", ["expires_at"])
    op.create_index(
        "ix_crm_write_markers_lookup",
        "crm_write_markers",
        ["integration_id", "remote_id", "prop"],
    )


def downgrade() -> None:
    op.drop_table("crm_write_markers")
    op.drop_table("crm_idempotency")
    op.drop_table("crm_sync_runs")
    op.drop_table("crm_links")
    op.drop_table("integrations")
