"""users and their sign-in sessions (issue 14)

Revision ID: 0016_users
Revises: 0015_campaigns
Create Date: 2026-11-29 08:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016_users"
down_revision: str | Sequence[str] | None = "0015_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", S(length=64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("email", S(length=320), nullable=False),
        sa.Column("name", S(length=200), nullable=False),
        sa.Column("role", S(length=16), nullable=False),
        sa.Column("password_hash", S(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("last_login_at", T(), nullable=True),
        sa.UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "user_sessions",
        sa.Column("id", S(length=64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("csrf_token", S(length=64), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("expires_at", T(), nullable=False),
        sa.Column("last_seen_at", T(), nullable=False),
    )
    op.create_index("ix_user_sessions_user_id", "user_sessions", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_user_sessions_user_id", table_name="user_sessions")
    op.drop_table("user_sessions")
    op.drop_table("users")
