"""the deployment's key for workflow ids without contact details

Revision ID: 0010_workflow_id_key
Revises: 0009_keys_audit
Create Date: 2026-11-28 21:00:00.000000
"""

from collections.abc import Sequence

revision: str = "0010_workflow_id_key"
down_revision: str | Sequence[str] | None = "0009_keys_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
