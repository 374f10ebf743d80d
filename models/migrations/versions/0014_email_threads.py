"""mail in (issue 13): the Message-IDs of the mail leadflow sent, to thread replies into their
conversation

Revision ID: 0014_email_threads
Revises: 0013_lead_tags_bounces
Create Date: 2026-11-29 05:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014_email_threads"
down_revision: str | Sequence[str] | None = "0013_lead_tags_bounces"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "email_threads",
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("message_id", S(length=500), nullable=False),
        sa.Column("conversation_id", S(length=400), nullable=True),
        sa.Column("contact", S(length=320), nullable=False),
        sa.Column("campaign_id", S(length=64), nullable=True),
        sa.Column("from_address", S(length=320), nullable=False),
        sa.Column("sent_at", T(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "message_id"),
    )
    with op.batch_alter_table("email_threads", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_email_threads_campaign_id"), ["campaign_id"], unique=False
        )
        batch_op.create_index(
            "ix_email_threads_tenant_from", ["tenant_id", "from_address"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("email_threads", schema=None) as batch_op:
        batch_op.drop_index("ix_email_threads_tenant_from")
        batch_op.drop_index(batch_op.f("ix_email_threads_campaign_id"))
    op.drop_table("email_threads")
