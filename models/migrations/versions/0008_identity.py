"""identity: inbound message keys (cross-id dedup) and WAHA @lid -> phone mappings

Revision ID: 0008_identity
Revises: 0007_inbox_autoincrement
Create Date: 2026-11-28 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008_identity"
down_revision: str | Sequence[str] | None = "0007_inbox_autoincrement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "inbound_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("channel", S(length=16), nullable=False),
        sa.Column("key", S(length=200), nullable=False),
        sa.Column("workflow_id", S(length=400), nullable=False),
        sa.Column("received_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "channel", "key", name="uq_inbound_keys_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_inbound_keys_received_at", "inbound_keys", ["received_at"])
    op.create_table(
        "waha_lids",
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("lid", S(length=100), nullable=False),
        sa.Column("phone", S(length=100), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "lid"),
    )


def downgrade() -> None:
    op.drop_table("waha_lids")
    op.drop_index("ix_inbound_keys_received_at", table_name="inbound_keys")
    op.drop_table("inbound_keys")
