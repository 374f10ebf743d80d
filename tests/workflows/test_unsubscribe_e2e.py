"""End to end: a campaign's e-mail conversation, started on the real dev server with the real
worker (the built-in plugin's SMTP channel, as `leadflow worker` builds it), sends its outreach
to a real SMTP server (aiosmtpd) with List-Unsubscribe and one-click List-Unsubscribe-Post; the
link taken from that header, POSTed as a mailbox provider does (no key, no cookie), makes the
lead do-not-contact and closes the conversation; a later outreach to the lead is refused by the
API and, started as a campaign starts it, sends nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from models.common import Channel, Stage
from models.conversation import (
    ConversationInput,
    OutreachRequest,
    conversation_workflow_id,
    lead_id_for,
)
from models.settings import Settings, get_settings
from models.task_queues import CONVERSATIONS
from models.tenant import TenantSettings
from tests.fakes.smtp import SmtpServer
from tests.stack import LiveStack, live_stack

pytestmark = pytest.mark.timeout(240)

CONTACT = "ana.lima@example.com"
CAMPAIGN = "cmp-spring-2026"
SUBJECT = "Your Volkswagen Golf"
OUTREACH = "Hello Ana, the Golf GTE you asked about at the fair is in stock. Shall we book a drive?"


@pytest.fixture
def public_url_of_the_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Sets LEADFLOW_PUBLIC_URL for the worker's channel (it reads the process settings, as
    `leadflow worker` does) once the API's address is known."""

    def set_to(url: str) -> None:
        monkeypatch.setenv("LEADFLOW_PUBLIC_URL", url)
        get_settings.cache_clear()

    yield set_to
    get_settings.cache_clear()
    monkeypatch.delenv("LEADFLOW_PUBLIC_URL", raising=False)
    get_settings.cache_clear()


def _campaign_start(tenant_id: str) -> ConversationInput:
    """What a campaign starts per lead: an outreach with its text, subject and campaign."""
    return ConversationInput.new(
        tenant_id=tenant_id,
        channel=Channel.EMAIL,
        contact=CONTACT,
        contact_name="Ana Lima",
        campaign_id=CAMPAIGN,
        subject=SUBJECT,
        outreach=OutreachRequest(text=OUTREACH),
        debounce_seconds=0.3,
    )


async def _lead(stack: LiveStack, lead_id: str) -> Any:
    response = await stack.http.get(f"/api/v1/leads/{lead_id}", headers=stack.auth)
    return response.json() if response.status_code == 200 else None


async def test_campaign_mail_unsubscribes_in_one_click(
    temporal_client: Client,
    settings_factory: Any,
    sqlite_url: str,
    public_url_of_the_worker: Any,
) -> None:
    settings: Settings = settings_factory(sqlite_url)
    with SmtpServer() as smtp:
        async with live_stack(
            temporal_client,
            settings,
            tenant_settings=TenantSettings(smtp=smtp.settings()),
            queues=[CONVERSATIONS],
            start_worker=False,
        ) as stack:
            public_url_of_the_worker(stack.api_url)
            await stack.start_worker()
            tid = stack.tenant_id
            conv_id = conversation_workflow_id(tid, Channel.EMAIL, CONTACT)
            lead_id = lead_id_for(tid, Channel.EMAIL, CONTACT)
            stack.started.append(conv_id)
            handle = await temporal_client.start_workflow(
                "ConversationWorkflow", _campaign_start(tid), id=conv_id, task_queue=CONVERSATIONS
            )

            # The mail as the SMTP server received it.
            await stack.wait_for(lambda: smtp.messages, timeout=60, what="the campaign mail")
            (mail,) = smtp.messages
            assert mail.rcpt_tos == (CONTACT,)
            message = mail.message
            assert message["Subject"] == SUBJECT
            assert OUTREACH in message.get_content()
            header = message["List-Unsubscribe"]
            assert header.startswith(f"<{stack.api_url}/unsubscribe/") and header.endswith(">")
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert message["Auto-Submitted"] == "auto-generated"
            head = mail.raw.split(b"\r\n\r\n", 1)[0]
            assert f"List-Unsubscribe: {header}".encode() in head.split(b"\r\n")
            url = header[1:-1]

            lead = await stack.wait_for(lambda: _lead(stack, lead_id), what="the lead recorded")
            assert lead["do_not_contact"] is False

            async with httpx.AsyncClient(timeout=30) as provider:  # no key, no cookie
                # A link scanner opens it: nothing happens.
                page = await provider.get(url)
                assert page.status_code == 200 and '<form method="post">' in page.text
                # A changed link: refused, nothing happens.
                tampered = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
                refused = await provider.post(tampered, data={"List-Unsubscribe": "One-Click"})
                assert refused.status_code == 404, refused.text
                assert (await _lead(stack, lead_id))["do_not_contact"] is False

                # The mailbox provider's one-click POST (RFC 8058).
                done = await provider.post(url, data={"List-Unsubscribe": "One-Click"})
                assert done.status_code == 200, done.text

            lead = await _lead(stack, lead_id)
            assert lead["do_not_contact"] is True
            # The running conversation was closed by it; its result says so.
            closed: Any = await handle.result()
            assert closed["stage"] == Stage.CLOSED.value
            conversation = (
                await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
            ).json()
            texts = [line["text"] for line in conversation["transcript"]]
            assert (
                "Do-not-contact set by the recipient (List-Unsubscribe): "
                f"unsubscribed via List-Unsubscribe (campaign {CAMPAIGN})"
            ) in texts

            # A later outreach: the API refuses it ...
            outreach = await stack.http.post(
                "/api/v1/conversations",
                headers=stack.auth,
                json={"channel": "email", "contact": CONTACT, "text": "One more offer"},
            )
            assert outreach.status_code == 409, outreach.text
            assert outreach.json()["error"] == "do not contact"
            # ... and started as a campaign starts it, the conversation sends nothing.
            again = await temporal_client.start_workflow(
                "ConversationWorkflow", _campaign_start(tid), id=conv_id, task_queue=CONVERSATIONS
            )
            result: Any = await again.result()
            assert result["stage"] == Stage.CLOSED.value
            assert any("outreach not sent" in entry["text"] for entry in result["transcript"]), (
                result["transcript"]
            )
            assert len(smtp.messages) == 1
