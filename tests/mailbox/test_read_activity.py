"""The `read_mailbox` activity against a real Dovecot: what it reads (only mail after the cursor,
or since the reader started), that it leaves \\Seen alone, that it stores the messages in the
webhook inbox for the sweeper (deduplicated by Message-ID), IDLE, UIDVALIDITY resyncs, and its
three kinds of failure.

The mail is routed here by a small recording router (From, Message-ID, Subject and body, as
InboundMessages): these tests are about the IMAP side; the real classification and threading
(models/email_in) run in tests/mailbox/test_mailbox_e2e.py."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import pytest
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.mailbox import (
    ERROR_LOGIN_REFUSED,
    ERROR_MISCONFIGURED,
    ERROR_UNAVAILABLE,
    MailboxActivities,
    UnreadableMail,
)
from models.common import Channel
from models.db import Database
from models.inbox_tables import InboxMessage
from models.mailbox import MailboxCursor, ReadMailboxInput, ReadMailboxResult, mailbox_identity
from models.messages import InboundMessage
from models.settings import Settings
from models.tables import utcnow
from models.tenant import ImapSettings, TenantSettings
from models.webhooks import ParsedWebhook
from tests.conftest import make_tenant
from tests.mailbox.conftest import Dovecot, mail

pytestmark = pytest.mark.timeout(180)


class Router:
    """Routes every mail as one lead message; `X-Test-Ignore: reason` mails are ignored and
    `X-Test-Garbage` ones are unreadable. Records what it was given."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []

    async def __call__(
        self,
        session: AsyncSession,
        tenant_id: str,
        raw: bytes,
        received_at: datetime,
        source: str,
    ) -> ParsedWebhook:
        assert source == "imap:INBOX"
        self.raw.append(raw)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        if message["X-Test-Garbage"]:
            raise UnreadableMail("no headers")
        if message["X-Test-Bug"]:
            raise KeyError("a bug in the routing code")
        if message["X-Test-Ignore"]:
            return ParsedWebhook.ignore(str(message["X-Test-Ignore"]))
        body = message.get_body(("plain",))
        return ParsedWebhook(
            messages=(
                InboundMessage(
                    tenant_id=tenant_id,
                    channel=Channel.EMAIL,
                    contact=parseaddr(str(message["From"]))[1],
                    provider_message_id=str(message["Message-ID"]),
                    text=body.get_content() if body is not None else "",
                    sent_at=received_at,
                    thread=str(message["Subject"]),
                ),
            )
        )

    def subjects(self) -> list[str]:
        return [str(message_from_bytes(r, policy=policy.default)["Subject"]) for r in self.raw]


class Reader:
    """The activity for one tenant whose imap settings point at a Dovecot user."""

    def __init__(self, db: Database, settings: Settings, tenant_id: str, imap: ImapSettings):
        self.db = db
        self.tenant_id = tenant_id
        self.imap = imap
        self.router = Router()
        self.activities = MailboxActivities(db, settings, route=self.router)
        self.heartbeats: list[Any] = []

    async def read(
        self,
        cursor: MailboxCursor | None = None,
        *,
        since: datetime | None = None,
        wait: float = 0,
        batch: int = 50,
        env: ActivityEnvironment | None = None,
    ) -> ReadMailboxResult:
        env = env or ActivityEnvironment()
        env.on_heartbeat = lambda *details: self.heartbeats.append(details)
        result: ReadMailboxResult = await env.run(
            self.activities.read_mailbox,
            ReadMailboxInput(
                tenant_id=self.tenant_id,
                cursor=cursor,
                since=since or utcnow() - timedelta(minutes=1),
                wait_seconds=wait,
                batch=batch,
            ),
        )
        return result

    async def inbox(self) -> list[InboundMessage]:
        async with self.db.session() as session:
            rows = (await session.exec(select(InboxMessage).order_by(col(InboxMessage.id)))).all()
        return [InboundMessage.model_validate_json(r.message) for r in rows]


@pytest.fixture
def make_reader(
    sqlite_db: Database, settings_factory: Callable[..., Settings], sqlite_url: str
) -> Callable[..., Any]:
    async def make(dovecot: Dovecot, **imap: Any) -> Reader:
        user = dovecot.user()
        settings_imap = dovecot.settings(user, **imap)
        tenant_id, _ = await make_tenant(sqlite_db, settings=TenantSettings(imap=settings_imap))
        reader = Reader(sqlite_db, settings_factory(sqlite_url), tenant_id, settings_imap)
        reader.user = user  # type: ignore[attr-defined]
        return reader

    return make


async def test_first_look_reads_only_what_arrived_since_the_start_then_after_the_cursor(
    dovecot: Dovecot, make_reader: Callable[..., Any]
) -> None:
    reader: Reader = await make_reader(dovecot)
    user = reader.user  # type: ignore[attr-defined]
    # Old mail (received yesterday) is never answered when a reader starts.
    await dovecot.append(user, mail(subject="old"), date=datetime.now(UTC) - timedelta(days=1))
    started = utcnow() - timedelta(seconds=5)
    await dovecot.append(user, mail(subject="new since the start"))
    first = await reader.read(since=started)
    assert first.configured and first.resynced and first.idle_supported
    assert reader.router.subjects() == ["new since the start"]
    assert first.cursor is not None and first.cursor.last_uid == 2
    assert first.cursor.mailbox == mailbox_identity(reader.imap)
    assert first.counts.read == 1 and first.counts.routed == 1

    await dovecot.append(user, mail(subject="reply 1"))
    await dovecot.append(user, mail(subject="reply 2"))
    second = await reader.read(first.cursor)
    assert not second.resynced and second.cursor is not None
    assert second.cursor.last_uid == 4 and second.cursor.uidvalidity == first.cursor.uidvalidity
    assert reader.router.subjects()[1:] == ["reply 1", "reply 2"]
    # Stored for the API's sweeper: due at once (no lease), in their order.
    inbox = await reader.inbox()
    assert [m.thread for m in inbox] == ["new since the start", "reply 1", "reply 2"]
    async with reader.db.session() as session:
        rows = (await session.exec(select(InboxMessage))).all()
    assert all(r.lease_until <= utcnow() for r in rows)
    # BODY.PEEK[]: the tenant's people still see the mails as unread.
    assert all(b"\\Seen" not in line for line in await dovecot.flags(user))
    # Nothing new: an immediate answer with the same cursor (no wait asked).
    third = await reader.read(second.cursor)
    assert third.counts.read == 0 and third.cursor is not None
    assert (third.cursor.uidvalidity, third.cursor.last_uid) == (second.cursor.uidvalidity, 4)


async def test_a_mail_read_twice_is_stored_once(
    dovecot: Dovecot, make_reader: Callable[..., Any]
) -> None:
    reader: Reader = await make_reader(dovecot)
    user = reader.user  # type: ignore[attr-defined]
    start = await reader.read()
    same = mail(subject="twice", message_id="<same-id@lead.example>")
    await dovecot.append(user, same)
    await dovecot.append(user, same)  # e.g. delivered again by the lead's server
    result = await reader.read(start.cursor)
    assert result.counts.read == 2 and result.counts.routed == 1
    assert result.counts.duplicates == 1
    # A retried look from an older cursor (a crash before the cursor was kept): no new row.
    again = await reader.read(start.cursor)
    assert again.counts.duplicates == 2 and again.counts.routed == 0
    assert [m.thread for m in await reader.inbox()] == ["twice"]


async def test_unreadable_ignored_and_unroutable_mails_are_skipped_with_reasons(
    dovecot: Dovecot, make_reader: Callable[..., Any]
) -> None:
    reader: Reader = await make_reader(dovecot)
    user = reader.user  # type: ignore[attr-defined]
    start = await reader.read()
    await dovecot.append(user, mail(headers={"X-Test-Garbage": "1"}))
    await dovecot.append(user, mail(headers={"X-Test-Ignore": "auto-reply (Auto-Submitted)"}))
    await dovecot.append(user, mail(headers={"X-Test-Bug": "1"}))
    await dovecot.append(user, mail(subject="fine"))
    result = await reader.read(start.cursor)
    assert result.counts.read == 4 and result.counts.ignored == 3 and result.counts.routed == 1
    assert "not a readable mail" in result.ignored[0]
    assert "auto-reply (Auto-Submitted)" in result.ignored[1]
    assert "could not be routed (KeyError" in result.ignored[2]
    assert result.cursor is not None and result.cursor.last_uid == 4  # never stuck on one


async def test_an_oversized_mail_is_skipped_unfetched(
    dovecot: Dovecot, make_reader: Callable[..., Any]
) -> None:
    reader: Reader = await make_reader(dovecot)
    user = reader.user  # type: ignore[attr-defined]
    reader.activities = MailboxActivities(
        reader.db, reader.activities._settings, route=reader.router, max_mail_bytes=2000
    )
    start = await reader.read()
    await dovecot.append(user, mail(subject="huge", body="x" * 5000))
    await dovecot.append(user, mail(subject="small"))
    result = await reader.read(start.cursor)
    assert reader.router.subjects() == ["small"]  # the big one was never fetched
    assert result.counts.read == 1 and result.counts.ignored == 1
    assert "over the 2000 byte limit" in result.ignored[0]


async def test_a_batch_reads_the_oldest_and_says_more_are_waiting(
    dovecot: Dovecot, make_reader: Callable[..., Any]
) -> None:
    reader: Reader = await make_reader(dovecot)
    user = reader.user  # type: ignore[attr-defined]
    start = await reader.read()
    for n in range(3):
        await dovecot.append(user, mail(subject=f"m{n}"))
    first = await reader.read(start.cursor, batch=2)
    assert first.more and first.cursor is not None and first.cursor.last_uid == 2
    # Heartbeats carry the cursor after each stored mail: a retry goes on from there.
    assert [h[0]["last_uid"] for h in reader.heartbeats if h and h[0]][-2:] == [1, 2]
    second = await reader.read(first.cursor, batch=2)
    assert not second.more and reader.router.subjects() == ["m0", "m1", "m2"]


async def test_a_retried_attempt_goes_on_from_its_last_heartbeat(
    dovecot: Dovecot, make_reader: Callable[..., Any]
) -> None:
    reader: Reader = await make_reader(dovecot)
    user = reader.user  # type: ignore[attr-defined]
    start = await reader.read()
    assert start.cursor is not None
    for n in range(2):
        await dovecot.append(user, mail(subject=f"m{n}"))
    env = ActivityEnvironment()
    resume = start.cursor.model_copy(update={"last_uid": start.cursor.last_uid + 1})
    env.info = dataclasses.replace(
        env.info, attempt=2, heartbeat_details=[resume.model_dump(mode="json")]
    )
    result = await reader.read(start.cursor, env=env)
    assert reader.router.subjects() == ["m1"] and result.counts.read == 1


async def test_idle_picks_up_a_mail_as_it_arrives(
    dovecot: Dovecot, make_reader: Callable[..., Any]
) -> None:
    reader: Reader = await make_reader(dovecot)
    user = reader.user  # type: ignore[attr-defined]
    start = await reader.read()
    reader.heartbeats.clear()
    # Waits in IDLE for up to ten minutes; the mail appended meanwhile ends the wait.
    look = asyncio.create_task(reader.read(start.cursor, wait=600))
    deadline = asyncio.get_running_loop().time() + 60
    while not reader.heartbeats and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)  # the activity is in IDLE once it heartbeats
    await dovecot.append(user, mail(subject="while idling"))
    result = await asyncio.wait_for(look, 120)
    assert reader.router.subjects() == ["while idling"] and result.counts.routed == 1
    assert result.idle_supported


async def test_an_idle_wait_ends_when_its_time_is_up(
    dovecot: Dovecot, make_reader: Callable[..., Any]
) -> None:
    reader: Reader = await make_reader(dovecot)
    start = await reader.read()
    result = await reader.read(start.cursor, wait=1.5)
    assert result.counts.read == 0 and result.cursor is not None and start.cursor is not None
    assert result.cursor.last_uid == start.cursor.last_uid
    assert result.cursor.synced_at > start.cursor.synced_at


async def test_a_server_without_idle_answers_at_once(
    dovecot_without_idle: Dovecot, make_reader: Callable[..., Any]
) -> None:
    reader: Reader = await make_reader(dovecot_without_idle)
    start = await reader.read()
    result = await reader.read(start.cursor, wait=600)  # would wait ten minutes with IDLE
    assert result.idle_supported is False and result.counts.read == 0
    assert result.poll_seconds == 5


async def test_a_changed_uidvalidity_resyncs_without_reading_old_mail_again(
    dovecot: Dovecot, make_reader: Callable[..., Any]
) -> None:
    reader: Reader = await make_reader(dovecot)
    user = reader.user  # type: ignore[attr-defined]
    await dovecot.append(user, mail(subject="before"), date=datetime.now(UTC) - timedelta(days=2))
    start = await reader.read()
    await dovecot.append(user, mail(subject="read"))
    read = await reader.read(start.cursor)
    assert read.cursor is not None and reader.router.subjects() == ["read"]
    await dovecot.append(user, mail(subject="in the gap"))
    dovecot.renumber(user)
    result = await reader.read(read.cursor)
    assert result.resynced and result.cursor is not None
    assert result.cursor.uidvalidity != read.cursor.uidvalidity
    # The gap's mail is read; the one read minutes before is read again (the resync starts a
    # little before the last look) and dropped as a duplicate; the old one is not read at all.
    assert reader.router.subjects() == ["read", "read", "in the gap"]
    assert result.counts.routed == 1 and result.counts.duplicates == 1
    assert [m.thread for m in await reader.inbox()] == ["read", "in the gap"]


async def test_a_refused_login_is_final(dovecot: Dovecot, make_reader: Callable[..., Any]) -> None:
    reader: Reader = await make_reader(dovecot, password="wrong")
    with pytest.raises(ApplicationError) as caught:
        await reader.read()
    assert caught.value.type == ERROR_LOGIN_REFUSED and caught.value.non_retryable
    assert "login refused" in caught.value.message


async def test_a_missing_folder_is_final(dovecot: Dovecot, make_reader: Callable[..., Any]) -> None:
    reader: Reader = await make_reader(dovecot, mailbox="Replies")
    with pytest.raises(ApplicationError) as caught:
        await reader.read()
    assert caught.value.type == ERROR_MISCONFIGURED and caught.value.non_retryable
    assert "Replies" in caught.value.message


async def test_an_unreachable_server_is_retryable(
    dovecot: Dovecot, make_reader: Callable[..., Any]
) -> None:
    from tests.mailbox.conftest import _free_port

    reader: Reader = await make_reader(dovecot, port=_free_port())  # nobody listens
    with pytest.raises(ApplicationError) as caught:
        await reader.read()
    assert caught.value.type == ERROR_UNAVAILABLE and not caught.value.non_retryable


async def test_a_guarded_address_is_refused(
    dovecot: Dovecot, make_reader: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_SSRF_ALLOWLIST", "[]")  # loopback is not allowed
    reader: Reader = await make_reader(dovecot)
    with pytest.raises(ApplicationError) as caught:
        await reader.read()
    assert caught.value.type == ERROR_MISCONFIGURED and "loopback" in caught.value.message


async def test_settings_without_an_enabled_mailbox_end_the_reader(
    sqlite_db: Database, settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    for tenant_settings in (
        TenantSettings(),
        TenantSettings(imap=ImapSettings(username="u", password="p", enabled=False)),
        TenantSettings(imap=ImapSettings(username="u")),  # no password: nothing to log in with
    ):
        tenant_id, _ = await make_tenant(sqlite_db, settings=tenant_settings)
        activities = MailboxActivities(sqlite_db, settings_factory(sqlite_url), route=Router())
        result = await ActivityEnvironment().run(
            activities.read_mailbox,
            ReadMailboxInput(tenant_id=tenant_id, since=utcnow()),
        )
        assert result == ReadMailboxResult(configured=False)
    gone = await ActivityEnvironment().run(
        activities.read_mailbox,
        ReadMailboxInput(tenant_id=f"t-{uuid.uuid4().hex[:6]}", since=utcnow()),
    )
    assert gone.configured is False
