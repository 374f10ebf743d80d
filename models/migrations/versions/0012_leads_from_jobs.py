"""leads from enrichment jobs (issue 13): reserved slot

Revision ID: 0012_leads_from_jobs
Revises: 0011_inventory
Create Date: 2026-11-29 04:00:00.000000
"""

from collections.abc import Sequence

revision: str = "0012_leads_from_jobs"
down_revision: str | Sequence[str] | None = "0011_inventory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
