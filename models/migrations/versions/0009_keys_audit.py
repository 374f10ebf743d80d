"""api keys with labels, and the audit log

Revision ID: 0009_keys_audit
Revises: 0008_identity
Create Date: 2026-11-28 21:00:00.000000
"""

from collections.abc import Sequence

revision: str = "0009_keys_audit"
down_revision: str | Sequence[str] | None = "0008_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
