"""How many leads there are of each quality, over all tenants (the lead-quality gauge)."""

from __future__ import annotations

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables import Lead


async def leads_by_quality(session: AsyncSession) -> dict[str, int]:
    """Quality as stored (HOT, WARM, LUKEWARM, COLD) -> count; one GROUP BY over the leads."""
    rows = await session.exec(select(Lead.quality, func.count()).group_by(col(Lead.quality)))
    return {str(quality): int(count) for quality, count in rows.all()}
