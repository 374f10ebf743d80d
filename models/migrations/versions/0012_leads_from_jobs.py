"""leads from enrichment jobs (issue 13): the source job and the company domain of a lead

Revision ID: 0012_leads_from_jobs
Revises: 0011_inventory
Create Date: 2026-11-29 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012_leads_from_jobs"
down_revision: str | Sequence[str] | None = "0011_inventory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_job_id", S(length=64), nullable=True))
        batch_op.add_column(sa.Column("company_domain", S(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_leads_source_job_id"), ["source_job_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_leads_company_domain"), ["company_domain"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_leads_company_domain"))
        batch_op.drop_index(batch_op.f("ix_leads_source_job_id"))
        batch_op.drop_column("company_domain")
        batch_op.drop_column("source_job_id")
