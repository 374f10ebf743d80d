"""mail in (issue 13): the Message-IDs of the mail leadflow sent, to thread replies into their conversation; mailbox reader state

Revision ID: 0014_email_threads
Revises: 0013_lead_tags_bounces
Create Date: 2026-11-29 05:45:00.000000
"""

from collections.abc import Sequence

revision: str = "0014_email_threads"
down_revision: str | Sequence[str] | None = "0013_lead_tags_bounces"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
