"""Mail in, end to end on loopback: an e-mail outreach goes out through a real SMTP server
(aiosmtpd), the lead's reply comes back through a provider's inbound-parse webhook (Postmark)
from another address of theirs, threads into the outreach's conversation by In-Reply-To and is
answered by SMTP in the lead's thread; a bounce (Mailgun) and an automatic reply (SendGrid) are
acknowledged and never reach the conversation, and the hard bounce marks the lead. The real
API, worker and Temporal dev server throughout."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from models.email_tables import EmailThread
from models.settings import Settings
from models.tables import Lead
from models.task_queues import CONVERSATIONS
from models.tenant import InboundEmailSettings, TenantSettings
from tests.api.webhooks.test_inbound_mail import MAIL, basic, mailgun_sign, multipart
from tests.fakes.smtp import SmtpServer
from tests.stack import LiveStack, live_stack

LEAD = "jan@example.nl"
MAILGUN_KEY = "mailgun-key-e2e"
PASSWORD = "inbound-e2e"


async def _inbound_signals(stack: LiveStack, workflow_id: str) -> int:
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    return sum(
        1
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and event.workflow_execution_signaled_event_attributes.signal_name == "inbound"
    )


async def _thread_row(stack: LiveStack, message_id: str) -> EmailThread | None:
    async with stack.db.session() as session:
        return await session.get(EmailThread, (stack.tenant_id, message_id))


async def _lead(stack: LiveStack) -> Lead | None:
    async with stack.db.session() as session:
        statement = select(Lead).where(Lead.tenant_id == stack.tenant_id, Lead.address == LEAD)
        return (await session.exec(statement)).first()


def _reply(ours: str) -> dict[str, Any]:
    """The lead's answer as Postmark posts it (the wire sample's shape), from their work
    address, naming our outreach in In-Reply-To/References, with Gmail's Dutch quote below."""
    return {
        "FromName": "Jan de Vries",
        "From": "j.devries@work.example",
        "FromFull": {"Email": "j.devries@work.example", "Name": "Jan de Vries"},
        "To": "sales@dealer.example",
        # The lead changed the subject: the answer keeps theirs.
        "Subject": "Re: Golf TDI, proefrit zaterdag",
        "MessageID": "5d0f6c2e-0000-4000-8000-000000000001",
        "Date": "Tue, 10 Jun 2025 09:15:00 +0200",
        "TextBody": "Could I come for a test drive on Saturday?\n\n"
        "Op di 10 jun 2025 om 08:00 schreef Sales <sales@dealer.example>:\n\n"
        "> Hallo Jan, uw Golf staat klaar.\n",
        "HtmlBody": "",
        "Headers": [
            {"Name": "Message-ID", "Value": "<CAJan-reply-1@mail.gmail.com>"},
            {"Name": "In-Reply-To", "Value": ours},
            {"Name": "References", "Value": ours},
        ],
    }


async def test_outreach_reply_is_threaded_and_answered_bounce_and_auto_reply_are_not(
    temporal_client: Client, settings_factory: Any, sqlite_url: str, smtp_server: SmtpServer
) -> None:
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.5)
    tenant_settings = TenantSettings(
        playbook="car_dealership",
        smtp=smtp_server.settings(),
        inbound_email=InboundEmailSettings(
            mailgun_signing_key=MAILGUN_KEY, basic_auth_password=PASSWORD
        ),
        allow_unsigned_webhooks=False,
    )
    async with live_stack(
        temporal_client, settings, tenant_settings=tenant_settings, queues=[CONVERSATIONS]
    ) as stack:
        # 1. E-mail outreach: the first mail goes out by SMTP and its Message-ID is recorded.
        started = await stack.http.post(
            "/api/v1/conversations",
            json={"channel": "email", "contact": LEAD, "text": "Hallo Jan, uw Golf staat klaar."},
            headers=stack.auth,
        )
        assert started.status_code == 202, started.text
        conv_id = started.json()["id"]
        await stack.wait_for(lambda: smtp_server.messages, what="the outreach mail", timeout=60)
        outreach = smtp_server.messages[0].message
        ours = str(outreach["Message-ID"])
        assert smtp_server.messages[0].rcpt_tos == (LEAD,)
        row = await stack.wait_for(lambda: _thread_row(stack, ours), what="the recorded id")
        assert (row.contact, row.conversation_id) == (LEAD, conv_id)

        # 2. The lead answers from another address; Postmark posts it.
        url = f"/webhooks/postmark/{stack.tenant_id}"
        response = await stack.http.post(
            url,
            content=json.dumps(_reply(ours)),
            headers={"Content-Type": "application/json", **basic(PASSWORD)},
        )
        assert response.status_code == 202, response.text
        (delivered,) = response.json()["delivered"]
        assert delivered["workflow_id"] == conv_id  # threaded into the outreach's conversation

        # 3. leadflow answers by SMTP, in the lead's thread, to the conversation's address.
        await stack.wait_for(
            lambda: len(smtp_server.messages) >= 2, what="the AI's answer", timeout=90
        )
        answer = smtp_server.messages[1]
        assert answer.rcpt_tos == (LEAD,)
        assert answer.message["In-Reply-To"] == "<CAJan-reply-1@mail.gmail.com>"
        assert answer.message["References"] == "<CAJan-reply-1@mail.gmail.com>"
        assert answer.message["Subject"] == "Re: Golf TDI, proefrit zaterdag"
        state = await stack.client.get_workflow_handle(conv_id).query("state")
        lead_texts = [e["text"] for e in state["transcript"] if e["role"] == "lead"]
        assert lead_texts == ["Could I come for a test drive on Saturday?"]  # quote stripped
        await stack.wait_for(lambda: _thread_row(stack, str(answer.message["Message-ID"])))

        # 4. A hard bounce of our outreach (Mailgun, raw MIME): acknowledged, never delivered,
        #    and the lead's address is marked.
        bounce = (MAIL / "bounced_email.eml").read_text()
        bounce = bounce.replace("<0a1b2c3d4e5f@discourse.org>", ours).replace(
            "linux-admin@b-s-c.co.jp", LEAD
        )
        response = await stack.http.post(
            f"/webhooks/mailgun/{stack.tenant_id}",
            content=urlencode(mailgun_sign(MAILGUN_KEY, {"body-mime": bounce})),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["delivered"] == []
        assert "a hard bounce (5.1.1); 1 lead(s) marked" in response.json()["ignored"][0]
        lead = await _lead(stack)
        assert lead is not None and lead.email_bounced_at is not None
        assert lead.email_bounce is not None and lead.email_bounce.startswith("5.1.1 ")

        # 5. An out-of-office answer to our reply (SendGrid, raw MIME): acknowledged, ignored.
        auto = (
            "From: Jan de Vries <jan@example.nl>\r\nTo: sales@dealer.example\r\n"
            "Subject: Automatisch antwoord: Re: Your enquiry\r\n"
            "Message-ID: <oof-jan-1@example.nl>\r\n"
            f"In-Reply-To: {answer.message['Message-ID']}\r\n"
            "Auto-Submitted: auto-replied\r\n\r\nIk ben afwezig tot maandag.\r\n"
        )
        body, headers = multipart({"email": auto, "to": "sales@dealer.example"})
        response = await stack.http.post(
            f"/webhooks/sendgrid/{stack.tenant_id}",
            content=body,
            headers={**headers, **basic(PASSWORD)},
        )
        assert response.status_code == 200, response.text
        assert response.json()["delivered"] == []
        assert "an automatic reply (Auto-Submitted: auto-replied)" in response.json()["ignored"][0]

        # Neither reached the conversation: its history holds the one inbound signal, and it
        # has nothing pending (no sleep: the webhooks answered without delivering anything).
        assert await _inbound_signals(stack, conv_id) == 1
        state = await stack.client.get_workflow_handle(conv_id).query("state")
        assert state["pending_messages"] == 0
        assert [e["role"] for e in state["transcript"]] == ["ai", "lead", "ai"]
        assert len(smtp_server.messages) == 2
