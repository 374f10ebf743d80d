"""End to end on loopback: a campaign created through the real API is sent by the real
CampaignWorkflow and its real activities, which start real outreach conversations; the real
conversation worker sends their first e-mails through SMTP to a real aiosmtpd server. Its own
Worker runs the campaign (the coordinator registers it in the worker process)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from email.utils import parseaddr
from itertools import pairwise
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.client import Client

from models.campaign_tables import CampaignRecipient
from models.settings import Settings
from models.tables import Lead, utcnow
from models.task_queues import CONVERSATIONS, ENRICHMENT
from models.tenant import TenantSettings
from tests.campaigns.seed import Person, campaign_worker, seed_job
from tests.fakes.smtp import SmtpServer
from tests.fakes.waha import FakeWaha
from tests.stack import LiveStack, live_stack

pytestmark = pytest.mark.timeout(300)

ALWAYS = {"start": "00:00", "end": "00:00", "timezone": "UTC"}


@contextlib.asynccontextmanager
async def stack_with_smtp(
    temporal_client: Client,
    settings: Settings,
    smtp: SmtpServer,
    queues: tuple[str, ...] = (CONVERSATIONS,),
) -> AsyncIterator[LiveStack]:
    async with live_stack(
        temporal_client,
        settings,
        tenant_settings=TenantSettings(smtp=smtp.settings()),
        queues=list(queues),
    ) as stack:
        yield stack


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], sqlite_url: str) -> Settings:
    return settings_factory(sqlite_url, debounce_seconds=0.5)


async def _campaign(stack: LiveStack, campaign_id: str) -> dict[str, Any]:
    response = await stack.http.get(f"/api/v1/campaigns/{campaign_id}", headers=stack.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _recipients(stack: LiveStack, campaign_id: str) -> list[CampaignRecipient]:
    async with stack.db.session() as session:
        rows = await session.exec(
            select(CampaignRecipient)
            .where(CampaignRecipient.campaign_id == campaign_id)
            .order_by(col(CampaignRecipient.position))
        )
        return list(rows.all())


def _to(smtp: SmtpServer) -> list[str]:
    return [parseaddr(str(mail.message["To"]))[1] for mail in smtp.messages]


async def test_campaign_mails_arrive_at_the_pace_with_their_headers_and_skip_who_must_not_get_one(
    temporal_client: Client, settings: Settings, smtp_server: SmtpServer
) -> None:
    # The worker process's own registration (activities/plugin.py) runs the campaign here: the
    # enrichment queue of the stack's worker, no test worker.
    async with stack_with_smtp(
        temporal_client, settings, smtp_server, queues=(CONVERSATIONS, ENRICHMENT)
    ) as stack:
        job_id, (_, _, _, dan, _) = await seed_job(
            stack.db,
            stack.tenant_id,
            [
                Person("Ann Ames", "ann@acme.test", company="Acme"),
                Person("Bob Bell", "bob@bell.test", company="Bell", do_not_contact=True),
                Person("Cid Cole", "cid@cole.test", company="Cole"),
                Person("Dan Dorn", "dan@dorn.test", company="Dorn"),
                Person("Eve Eng", "eve@eng.test", company="Eng"),
            ],
        )
        async with stack.db.session() as session:  # Dan's address bounced hard before
            lead = await session.get(Lead, dan)
            assert lead is not None
            lead.email_bounced_at = utcnow() - timedelta(days=1)
            lead.email_bounce = "550 5.1.1 user unknown"
            session.add(lead)
            await session.commit()

        rate = 1800  # one every 2 s
        response = await stack.http.post(
            "/api/v1/campaigns",
            json={"job_id": job_id, "rate_per_hour": rate, "send_window": ALWAYS},
            headers=stack.auth,
        )
        assert response.status_code == 201, response.text
        campaign_id = response.json()["id"]

        async def completed() -> dict[str, Any] | None:
            body = await _campaign(stack, campaign_id)
            return body if body["status"] == "completed" else None

        body = await stack.wait_for(completed, timeout=120, interval=0.3, what="the campaign")
        await stack.wait_for(lambda: len(smtp_server.messages) >= 3, timeout=60, what="3 mails")

        # The three who may be written to got one mail each, in the campaign's order.
        assert _to(smtp_server) == ["ann@acme.test", "cid@cole.test", "eve@eng.test"]
        for mail, company in zip(smtp_server.messages, ["Acme", "Cole", "Eng"], strict=True):
            message = mail.message
            assert message["From"] == "Sales <sales@dealer.example>"
            assert message["Subject"] == f"An idea for {company}"
            assert str(message["Message-ID"]).endswith("@dealer.example>")
            assert f"we wrote this for {company}." in message.get_content()
            # Campaign mail: one-click unsubscribe (RFC 8058) and no autoresponder loops.
            assert "/unsubscribe/" in str(message["List-Unsubscribe"])
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert message["Auto-Submitted"] == "auto-generated"
        assert len({str(m.message["Message-ID"]) for m in smtp_server.messages}) == 3

        numbers = body["numbers"]
        assert (numbers["sent"], numbers["skipped"], numbers["queued"]) == (3, 2, 0)
        assert numbers["skipped_by_reason"] == {"bounced": 1, "do_not_contact": 1}

        # The pace: each first message went at least one interval (2 s) after the one before.
        sent_at = [r.sent_at for r in await _recipients(stack, campaign_id) if r.sent_at]
        assert len(sent_at) == 3
        interval = timedelta(seconds=3600 / rate)
        assert all(b - a >= interval for a, b in pairwise(sent_at)), sent_at


async def test_a_campaign_paused_and_resumed_across_a_worker_restart_sends_each_mail_once(
    temporal_client: Client, settings: Settings, smtp_server: SmtpServer
) -> None:
    people = [Person(f"P{n} Test", f"p{n}@acme.test", company=f"C{n}") for n in range(4)]
    async with stack_with_smtp(temporal_client, settings, smtp_server) as stack:
        job_id, _ = await seed_job(stack.db, stack.tenant_id, people)
        async with campaign_worker(stack.client, stack.db, settings):
            response = await stack.http.post(
                "/api/v1/campaigns",
                json={"job_id": job_id, "rate_per_hour": 1200, "send_window": ALWAYS},
                headers=stack.auth,
            )
            assert response.status_code == 201, response.text
            campaign_id = response.json()["id"]
            await stack.wait_for(lambda: smtp_server.messages, timeout=60, what="the first mail")
            paused = await stack.http.post(
                f"/api/v1/campaigns/{campaign_id}/pause", headers=stack.auth
            )
            assert paused.status_code == 200 and paused.json()["status"] == "paused"
            sent_before = paused.json()["numbers"]["sent"]
            assert 1 <= sent_before < 4
        # Both workers go away (the campaign's and the conversations'), then come back.
        await stack.stop_worker()
        await stack.start_worker()
        async with campaign_worker(stack.client, stack.db, settings):
            assert (await _campaign(stack, campaign_id))["status"] == "paused"
            resumed = await stack.http.post(
                f"/api/v1/campaigns/{campaign_id}/resume", headers=stack.auth
            )
            assert resumed.status_code == 200 and resumed.json()["status"] == "running"

            async def completed() -> dict[str, Any] | None:
                body = await _campaign(stack, campaign_id)
                return body if body["status"] == "completed" else None

            body = await stack.wait_for(completed, timeout=120, interval=0.3, what="the end")
            await stack.wait_for(lambda: len(smtp_server.messages) >= 4, timeout=60, what="mails")
            # Every recipient is sent, each in its own conversation whose first message went
            # out once: the outbox holds one row per conversation.
            assert body["numbers"]["sent"] == 4
            recipients = await _recipients(stack, campaign_id)
            assert all(r.status == "sent" for r in recipients)
            assert len({r.conversation_id for r in recipients}) == 4
            from models.tables import OutboxMessage

            async with stack.db.session() as session:
                outbox = (
                    await session.exec(
                        select(OutboxMessage).where(OutboxMessage.tenant_id == stack.tenant_id)
                    )
                ).all()
            assert Counter(row.conversation_id for row in outbox) == Counter(
                {r.conversation_id: 1 for r in recipients}
            )
        assert Counter(_to(smtp_server)) == Counter({p.email: 1 for p in people})


async def test_a_whatsapp_campaign_writes_only_to_opted_in_leads_through_waha(
    temporal_client: Client, settings: Settings, fake_waha: FakeWaha
) -> None:
    async with (
        live_stack(
            temporal_client,
            settings,
            tenant_settings=TenantSettings(waha=fake_waha.settings()),
            queues=[CONVERSATIONS],
        ) as stack,
        campaign_worker(stack.client, stack.db, settings),
    ):
        job_id, (ann, _) = await seed_job(
            stack.db,
            stack.tenant_id,
            [
                Person("Ann Ames", "ann@acme.test", phone="+31611111111", company="Acme"),
                Person("Bob Bell", "bob@bell.test", phone="+31622222222", company="Bell"),
            ],
        )
        opt_in = await stack.http.post(
            "/api/v1/campaigns/whatsapp-opt-ins",
            json={"lead_id": ann, "source": "showroom form"},
            headers=stack.auth,
        )
        assert opt_in.status_code == 201, opt_in.text
        response = await stack.http.post(
            "/api/v1/campaigns",
            json={
                "job_id": job_id,
                "channel": "waha",
                "message": {"text": "Hi {first_name}, a test drive at {company}?"},
                "rate_per_hour": 3600,
                "send_window": ALWAYS,
            },
            headers=stack.auth,
        )
        assert response.status_code == 201, response.text
        assert response.json()["excluded"] == {"no_opt_in": 1}
        campaign_id = response.json()["id"]

        async def completed() -> dict[str, Any] | None:
            body = await _campaign(stack, campaign_id)
            return body if body["status"] == "completed" else None

        body = await stack.wait_for(completed, timeout=120, interval=0.3, what="the campaign")
        assert body["numbers"]["sent"] == 1
        await stack.wait_for(lambda: fake_waha.sent, timeout=60, what="the WhatsApp message")
        [message] = fake_waha.sent
        assert message["chatId"] == "31611111111@c.us"
        assert message["text"] == "Hi Ann, a test drive at Acme?"
