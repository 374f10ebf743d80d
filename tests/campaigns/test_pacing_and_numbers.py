"""The pure rules of campaigns: the pace and the send window, the control refusals, the
numbers, and the message template."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from models.campaign_service import contact_of, render
from models.campaigns import (
    CampaignAction,
    CampaignSpec,
    CampaignStatus,
    RecipientFacts,
    SendWindow,
    campaign_numbers,
    control_refusal,
)
from models.common import Channel
from models.playbook import QuietHours
from models.tables import Lead
from workflows.campaign_pacing import next_send_at, send_interval

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday, 11:00 in Amsterdam


def test_the_interval_follows_the_rate() -> None:
    assert send_interval(50) == timedelta(seconds=72)
    assert send_interval(3600) == timedelta(seconds=1)
    with pytest.raises(ValueError):
        send_interval(0)


def test_the_first_message_goes_at_once_and_the_next_one_interval_after_the_last() -> None:
    assert next_send_at(T0, None, 60, None) == T0
    assert next_send_at(T0, T0, 60, None) == T0 + timedelta(minutes=1)
    # Late (a pause, a slow send): no catching up in a burst, but no extra wait either.
    assert next_send_at(T0 + timedelta(hours=2), T0, 60, None) == T0 + timedelta(hours=2)


def test_nothing_goes_out_in_the_quiet_hours() -> None:
    window = SendWindow(start=time(9, 0), end=time(17, 0), timezone="Europe/Amsterdam")
    quiet = window.as_quiet_hours()
    assert quiet == QuietHours(start=time(17, 0), end=time(9, 0), timezone="Europe/Amsterdam")
    evening = datetime(2026, 11, 30, 16, 59, 30, tzinfo=UTC)  # 17:59:30 in Amsterdam
    # the slot after 16:59:30 UTC falls at 18:00:30 local: moved to 09:00 local next morning
    due = next_send_at(evening, evening - timedelta(seconds=30), 60, quiet)
    assert due == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert next_send_at(T0, None, 60, quiet) == T0  # inside the window
    # a window over midnight (22:00-06:00 local) and an all-day one (start == end)
    night = SendWindow(start=time(22, 0), end=time(6, 0), timezone="UTC").as_quiet_hours()
    assert next_send_at(T0, None, 60, night) == datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    always = SendWindow(start=time(0, 0), end=time(0, 0)).as_quiet_hours()
    assert next_send_at(T0, None, 60, always) == T0
    assert SendWindow.of_quiet_hours(quiet) == window


def test_a_window_in_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="IANA"):
        SendWindow(start=time(9), end=time(17), timezone="Mars/Olympus")


@pytest.mark.parametrize(
    ("action", "status", "refused"),
    [
        (CampaignAction.PAUSE, CampaignStatus.RUNNING, None),
        (CampaignAction.PAUSE, CampaignStatus.PAUSED, "campaign is already paused"),
        (CampaignAction.RESUME, CampaignStatus.RUNNING, "campaign is not paused (it is running)"),
        (CampaignAction.RESUME, CampaignStatus.PAUSED, None),
        (CampaignAction.APPROVE, CampaignStatus.AWAITING_APPROVAL, None),
        (CampaignAction.APPROVE, CampaignStatus.RUNNING, "not awaiting approval"),
        (CampaignAction.PAUSE, CampaignStatus.AWAITING_APPROVAL, "approve it (or cancel it)"),
        (CampaignAction.CANCEL, CampaignStatus.AWAITING_APPROVAL, None),
        (CampaignAction.CANCEL, CampaignStatus.CANCELLED, "campaign is already cancelled"),
        (CampaignAction.RESUME, CampaignStatus.COMPLETED, "campaign is completed"),
    ],
)
def test_control_refusals(
    action: CampaignAction, status: CampaignStatus, refused: str | None
) -> None:
    reason = control_refusal(action, status)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


def _row(status: str, **kw: object) -> RecipientFacts:
    values: dict[str, object] = {
        "status": status,
        "skip_reason": None,
        "sent_at": T0,
        "turns": 0,
        "stage": "initial_outreach",
        "escalations": 0,
        "do_not_contact": False,
        "email_bounced_at": None,
        "quality": "COLD",
    }
    values.update(kw)
    return RecipientFacts(**values)  # type: ignore[arg-type]


def test_numbers_from_recipients_conversations_and_leads() -> None:
    later = T0 + timedelta(hours=1)
    numbers = campaign_numbers(
        [
            _row("queued", sent_at=None),
            _row("sending", sent_at=None),
            _row("skipped", skip_reason="do_not_contact", sent_at=None),
            _row("skipped", skip_reason="bounced", sent_at=None),
            _row("skipped", skip_reason="do_not_contact", sent_at=None),
            _row("sent"),  # no reply
            _row("sent", turns=2, stage="qualifying"),  # positive
            _row("sent", turns=1, stage="scheduling", escalations=1),  # positive, meeting
            _row("sent", turns=1, stage="closed", do_not_contact=True),  # replied: opted out
            _row("sent", turns=1, stage="awaiting_response", quality="WARM"),  # positive
            _row("sent", email_bounced_at=later),  # bounced after the send
            _row("sent", email_bounced_at=T0 - timedelta(days=1)),  # an old bounce: not ours
        ]
    )
    assert numbers.total == 12
    assert (numbers.queued, numbers.sent, numbers.skipped) == (2, 7, 3)
    assert numbers.skipped_by_reason == {"bounced": 1, "do_not_contact": 2}
    assert numbers.replied == 4
    assert numbers.positive_replies == 3
    assert numbers.escalations == 1
    assert numbers.meetings_booked == 1
    assert numbers.opted_out == 1
    assert numbers.bounced == 1
    assert numbers.reply_rate == round(4 / 7, 4)
    assert numbers.positive_reply_rate == round(3 / 7, 4)


def test_no_numbers_before_the_first_send() -> None:
    numbers = campaign_numbers([_row("queued", sent_at=None)])
    assert numbers.reply_rate == 0.0 and numbers.positive_reply_rate == 0.0


def _lead(**kw: object) -> Lead:
    values: dict[str, object] = {
        "id": "l1",
        "tenant_id": "t",
        "channel": "email",
        "address": "ann@acme.test",
    }
    values.update(kw)
    return Lead(**values)  # type: ignore[arg-type]


def test_placeholders_are_filled_per_lead_and_other_braces_kept() -> None:
    lead = _lead(name="Ann Smith", fields={"company": "Acme"})
    assert render("Hi {first_name} ({name}) of {company} {other}", lead) == (
        "Hi Ann (Ann Smith) of Acme {other}"
    )
    assert render("Hi {first_name}", _lead()) == "Hi "


def test_the_contact_on_the_campaign_channel() -> None:
    assert contact_of(_lead(email="Ann@Acme.test"), Channel.EMAIL) == "ann@acme.test"
    assert contact_of(_lead(channel="waha", address="31612@c.us"), Channel.EMAIL) is None
    assert contact_of(_lead(phone="+31612345678"), Channel.WAHA) == "31612345678@c.us"
    assert contact_of(_lead(phone="+31612345678"), Channel.WHATSAPP) == "31612345678"
    assert contact_of(_lead(), Channel.WHATSAPP) is None


def test_a_spec_names_one_source_and_a_campaign_channel() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        CampaignSpec()
    with pytest.raises(ValueError, match="exactly one"):
        CampaignSpec.model_validate({"job_id": "j", "leads": {}})
    with pytest.raises(ValueError, match="a campaign sends by"):
        CampaignSpec.model_validate({"job_id": "j", "channel": "chatwoot"})
    with pytest.raises(ValueError):
        CampaignSpec.model_validate({"job_id": "j", "rate_per_hour": 0})
