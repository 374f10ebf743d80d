"""campaigns (issue 13): campaigns and their recipients

Revision ID: 0015_campaigns
Revises: 0014_email_threads
Create Date: 2026-11-29 05:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015_campaigns"
down_revision: str | Sequence[str] | None = "0014_email_threads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", S(length=64), primary_key=True),
        sa.Column("tenant_id", S(length=64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", S(length=200), nullable=True),
        sa.Column("status", S(length=24), nullable=False),
        sa.Column("channel", S(length=32), nullable=False),
        sa.Column("source_job_id", S(length=64), nullable=True),
        sa.Column("selection", sa.JSON(), nullable=True),
        sa.Column("subject", S(length=300), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("hold_for_approval", sa.Boolean(), nullable=False),
        sa.Column("approved_at", T(), nullable=True),
        sa.Column("window_start", sa.Time(), nullable=True),
        sa.Column("window_end", sa.Time(), nullable=True),
        sa.Column("window_timezone", S(length=64), nullable=True),
        sa.Column("rate_per_hour", sa.Float(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("updated_at", T(), nullable=False),
        sa.Column("finished_at", T(), nullable=True),
    )
    op.create_index("ix_campaigns_tenant_id", "campaigns", ["tenant_id"])
    op.create_table(
        "campaign_recipients",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("campaign_id", S(length=64), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("lead_id", S(length=64), nullable=False),
        sa.Column("enrichment_record_id", sa.Integer(), nullable=True),
        sa.Column("status", S(length=16), nullable=False),
        sa.Column("skip_reason", S(length=32), nullable=True),
        sa.Column("conversation_id", S(length=400), nullable=True),
        sa.Column("sent_at", T(), nullable=True),
        sa.Column("updated_at", T(), nullable=False),
        sa.UniqueConstraint("campaign_id", "position"),
        sa.UniqueConstraint("campaign_id", "lead_id"),
    )
    op.create_index(
        "ix_campaign_recipients_campaign_status", "campaign_recipients", ["campaign_id", "status"]
    )
    op.create_index("ix_campaign_recipients_lead_id", "campaign_recipients", ["lead_id"])
    op.create_index(
        "ix_campaign_recipients_conversation_id", "campaign_recipients", ["conversation_id"]
    )
    op.create_table(
        "whatsapp_opt_ins",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", S(length=64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("lead_id", S(length=64), nullable=False),
        sa.Column("source", S(length=200), nullable=False),
        sa.Column("recorded_by", S(length=100), nullable=False),
        sa.Column("recorded_at", T(), nullable=False),
        sa.UniqueConstraint("tenant_id", "lead_id"),
    )


def downgrade() -> None:
    op.drop_table("whatsapp_opt_ins")
    op.drop_index("ix_campaign_recipients_conversation_id", table_name="campaign_recipients")
    op.drop_index("ix_campaign_recipients_lead_id", table_name="campaign_recipients")
    op.drop_index("ix_campaign_recipients_campaign_status", table_name="campaign_recipients")
    op.drop_table("campaign_recipients")
    op.drop_index("ix_campaigns_tenant_id", table_name="campaigns")
    op.drop_table("campaigns")
