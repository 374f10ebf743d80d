"""Pure time arithmetic for follow-ups: quiet hours in the tenant's time zone."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from models.playbook import QuietHours


def _in_quiet(local: time, quiet: QuietHours) -> bool:
    if quiet.start == quiet.end:
        return False
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end  # spans midnight


def next_allowed_time(at: datetime, quiet: QuietHours | None) -> datetime:
    """`at`, or the end of the quiet period `at` falls in (returned in UTC-aware form)."""
    if quiet is None:
        return at
    zone = ZoneInfo(quiet.timezone)
    local = at.astimezone(zone)
    if not _in_quiet(local.time().replace(tzinfo=None), quiet):
        return at
    end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(at.tzinfo)
