"""inbox: ids are never handed out twice on SQLite (AUTOINCREMENT)

A delivered row's DELETE may be issued a moment after the delivery, by id. Without AUTOINCREMENT
SQLite gives a new row the id of the largest row just deleted, so a late DELETE (after another
API process swept and deleted the same row) could remove a newer, undelivered message.
PostgreSQL's sequence never reuses an id.

Revision ID: 0007_inbox_autoincrement
Revises: 0006_inbox
Create Date: 2026-11-28 16:55:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_inbox_autoincrement"
down_revision: str | Sequence[str] | None = "0006_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "inbox", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("inbox", recreate="always"):
        pass
