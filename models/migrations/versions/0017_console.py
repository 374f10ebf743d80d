"""the operator console's indexes and columns (issue 14)

Revision ID: 0017_console
Revises: 0016_users
Create Date: 2026-11-29 08:15:00.000000
"""

from collections.abc import Sequence

revision: str = "0017_console"
down_revision: str | Sequence[str] | None = "0016_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
