"""campaigns (issue 13): campaigns and their recipients

Revision ID: 0015_campaigns
Revises: 0014_email_threads
Create Date: 2026-11-29 05:45:00.000000
"""

from collections.abc import Sequence

revision: str = "0015_campaigns"
down_revision: str | Sequence[str] | None = "0014_email_threads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
