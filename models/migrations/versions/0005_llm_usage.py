"""llm usage: the per-call ledger and the providers' circuit-breaker state (own branch off 0001)

Revision ID: 0005_llm_usage
Revises: 0001
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005_llm_usage"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", S(length=64), nullable=False),
        sa.Column("conversation_id", S(length=400), nullable=True),
        sa.Column("job_id", S(length=64), nullable=True),
        sa.Column("step", S(length=64), nullable=False),
        sa.Column("purpose", S(length=64), nullable=True),
        sa.Column("provider", S(length=64), nullable=False),
        sa.Column("model", S(length=200), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_write_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(18, 8, asdecimal=False), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", S(length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_llm_calls_tenant_id", "llm_calls", ["tenant_id"])
    op.create_index("ix_llm_calls_conversation_id", "llm_calls", ["conversation_id"])
    op.create_index("ix_llm_calls_job_id", "llm_calls", ["job_id"])
    op.create_index("ix_llm_calls_at", "llm_calls", ["at"])
    op.create_index("ix_llm_calls_tenant_id_at", "llm_calls", ["tenant_id", "at"])

    op.create_table(
        "llm_provider_health",
        sa.Column("key", S(length=200), nullable=False),
        sa.Column("worker", S(length=200), nullable=False),
        sa.Column("state", S(length=16), nullable=False),
        sa.Column("changed_at", T(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key", "worker"),
    )


def downgrade() -> None:
    op.drop_table("llm_provider_health")
    op.drop_index("ix_llm_calls_tenant_id_at", table_name="llm_calls")
    op.drop_index("ix_llm_calls_at", table_name="llm_calls")
    op.drop_index("ix_llm_calls_job_id", table_name="llm_calls")
    op.drop_index("ix_llm_calls_conversation_id", table_name="llm_calls")
    op.drop_index("ix_llm_calls_tenant_id", table_name="llm_calls")
    op.drop_table("llm_calls")
