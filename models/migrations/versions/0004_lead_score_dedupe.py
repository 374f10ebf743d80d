"""lead_scores.dedupe_key: a replayed turn records its score once

Revision ID: 0004_lead_score_dedupe
Revises: 0001
Create Date: 2026-11-23 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004_lead_score_dedupe"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: rows written before this migration have no turn key (NULLs never collide).
    with op.batch_alter_table("lead_scores", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dedupe_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.create_unique_constraint(
            "uq_lead_scores_conversation_id_dedupe_key", ["conversation_id", "dedupe_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("lead_scores", schema=None) as batch_op:
        batch_op.drop_constraint("uq_lead_scores_conversation_id_dedupe_key", type_="unique")
        batch_op.drop_column("dedupe_key")
