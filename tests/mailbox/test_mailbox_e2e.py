"""End to end on loopback: a real Dovecot holds the lead's mail, the mailbox reader (its workflow
and activity on a worker of their own) reads it with models.email_in, the webhook inbox and the
API's sweeper deliver it to the conversation running on the real worker, and the answer leaves
through a real SMTP server (aiosmtpd). Bounces and auto-replies in the mailbox are not answered;
a mail that arrives while the reader idles is read without a poll (the poll interval is an
hour); a restarted mailbox worker reads nothing twice; settings saved through the API start and
stop the reader."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from email.utils import make_msgid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from activities.mailbox import MailboxActivities
from models import mailbox as mailbox_model
from models.mailbox import (
    MailboxStatus,
    ReaderState,
    mailbox_status,
    mailbox_workflow_id,
)
from models.settings import Settings
from models.tenant import TenantSettings
from tests.fakes.smtp import ReceivedEmail, SmtpServer
from tests.mailbox.conftest import PASSWORD, Dovecot, mail
from tests.stack import LiveStack, live_stack
from workflows.mailbox import MailboxReaderWorkflow

pytestmark = pytest.mark.timeout(300)

MAIL_FIXTURES = Path(__file__).parents[1] / "models" / "email_in" / "mail"
LEAD = "jan.lead@lead.example"


@contextlib.asynccontextmanager
async def mailbox_worker(stack: LiveStack, queue: str) -> AsyncIterator[Worker]:
    worker = Worker(
        stack.client,
        task_queue=queue,
        workflows=[MailboxReaderWorkflow],
        activities=[MailboxActivities(stack.db, stack.settings).read_mailbox],
    )
    async with worker:
        yield worker


async def status(stack: LiveStack) -> MailboxStatus | None:
    return await mailbox_status(stack.client, stack.tenant_id)


async def idling(stack: LiveStack) -> bool:
    """The reader's activity sits in IDLE: it has a cursor and heartbeats while it waits."""
    current = await status(stack)
    if current is None or current.cursor is None or current.idle_supported is not True:
        return False
    description = await stack.client.get_workflow_handle(
        mailbox_workflow_id(stack.tenant_id)
    ).describe()
    return any(
        a.HasField("last_heartbeat_time") and a.attempt >= 1
        for a in description.raw_description.pending_activities
    )


def answers(smtp: SmtpServer) -> list[ReceivedEmail]:
    return [m for m in smtp.messages if LEAD in m.rcpt_tos]


@pytest.fixture
def e2e_settings(settings_factory: Callable[..., Settings], sqlite_url: str) -> Settings:
    return settings_factory(sqlite_url, debounce_seconds=0.5)


async def test_replies_in_the_mailbox_are_answered_once_and_the_rest_is_not(
    temporal_client: Client,
    e2e_settings: Settings,
    dovecot: Dovecot,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = f"tq-mailbox-{uuid.uuid4().hex[:8]}"
    # Readers run on the conversations' queue in production; here on a worker of their own.
    monkeypatch.setattr(mailbox_model, "TASK_QUEUE", queue)
    user = dovecot.user()
    tenant_settings = TenantSettings(
        playbook="car_dealership", smtp=smtp_server.settings(from_address="sales@dealer.example")
    )
    async with live_stack(temporal_client, e2e_settings, tenant_settings=tenant_settings) as stack:
        async with mailbox_worker(stack, queue):
            # Saving the mailbox settings starts the reader. An hour between polls: anything
            # read within this test was read through IDLE.
            imap = dovecot.settings(user).model_dump(mode="json")
            imap.update(password=PASSWORD, poll_seconds=3600)
            response = await stack.http.patch(
                "/api/v1/settings", json={"imap": imap}, headers=stack.auth
            )
            assert response.status_code == 200, response.text
            assert response.json()["imap"]["password"] != PASSWORD  # masked
            await stack.wait_for(lambda: idling(stack), timeout=90, what="the reader idling")

            # A bounce and an auto-reply, then the lead's first mail.
            await dovecot.append(user, (MAIL_FIXTURES / "bounced_email.eml").read_bytes())
            await dovecot.append(user, (MAIL_FIXTURES / "auto_reply.eml").read_bytes())
            first_id = make_msgid(domain="lead.example")
            await dovecot.append(
                user,
                mail(
                    sender=f"Jan Lead <{LEAD}>",
                    subject="Volkswagen Golf",
                    body="Hi, is the Volkswagen Golf still available? Budget around 25k.",
                    message_id=first_id,
                ),
            )
            await stack.wait_for(lambda: answers(smtp_server), timeout=120, what="answer 1")
            first_answer = answers(smtp_server)[0].message
            assert first_answer["In-Reply-To"] == first_id
            # The reader read all three, in order: the two before the reply were ignored.
            read = await status(stack)
            assert read is not None and read.counts.read == 3
            assert read.counts.ignored == 2 and read.counts.routed == 1
            reasons = " | ".join(read.recent_ignored)
            assert "hard bounce" in reasons and "automatic reply" in reasons
            # The API shows the same.
            shown = (await stack.http.get("/api/v1/settings/mailbox", headers=stack.auth)).json()
            assert shown["running"] and shown["counts"]["ignored"] == 2

        # The mailbox worker goes away while the reader idles; the lead answers meanwhile.
        reply_id = make_msgid(domain="lead.example")
        await dovecot.append(
            user,
            mail(
                sender=f"Jan Lead <{LEAD}>",
                subject=f"Re: {first_answer['Subject']}",
                body="Great, could I come for a test drive on Saturday?",
                message_id=reply_id,
                in_reply_to=str(first_answer["Message-ID"]),
            ),
        )
        async with mailbox_worker(stack, queue):
            await stack.wait_for(
                lambda: len(answers(smtp_server)) >= 2, timeout=150, what="answer 2"
            )
            second_answer = answers(smtp_server)[1].message
            # In reply to the lead's latest mail.
            assert second_answer["In-Reply-To"] == reply_id
            assert "test drive" in second_answer.get_content()
            await stack.wait_for(lambda: idling(stack), timeout=90, what="idling again")

            # While it idles: one more mail, read at once (no poll for an hour).
            third_id = make_msgid(domain="lead.example")
            await dovecot.append(
                user,
                mail(
                    sender=f"Jan Lead <{LEAD}>",
                    subject=f"Re: {second_answer['Subject']}",
                    body="And do you take my old Polo in trade?",
                    message_id=third_id,
                    in_reply_to=str(second_answer["Message-ID"]),
                ),
            )
            await stack.wait_for(
                lambda: len(answers(smtp_server)) >= 3, timeout=120, what="answer 3"
            )
            assert answers(smtp_server)[2].message["In-Reply-To"] == third_id

            # Each mail read once, each reply answered once.
            final = await status(stack)
            assert final is not None and final.state == ReaderState.READING and final.connected
            assert final.counts.read == 5 and final.counts.routed == 3
            assert final.counts.duplicates == 0
            conversations = (
                await stack.http.get("/api/v1/conversations", headers=stack.auth)
            ).json()
            email_conversations = [
                c for c in conversations["conversations"] if c["channel"] == "email"
            ]
            assert len(email_conversations) == 1
            detail = (
                await stack.http.get(
                    f"/api/v1/conversations/{email_conversations[0]['id']}", headers=stack.auth
                )
            ).json()
            lead_texts = [m["text"] for m in detail["transcript"] if m["role"] == "lead"]
            assert len(lead_texts) == 3 and "test drive" in lead_texts[1]
            assert len(answers(smtp_server)) == 3

            # Disabling the mailbox in the settings stops the reader.
            response = await stack.http.patch(
                "/api/v1/settings", json={"imap": {"enabled": False}}, headers=stack.auth
            )
            assert response.status_code == 200, response.text
            handle = stack.client.get_workflow_handle(mailbox_workflow_id(stack.tenant_id))
            result = await asyncio.wait_for(handle.result(), 60)
            assert MailboxStatus.model_validate(result).state == ReaderState.STOPPED
            assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
            shown = (await stack.http.get("/api/v1/settings/mailbox", headers=stack.auth)).json()
            assert shown == {"running": False}


async def test_a_refused_login_shows_in_the_status_and_new_settings_fix_it(
    temporal_client: Client,
    e2e_settings: Settings,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = f"tq-mailbox-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(mailbox_model, "TASK_QUEUE", queue)
    user = dovecot.user()
    async with live_stack(temporal_client, e2e_settings, start_worker=False) as stack:
        async with mailbox_worker(stack, queue):
            imap = dovecot.settings(user).model_dump(mode="json")
            imap.update(password="not-the-password")
            response = await stack.http.patch(
                "/api/v1/settings", json={"imap": imap}, headers=stack.auth
            )
            assert response.status_code == 200, response.text

            async def refused() -> MailboxStatus | None:
                current = await status(stack)
                ok = current is not None and current.state == ReaderState.LOGIN_REFUSED
                return current if ok else None

            current = await stack.wait_for(refused, timeout=90, what="login refused")
            assert not current.connected and "AUTHENTICATIONFAILED" in (current.last_error or "")
            # Not retried in a loop: one activity attempt, the workflow waits for settings.
            history = await stack.client.get_workflow_handle(
                mailbox_workflow_id(stack.tenant_id)
            ).fetch_history()
            scheduled = [
                e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
            ]
            assert len(scheduled) == 1

            response = await stack.http.patch(
                "/api/v1/settings", json={"imap": {"password": PASSWORD}}, headers=stack.auth
            )
            assert response.status_code == 200, response.text

            async def reading() -> bool:
                current = await status(stack)
                return current is not None and current.connected and current.cursor is not None

            await stack.wait_for(reading, timeout=90, what="reading after new settings")
