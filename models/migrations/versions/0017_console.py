"""the operator console's indexes and columns (issue 14)

The inbox lists a tenant's conversations newest activity first, and the live events' poller
(api/event_stream.py) reads each subscribed tenant's conversations changed since a watermark
every second: both are ranges of (tenant_id, updated_at). The single-column index on
tenant_id stays (other queries and the foreign key use it).

Revision ID: 0017_console
Revises: 0016_users
Create Date: 2026-11-29 08:15:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017_console"
down_revision: str | Sequence[str] | None = "0016_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_conversations_tenant_updated"


def upgrade() -> None:
    op.create_index(INDEX, "conversations", ["tenant_id", "updated_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="conversations")
