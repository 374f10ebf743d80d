"""Pure pacing of a campaign: when its next first message may go out, given the rate and the
send window. Deterministic (no clock of its own): the workflow passes `workflow.now()`.

The window is the tenant's quiet hours' complement, decided by the one quiet-hours rule the
follow-ups use (`workflows.timing.next_allowed_time`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from models.playbook import QuietHours
from workflows.timing import next_allowed_time


def send_interval(rate_per_hour: float) -> timedelta:
    """The gap between two first messages at `rate_per_hour` (50/h: 72 s)."""
    if rate_per_hour <= 0:
        raise ValueError("the rate must be positive")
    return timedelta(seconds=3600 / rate_per_hour)


def next_send_at(
    now: datetime,
    last_sent_at: datetime | None,
    rate_per_hour: float,
    quiet: QuietHours | None,
) -> datetime:
    """The earliest moment the next message may go: one interval after the last one sent (at
    once for the first), moved out of the quiet hours. Skipped recipients send nothing, so they
    do not count against the pace."""
    earliest = (
        now if last_sent_at is None else max(now, last_sent_at + send_interval(rate_per_hour))
    )
    return next_allowed_time(earliest, quiet)
