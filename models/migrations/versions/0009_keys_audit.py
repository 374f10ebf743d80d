"""api keys with labels, and the audit log

Revision ID: 0009_keys_audit
Revises: 0008_identity
Create Date: 2026-11-28 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009_keys_audit"
down_revision: str | Sequence[str] | None = "0008_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        # Keys issued before labels existed are unlabelled ("" is shown as the key's prefix).
        batch_op.add_column(
            sa.Column("label", S(length=100), nullable=False, server_default=sa.text("''"))
        )
        batch_op.add_column(sa.Column("last_used_at", T(), nullable=True))
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("at", T(), nullable=False),
        sa.Column("actor_kind", S(length=16), nullable=False),
        sa.Column("actor", S(length=200), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("action", S(length=100), nullable=False),
        sa.Column("resource_id", S(length=400), nullable=True),
        sa.Column("outcome", S(length=16), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("request_id", S(length=64), nullable=True),
        sa.Column("method", S(length=8), nullable=True),
        sa.Column("route", S(length=200), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_events_tenant_id_id", "audit_events", ["tenant_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_tenant_id_id", table_name="audit_events")
    op.drop_table("audit_events")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("label")
