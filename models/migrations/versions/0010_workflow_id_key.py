"""the deployment's key for workflow ids without contact details; conversations by lead

Revision ID: 0010_workflow_id_key
Revises: 0009_keys_audit
Create Date: 2026-11-28 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from models.repo.deployment_keys import ensure_key

revision: str = "0010_workflow_id_key"
down_revision: str | Sequence[str] | None = "0009_keys_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "deployment_keys",
        sa.Column("name", S(length=64), nullable=False),
        sa.Column("value", S(length=128), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # The random id key, made here so a migrated database has it before any process starts
    # (models/workflow_ids.py); processes also create it when missing (create_all schemas).
    ensure_key(op.get_bind())
    # A lead's conversation is found by its lead (a lead may have its legacy-id conversation
    # and a hashed-id one): models/repo/conversations.py `lead_at_turn_start`.
    op.create_index("ix_conversations_lead_id", "conversations", ["lead_id"])


def downgrade() -> None:
    op.drop_index("ix_conversations_lead_id", table_name="conversations")
    op.drop_table("deployment_keys")
