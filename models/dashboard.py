"""The dashboard's numbers for a period, in one place: `GET /api/v1/dashboard` (api/routes/
dashboard.py) and `leadflow dashboard` (workers/cli_dashboard.py) call `dashboard()`; the
queries are in models/repo/dashboard.py, the rules here (pure functions over their rows).

A period is whole days `since`..`until` (both included) in the tenant's time zone
(`TenantSettings.timezone`), at most 366 of them, between 2000-01-01 and 2099-12-31. The figures:

- **messages_per_day**: messages recorded on each day, `in` = the lead's, `out` = the AI's plus
  a person's (an operator writing as the business); system notes are neither.
- **first_reply_seconds**: for each conversation whose first lead message ever falls in the
  period, the time from it to the first AI or person message at or after it; `median` and `p90`
  (linear interpolation between the closest ranks), `count` the conversations answered,
  `unanswered` those without a reply yet. No answered conversation: `median`/`p90` are null.
- **escalations**: the escalations raised in the period, by rule; `rate` = escalations /
  conversations with a lead message in the period (0 when there is none).
- **funnel**: the conversations active in the period (a message in or out in it) by their
  current stage, every stage of `models.common.Stage` in its order (unknown stages after them).
- **lead_quality**: the distinct leads of the active conversations by their current quality,
  HOT, WARM, LUKEWARM, COLD always present.
- **meetings_booked**: active conversations that pass the campaigns' rule
  (`models.campaigns.meeting_booked`: in the scheduling stage).
- **test_drives_booked**: leads of active conversations that pass
  `models.lead_attributes.asked_for_test_drive` (the `test-drive`/`meeting` tag or the
  `test_drive` field) — the lead attribute `test_drive_requested`.
- **model_cost**: the LLM ledger's cost per day and `provider:model`; `per_message_usd` = the
  cost of conversation calls in the period / the messages in and out of the period (enrichment
  calls are in the days' totals, not in the per-message cost).
- **enrichment**: records finished per day, done and failed, and the failed ones' reasons
  (URLs, quoted names and long numbers masked so one cause is one reason; the 10 most common,
  the rest as `other`).
- **crm_sync**: the CRM sync runs recorded in the period: `runs` = those that tried (not
  `skipped`), `failed` = partial, rolled back or failed, `success_rate` = succeeded / runs.

Every day of the period is present (zeros on a quiet day): charts need a continuous axis.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from models.campaigns import meeting_booked
from models.common import LeadQuality, Role, Stage
from models.lead_attributes import asked_for_test_drive
from models.messages import Frozen
from models.repo import dashboard as repo
from models.repo.dashboard import SLOT_SECONDS

DEFAULT_DAYS = 30
MAX_DAYS = 366
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2099, 12, 31)

TOP_REASONS = 10
OTHER_REASON = "other"
INBOUND_ROLES = frozenset({Role.LEAD.value})
OUTBOUND_ROLES = frozenset({Role.AI.value, Role.HUMAN.value})
FAILED_SYNC = frozenset({"partial", "rolled_back", "failed"})
SKIPPED_SYNC = "skipped"
SUCCEEDED_SYNC = "succeeded"


class PeriodError(ValueError):
    """A period the caller asked for that cannot be: `field` names the parameter."""

    def __init__(self, field: str, message: str, value: object = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.value = value


class Period(Frozen):
    since: date = Field(description="The first day, in the tenant's time zone.")
    until: date = Field(description="The last day (included).")
    days: int
    timezone: str = Field(description="The IANA time zone the days are taken in.")
    start: datetime = Field(description="The period's first instant (UTC).")
    end: datetime = Field(description="The instant after the period's last (UTC), excluded.")

    def day_list(self) -> list[date]:
        return [self.since + timedelta(days=n) for n in range(self.days)]


def zone_of(name: str) -> ZoneInfo:
    """The tenant's zone; a name that is no zone (settings saved before they were validated:
    models/tenant_settings_merge.py refuses one now) counts as UTC, and the period says so."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_day(field: str, value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        day = value
    else:
        text = value.strip()
        try:
            if not _ISO_DAY.match(text):
                raise ValueError(text)
            day = date.fromisoformat(text)
        except ValueError:
            raise PeriodError(field, "expected a date as YYYY-MM-DD", value) from None
    if day is not None and not FIRST_DAY <= day <= LAST_DAY:
        raise PeriodError(field, f"must be between {FIRST_DAY} and {LAST_DAY}", str(day))
    return day


def resolve_period(
    *,
    timezone: str,
    now: datetime,
    days: int | None = None,
    since: str | date | None = None,
    until: str | date | None = None,
) -> Period:
    """The period asked for: `days` (1-366) ending today, or `since`/`until` (either may be
    left out: `until` defaults to today, `since` to 30 days before `until`); nothing: the last
    30 days. Raises PeriodError saying what is wrong."""
    zone = zone_of(timezone)
    if days is not None and (since is not None or until is not None):
        raise PeriodError("days", "give either days or since/until, not both", days)
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise PeriodError("days", f"must be between 1 and {MAX_DAYS}", days)
    first = _parse_day("since", since)
    last = _parse_day("until", until)
    today = now.astimezone(zone).date()
    if last is None:
        last = today
    if first is None:
        first = last - timedelta(days=(days or DEFAULT_DAYS) - 1)
    if first > last:
        raise PeriodError("since", f"since ({first}) is after until ({last})", str(first))
    count = (last - first).days + 1
    if count > MAX_DAYS:
        raise PeriodError("until", f"the period is {count} days, more than {MAX_DAYS}", str(last))
    start = datetime.combine(first, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    return Period(since=first, until=last, days=count, timezone=zone.key, start=start, end=end)


class DayBuckets:
    """Maps the databases' 15-minute slots (UTC epoch seconds // SLOT_SECONDS) to the period's
    local days; a slot outside the period maps to None."""

    def __init__(self, period: Period) -> None:
        self.period = period
        self.zone = zone_of(period.timezone)
        self._days: dict[int, date | None] = {}

    def day(self, slot: int) -> date | None:
        if slot not in self._days:
            instant = datetime.fromtimestamp(int(slot) * SLOT_SECONDS, tz=self.zone)
            day = instant.date()
            inside = self.period.since <= day <= self.period.until
            self._days[slot] = day if inside else None
        return self._days[slot]


# ---- the figures ------------------------------------------------------------------------------


class DayMessages(Frozen):
    model_config = ConfigDict(frozen=True, validate_by_name=True, serialize_by_alias=True)

    day: date
    in_: int = Field(alias="in", description="The lead's messages.")
    out: int = Field(description="The AI's and people's messages (ai + person).")
    ai: int
    person: int


class FirstReply(Frozen):
    median: float | None = Field(description="Seconds; null when no conversation was answered.")
    p90: float | None
    count: int = Field(description="Conversations answered.")
    unanswered: int = Field(description="Conversations whose first lead message has no reply.")


class Escalations(Frozen):
    rate: float = Field(description="Escalations / conversations with a lead message.")
    by_rule: dict[str, int]
    count: int
    conversations: int = Field(description="Conversations with a lead message in the period.")


class FunnelStep(Frozen):
    stage: str
    count: int


class DayCost(Frozen):
    day: date
    by_model: dict[str, float] = Field(description='USD by "provider:model".')
    total_usd: float


class ModelCost(Frozen):
    per_message_usd: float
    total_usd: float
    conversation_usd: float = Field(description="The cost of calls made for conversations.")
    messages: int = Field(description="Messages in and out: the per-message cost's divisor.")
    per_day: list[DayCost]


class DayEnrichment(Frozen):
    day: date
    done: int
    failed: int


class Enrichment(Frozen):
    done: int
    failed: int
    per_day: list[DayEnrichment]
    failure_reasons: dict[str, int] = Field(description="Most common first.")


class CrmSync(Frozen):
    success_rate: float
    runs: int = Field(description="Runs that tried to write (skipped runs are not counted).")
    succeeded: int
    failed: int = Field(description="Partial, rolled back or failed.")
    skipped: int


class Dashboard(Frozen):
    period: Period
    messages_per_day: list[DayMessages]
    first_reply_seconds: FirstReply
    escalations: Escalations
    lead_quality: dict[str, int]
    funnel: list[FunnelStep]
    meetings_booked: int
    test_drives_booked: int
    model_cost: ModelCost
    enrichment: Enrichment
    crm_sync: CrmSync


def _ratio(part: float, whole: float, digits: int = 4) -> float:
    return round(part / whole, digits) if whole else 0.0


def messages_per_day(period: Period, slots: Iterable[tuple[int, str, int]]) -> list[DayMessages]:
    """(slot, role, count) rows → one entry per day of the period."""
    buckets = DayBuckets(period)
    counts: dict[date, Counter[str]] = {day: Counter() for day in period.day_list()}
    for slot, role, n in slots:
        day = buckets.day(slot)
        if day is not None:
            counts[day][role] += int(n)
    return [
        DayMessages(
            day=day,
            in_=sum(c[r] for r in INBOUND_ROLES),
            out=sum(c[r] for r in OUTBOUND_ROLES),
            ai=c[Role.AI.value],
            person=c[Role.HUMAN.value],
        )
        for day, c in counts.items()
    ]


def percentile(ordered: list[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, linear between the closest ranks (as numpy's
    default and `statistics.quantiles(method="inclusive")`)."""
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _aware(value: datetime) -> datetime:
    # SQLite hands datetimes back naive (they were written in UTC).
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def first_reply(pairs: Iterable[tuple[datetime, datetime | None]]) -> FirstReply:
    """(first lead message, first reply or None) per conversation → median and p90 seconds."""
    seconds: list[float] = []
    unanswered = 0
    for asked, answered in pairs:
        if answered is None:
            unanswered += 1
        else:
            seconds.append(max((_aware(answered) - _aware(asked)).total_seconds(), 0.0))
    seconds.sort()
    if not seconds:
        return FirstReply(median=None, p90=None, count=0, unanswered=unanswered)
    return FirstReply(
        median=round(percentile(seconds, 0.5), 1),
        p90=round(percentile(seconds, 0.9), 1),
        count=len(seconds),
        unanswered=unanswered,
    )


def escalations(by_rule: Mapping[str, int], conversations: int) -> Escalations:
    count = sum(by_rule.values())
    return Escalations(
        rate=_ratio(count, conversations),
        by_rule=dict(sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))),
        count=count,
        conversations=conversations,
    )


def funnel(stage_counts: Mapping[str, int]) -> list[FunnelStep]:
    """Every stage in the workflow's order; a stage value no longer known follows them."""
    known = [stage.value for stage in Stage]
    unknown = sorted(set(stage_counts) - set(known))
    return [FunnelStep(stage=s, count=int(stage_counts.get(s, 0))) for s in [*known, *unknown]]


def meetings(stage_counts: Mapping[str, int]) -> int:
    return sum(int(n) for stage, n in stage_counts.items() if meeting_booked(stage))


def lead_quality(qualities: Iterable[str]) -> dict[str, int]:
    counts = Counter(qualities)
    out = {quality.value: counts.pop(quality.value, 0) for quality in LeadQuality}
    return {**out, **dict(sorted(counts.items()))}


def count_test_drives(
    leads: Iterable[tuple[Mapping[str, Any] | None, Iterable[str] | None]],
) -> int:
    """(fields, tags) per lead → how many asked for a test drive."""
    return sum(asked_for_test_drive(fields or {}, tags or ()) for fields, tags in leads)


def model_cost(
    period: Period,
    slots: Iterable[tuple[int, str, str, float]],
    *,
    conversation_usd: float,
    messages: int,
) -> ModelCost:
    """(slot, provider, model, usd) rows → USD per day and model, and the per-message cost."""
    buckets = DayBuckets(period)
    per_day: dict[date, dict[str, float]] = {day: {} for day in period.day_list()}
    for slot, provider, model, usd in slots:
        day = buckets.day(slot)
        if day is not None:
            key = f"{provider}:{model}"
            per_day[day][key] = per_day[day].get(key, 0.0) + float(usd)
    days = [
        DayCost(
            day=day,
            by_model={k: round(v, 8) for k, v in sorted(models.items())},
            total_usd=round(sum(models.values()), 8),
        )
        for day, models in per_day.items()
    ]
    return ModelCost(
        per_message_usd=_ratio(conversation_usd, messages, 8),
        total_usd=round(sum(d.total_usd for d in days), 8),
        conversation_usd=round(conversation_usd, 8),
        messages=messages,
        per_day=days,
    )


_URL = re.compile(r"\b(?:https?|ftp)://\S+?(?=:?\s|[,;)]|:?$)", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d{4,}")
_SPACES = re.compile(r"\s+")


def failure_reason(error: str | None) -> str:
    """An enrichment record's error as a reason shared by records with the same cause: URLs,
    quoted names and long numbers masked ("fetching <url>: HTTP 404")."""
    text = _URL.sub("<url>", error or "unknown")
    text = _QUOTED.sub("<name>", text)
    text = _NUMBER.sub("<n>", text)
    text = _SPACES.sub(" ", text).strip()
    return text[:200] or "unknown"


def enrichment(
    period: Period,
    slots: Iterable[tuple[int, str, int]],
    errors: Iterable[tuple[str | None, int]],
) -> Enrichment:
    """(slot, status, count) rows of finished records and (error, count) of the failed ones."""
    buckets = DayBuckets(period)
    counts: dict[date, Counter[str]] = {day: Counter() for day in period.day_list()}
    for slot, status, n in slots:
        day = buckets.day(slot)
        if day is not None:
            counts[day][status] += int(n)
    reasons: Counter[str] = Counter()
    for error, n in errors:
        reasons[failure_reason(error)] += int(n)
    ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    top = dict(ranked[:TOP_REASONS])
    rest = sum(n for _, n in ranked[TOP_REASONS:])
    if rest:
        top[OTHER_REASON] = top.get(OTHER_REASON, 0) + rest
    days = [DayEnrichment(day=d, done=c["done"], failed=c["failed"]) for d, c in counts.items()]
    return Enrichment(
        done=sum(d.done for d in days),
        failed=sum(d.failed for d in days),
        per_day=days,
        failure_reasons=top,
    )


def crm_sync(status_counts: Mapping[str, int]) -> CrmSync:
    succeeded = int(status_counts.get(SUCCEEDED_SYNC, 0))
    skipped = int(status_counts.get(SKIPPED_SYNC, 0))
    runs = sum(int(n) for status, n in status_counts.items() if status != SKIPPED_SYNC)
    failed = sum(int(n) for status, n in status_counts.items() if status in FAILED_SYNC)
    return CrmSync(
        success_rate=_ratio(succeeded, runs),
        runs=runs,
        succeeded=succeeded,
        failed=failed,
        skipped=skipped,
    )


# ---- the service --------------------------------------------------------------------------------


async def dashboard(session: AsyncSession, *, tenant_id: str, period: Period) -> Dashboard:
    """The tenant's numbers for the period (a dozen grouped statements, each bounded by the
    period)."""
    start, end = period.start, period.end
    bounds: dict[str, Any] = {"tenant_id": tenant_id, "start": start, "end": end}
    message_slots = await repo.message_slots(session, **bounds)
    per_day = messages_per_day(period, message_slots)
    stages = await repo.active_stage_counts(session, **bounds)
    leads = await repo.active_leads(session, **bounds)
    total_messages = sum(d.in_ + d.out for d in per_day)
    return Dashboard(
        period=period,
        messages_per_day=per_day,
        first_reply_seconds=first_reply(await repo.first_replies(session, **bounds)),
        escalations=escalations(
            await repo.escalations_by_rule(session, **bounds),
            await repo.conversations_with_lead_message(session, **bounds),
        ),
        lead_quality=lead_quality(quality for quality, _fields, _tags in leads),
        funnel=funnel(stages),
        meetings_booked=meetings(stages),
        test_drives_booked=count_test_drives((fields, tags) for _quality, fields, tags in leads),
        model_cost=model_cost(
            period,
            await repo.cost_slots(session, **bounds),
            conversation_usd=await repo.conversation_cost(session, **bounds),
            messages=total_messages,
        ),
        enrichment=enrichment(
            period,
            await repo.enrichment_slots(session, **bounds),
            await repo.enrichment_errors(session, **bounds),
        ),
        crm_sync=crm_sync(await repo.crm_run_statuses(session, **bounds)),
    )
