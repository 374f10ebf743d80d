"""lead tags and e-mail bounces (issue 13): the tags workflow code computed for a lead, and when
(and why) its e-mail address hard-bounced

Revision ID: 0013_lead_tags_bounces
Revises: 0012_leads_from_jobs
Create Date: 2026-11-29 05:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013_lead_tags_bounces"
down_revision: str | Sequence[str] | None = "0012_leads_from_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("email_bounced_at", T(), nullable=True))
        batch_op.add_column(sa.Column("email_bounce", S(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("email_bounce")
        batch_op.drop_column("email_bounced_at")
        batch_op.drop_column("tags")
