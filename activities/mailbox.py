"""The mailbox reader's one activity: look at the tenant's IMAP folder, hand every new mail to
`models.email_in` (parse, classify, thread) and store the resulting messages in the webhook
inbox, then — with nothing new and a server that has IDLE — wait there for mail.

It reads the tenant's settings itself (no password in any history) and answers counts and the new
cursor only (no mail in any history). Progress is heartbeated: a retried attempt goes on after
the last mail it stored. A mail stored twice anyway (a crash between storing and heartbeating) is
dropped by the inbox's Message-ID dedupe, so the reader needs no exactly-once of its own.

Which mails: those with a UID above the cursor's. Without a usable cursor, those whose
INTERNALDATE says they arrived since a moment, then the cursor is set past the folder's last
UID, so old mail is never answered:
- first start: since the reader started (`since`);
- another mailbox, or UIDVALIDITY changed (every stored UID is void, RFC 3501 2.3.1.1): since
  RESYNC_SLACK before the reader last looked. Mail of the gap is read; what it had read already
  in those minutes is read again and dropped by the inbox's Message-ID dedupe (kept 7 days),
  so nothing is delivered twice and nothing that arrived meanwhile is missed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.imap_client import (
    ImapConnection,
    ImapLoginRefused,
    ImapMisconfigured,
    ImapUnavailable,
    open_mailbox,
)
from models.db import Database
from models.email_in.parse import parse_mime
from models.email_in.service import route_email
from models.mailbox import (
    SOURCE,
    MailboxCounts,
    MailboxCursor,
    ReadMailboxInput,
    ReadMailboxResult,
    mailbox_identity,
    reader_wanted,
)
from models.netguard import UrlGuard
from models.repo import inbox as inbox_repo
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.tables import utcnow
from models.tenant import ImapSettings
from models.webhooks import ParsedWebhook

log = logging.getLogger("leadflow.mailbox")

ERROR_LOGIN_REFUSED = "ImapLoginRefused"
ERROR_MISCONFIGURED = "ImapMisconfigured"
ERROR_UNAVAILABLE = "ImapUnavailable"
MAX_MAIL_BYTES = 25 * 1024 * 1024  # larger mails are ignored (a reply is never that big)
HEARTBEAT_SECONDS = 5.0  # while idling; also after every mail
IGNORED_SHOWN = 5
MAX_RESYNC_MAILS = 1000  # a resync reads at most the newest this many mails since `since`
RESYNC_SLACK = timedelta(minutes=10)  # server clock skew and whole-second INTERNALDATEs

# (session, tenant, raw mail, when the server received it, source) -> what the mail amounts to.
MailRouter = Callable[[AsyncSession, str, bytes, datetime, str], Awaitable[ParsedWebhook]]


class UnreadableMail(ValueError):
    """Raised by a router for bytes that are no mail: the mail is ignored, never retried."""


async def route_with_email_in(
    session: AsyncSession, tenant_id: str, raw: bytes, received_at: datetime, source: str
) -> ParsedWebhook:
    """The production router: models.email_in's parser and router (the webhooks' too)."""
    try:
        email = parse_mime(raw)
    except ValueError as exc:
        raise UnreadableMail(str(exc)) from exc
    return await route_email(
        session, tenant_id=tenant_id, email=email, received_at=received_at, source=source
    )


class MailboxActivities:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        route: MailRouter | None = None,
        max_mail_bytes: int = MAX_MAIL_BYTES,
    ) -> None:
        self._db = db
        self._max_mail_bytes = max_mail_bytes
        self._settings = settings
        self._route = route or route_with_email_in
        self._guard = UrlGuard(settings.ssrf_allowlist)

    async def _imap_settings(self, tenant_id: str) -> ImapSettings | None:
        async with self._db.session() as session:
            tenant = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
        if tenant is None:
            return None
        secret = self._settings.secret_key.get_secret_value()
        imap = tenant_repo.tenant_settings(tenant, secret_key=secret).imap
        return imap if reader_wanted(imap) else None

    @activity.defn
    async def read_mailbox(self, input: ReadMailboxInput) -> ReadMailboxResult:
        """Read the mails after the cursor (at most `batch`); with none and IDLE, wait for one
        up to `wait_seconds` and read it. Raises ApplicationError typed ImapLoginRefused /
        ImapMisconfigured (non-retryable) or ImapUnavailable (retryable)."""
        imap = await self._imap_settings(input.tenant_id)
        if imap is None:
            return ReadMailboxResult(configured=False)
        cursor = input.cursor
        details = activity.info().heartbeat_details
        if details:  # a retried attempt: go on after what the last one stored
            cursor = MailboxCursor.model_validate(details[0])
        try:
            async with await open_mailbox(imap, self._guard) as imap_connection:
                return await _Read(self, imap_connection, imap, input, cursor).run()
        except ImapLoginRefused as exc:
            raise ApplicationError(str(exc), type=ERROR_LOGIN_REFUSED, non_retryable=True) from exc
        except ImapMisconfigured as exc:
            raise ApplicationError(str(exc), type=ERROR_MISCONFIGURED, non_retryable=True) from exc
        except ImapUnavailable as exc:
            raise ApplicationError(str(exc), type=ERROR_UNAVAILABLE) from exc


class _Read:
    """One activity call's reading, with its running cursor and counts."""

    def __init__(
        self,
        owner: MailboxActivities,
        imap_connection: ImapConnection,
        imap: ImapSettings,
        input: ReadMailboxInput,
        cursor: MailboxCursor | None,
    ) -> None:
        self.owner = owner
        self.imap_connection = imap_connection
        self.imap = imap
        self.input = input
        self.cursor = cursor
        self.counts = MailboxCounts()
        self.ignored: list[str] = []
        self.identity = mailbox_identity(imap)

    async def run(self) -> ReadMailboxResult:
        selected = self.imap_connection.selected
        assert selected is not None
        looked_at = utcnow()
        usable = (
            self.cursor is not None
            and self.cursor.mailbox == self.identity
            and self.cursor.uidvalidity == selected.uidvalidity
        )
        if not usable:
            await self._resync(selected.uidvalidity, selected.uidnext, looked_at)
            return self._result(more=False, resynced=True)
        more = await self._read_new(looked_at)
        if more or self.counts.read or self.input.wait_seconds <= 0:
            return self._result(more=more)
        if not self.imap_connection.idle_supported:
            return self._result(more=False)
        arrived = await self.imap_connection.idle(
            self.input.wait_seconds, self._heartbeat, HEARTBEAT_SECONDS
        )
        if arrived:
            more = await self._read_new(utcnow())
        else:
            self._advance_time(utcnow())
        return self._result(more=more)

    def _result(self, *, more: bool, resynced: bool = False) -> ReadMailboxResult:
        return ReadMailboxResult(
            configured=True,
            cursor=self.cursor,
            counts=self.counts,
            idle_supported=self.imap_connection.idle_supported,
            poll_seconds=self.imap.poll_seconds,
            more=more,
            resynced=resynced,
            ignored=tuple(self.ignored[-IGNORED_SHOWN:]),
        )

    async def _heartbeat(self) -> None:
        activity.heartbeat(self.cursor.model_dump(mode="json") if self.cursor else None)

    def _advance_time(self, at: datetime) -> None:
        if self.cursor is not None:
            self.cursor = self.cursor.model_copy(update={"synced_at": at})

    async def _read_new(self, looked_at: datetime) -> bool:
        """The mails after the cursor, at most a batch; True when more are waiting."""
        assert self.cursor is not None
        uids = await self.imap_connection.uids_after(self.cursor.last_uid)
        batch = uids[: self.input.batch]
        metas = {m.uid: m for m in await self.imap_connection.meta(batch)}
        for uid in batch:
            meta = metas.get(uid)
            received = meta.internaldate if meta and meta.internaldate else looked_at
            await self._one(uid, meta.size if meta else None, received)
            self.cursor = self.cursor.model_copy(update={"last_uid": uid})
            await self._heartbeat()
        self._advance_time(looked_at)
        return len(uids) > len(batch)

    async def _resync(self, uidvalidity: int, uidnext: int | None, looked_at: datetime) -> None:
        """No usable cursor: read what arrived since `since` (or the old cursor's last look),
        then stand after the folder's last UID."""
        if self.cursor is not None:
            # INTERNALDATE is the server's clock in whole seconds: reading from a while before
            # the last look misses nothing that arrived after it (what it re-reads, the inbox
            # drops as duplicates).
            since = self.cursor.synced_at - RESYNC_SLACK
        else:
            since = self.input.since.replace(microsecond=0)
        # UIDNEXT (the SELECT answer) saves listing a big folder; servers that omit it are asked.
        last = (
            uidnext - 1
            if uidnext is not None
            else max(await self.imap_connection.all_uids(), default=0)
        )
        candidates = await self.imap_connection.uids_since((since - timedelta(days=1)).date())
        metas = await self.imap_connection.meta(candidates[-MAX_RESYNC_MAILS:])
        recent = [m for m in metas if m.internaldate is not None and m.internaldate >= since]
        for meta in sorted(recent, key=lambda m: m.uid):
            assert meta.internaldate is not None
            await self._one(meta.uid, meta.size, meta.internaldate)
            await self._heartbeat()
            last = max(last, meta.uid)  # arrived after the SELECT: read now, not again
        self.cursor = MailboxCursor(
            mailbox=self.identity, uidvalidity=uidvalidity, last_uid=last, synced_at=looked_at
        )
        activity.heartbeat(self.cursor.model_dump(mode="json"))

    async def _one(self, uid: int, size: int | None, received_at: datetime) -> None:
        """Fetch, route and store one mail. A mail that cannot be read is ignored with a reason
        (never retried: it would block the folder); a failure of ours (the database) raises,
        and the activity is retried from the last heartbeat."""
        limit = self.owner._max_mail_bytes
        if size is not None and size > limit:
            self._ignore(f"uid {uid}: {size} bytes, over the {limit} byte limit")
            return
        raw = await self.imap_connection.body(uid)
        if raw is None:  # expunged between SEARCH and FETCH
            return
        self.counts = self.counts + MailboxCounts(read=1)
        tenant_id = self.input.tenant_id
        async with self.owner._db.session() as session:
            try:
                parsed = await self.owner._route(
                    session, tenant_id, raw, received_at, f"{SOURCE}:{self.imap.mailbox}"
                )
            except ValueError as exc:  # UnreadableMail, or the parser's own ValueError
                self._ignore(f"uid {uid}: not a readable mail ({str(exc)[:120]})")
                return
            except (DBAPIError, OSError, TimeoutError):
                raise  # ours and passing (the database): retried from the last heartbeat
            except Exception as exc:
                # A mail the routing code fails on would fail every retry too and hold up the
                # folder behind it: skipped, with the error logged and shown in the status.
                log.exception("mailbox of %s: uid %d could not be routed", tenant_id, uid)
                self._ignore(f"uid {uid}: could not be routed ({type(exc).__name__}: {exc})")
                return
            stored = await inbox_repo.put(session, parsed.messages, lease=timedelta(0))
        for reason in parsed.ignored:
            self._ignore(f"uid {uid}: {reason}")
        self.counts = self.counts + MailboxCounts(
            routed=len(stored), duplicates=len(parsed.messages) - len(stored)
        )

    def _ignore(self, reason: str) -> None:
        self.counts = self.counts + MailboxCounts(ignored=1)
        self.ignored.append(reason[:200])
        log.info("mailbox: ignored %s", reason[:200])
