"""inbox: inbound messages kept from the webhook's acknowledgement until Temporal has them
(own branch off 0001)

Revision ID: 0006_inbox
Revises: 0001
Create Date: 2026-11-28 12:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006_inbox"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", S(length=400), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("lease_until", T(), nullable=False),
        sa.Column("claim", S(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_inbox_workflow_id", "inbox", ["workflow_id"])
    op.create_index("ix_inbox_lease_until", "inbox", ["lease_until"])


def downgrade() -> None:
    op.drop_index("ix_inbox_lease_until", table_name="inbox")
    op.drop_index("ix_inbox_workflow_id", table_name="inbox")
    op.drop_table("inbox")
