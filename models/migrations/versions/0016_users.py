"""users and their sign-in sessions (issue 14)

Revision ID: 0016_users
Revises: 0015_campaigns
Create Date: 2026-11-29 08:15:00.000000
"""

from collections.abc import Sequence

revision: str = "0016_users"
down_revision: str | Sequence[str] | None = "0015_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
