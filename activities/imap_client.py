"""A small typed IMAP client over aioimaplib 2.0.3 for the mailbox reader: connect to the address
the connection guard checked (TLS or plain), log in, SELECT, find UIDs, fetch with BODY.PEEK[]
(never sets \\Seen), wait in IDLE. Protocol facts: ../shared/wire/inbound_email.md section (a).

Errors are three kinds, which the reader treats differently: `ImapLoginRefused` (NO/BAD to
LOGIN: wrong credentials, not retried), `ImapMisconfigured` (no such folder, a host the guard
refuses: not retried either), `ImapUnavailable` (cannot connect, timeouts, a dropped
connection: retried with backoff)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from aioimaplib import aioimaplib

from models.netguard import UrlGuard, UrlRefused
from models.tenant import ImapSettings

COMMAND_TIMEOUT_SECONDS = 30.0


class ImapError(Exception):
    pass


class ImapLoginRefused(ImapError):
    pass


class ImapMisconfigured(ImapError):
    pass


class ImapUnavailable(ImapError):
    pass


@dataclass(frozen=True, slots=True)
class Selected:
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True, slots=True)
class MailMeta:
    uid: int
    size: int | None
    internaldate: datetime | None


_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS")
_FETCH_UID = re.compile(rb"\bUID (\d+)")
_FETCH_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_FETCH_DATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def parse_select(lines: list[Any]) -> Selected:
    uidvalidity: int | None = None
    uidnext: int | None = None
    exists = 0
    for line in lines:
        if not isinstance(line, bytes | bytearray):
            continue
        if (m := _UIDVALIDITY.search(line)) is not None:
            uidvalidity = int(m.group(1))
        if (m := _UIDNEXT.search(line)) is not None:
            uidnext = int(m.group(1))
        if (m := _EXISTS.match(line)) is not None:
            exists = int(m.group(1))
    if uidvalidity is None:
        raise ImapUnavailable("the server's SELECT answer has no UIDVALIDITY")
    return Selected(uidvalidity=uidvalidity, uidnext=uidnext, exists=exists)


def parse_search(lines: list[Any]) -> list[int]:
    """UIDs of a `UID SEARCH` answer (`b'1 2 3'` before the completion line)."""
    found: list[int] = []
    for line in lines[:-1] if lines else []:
        if isinstance(line, bytes | bytearray):
            text = bytes(line).removeprefix(b"SEARCH").strip()
            found.extend(int(part) for part in text.split() if part.isdigit())
    return sorted(set(found))


def parse_internaldate(text: str) -> datetime | None:
    """`29-Nov-2026 05:41:07 +0000` (RFC 3501 date-time)."""
    with contextlib.suppress(ValueError, IndexError, TypeError):
        day, month, rest = text.strip().split("-", 2)
        year, clock, zone = rest.split(" ")
        rfc5322 = f"{int(day)} {month} {year} {clock} {zone}"
        return parsedate_to_datetime(rfc5322)
    return None


def parse_meta(lines: list[Any]) -> list[MailMeta]:
    found: list[MailMeta] = []
    for line in lines:
        if not isinstance(line, bytes) or b"FETCH" not in line:
            continue
        uid = _FETCH_UID.search(line)
        if uid is None:
            continue
        size = _FETCH_SIZE.search(line)
        when = _FETCH_DATE.search(line)
        found.append(
            MailMeta(
                uid=int(uid.group(1)),
                size=int(size.group(1)) if size else None,
                internaldate=parse_internaldate(when.group(1).decode()) if when else None,
            )
        )
    return found


def parse_body(lines: list[Any]) -> bytes | None:
    """The literal of a single-mail `UID FETCH n BODY.PEEK[]` (aioimaplib hands literals over as
    bytearrays, between the `n FETCH (... BODY[] {size}` line and the closing one); None when
    the mail is gone (expunged meanwhile: no FETCH line at all)."""
    for line in lines:
        if isinstance(line, bytearray):
            return bytes(line)
    if any(isinstance(line, bytes) and b"FETCH (" in line for line in lines):
        return b""  # answered without a literal (NIL): an unreadable mail, not a vanished one
    return None


def imap_date(day: date) -> str:
    """SEARCH's date (`1-Feb-2026`), locale-independent."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def _check(response: Any, what: str) -> list[Any]:
    if response.result != "OK":
        said = b" ".join(x for x in response.lines if isinstance(x, bytes)).decode(errors="replace")
        raise ImapUnavailable(f"{what}: {response.result} {said}".strip())
    return list(response.lines)


def _said(response: Any) -> str:
    return b" ".join(bytes(x) for x in response.lines if isinstance(x, bytes | bytearray)).decode(
        errors="replace"
    )[:300]


class _Imap4(aioimaplib.IMAP4):  # type: ignore[misc]
    """aioimaplib connects to the host it is given; ours connects to the address the guard
    checked and still verifies TLS against the host name."""

    def __init__(
        self, address: str, port: int, *, server_hostname: str, ssl_context: ssl.SSLContext | None
    ) -> None:
        self._server_hostname = server_hostname
        super().__init__(
            host=address, port=port, timeout=COMMAND_TIMEOUT_SECONDS, ssl_context=ssl_context
        )

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Callable[[Exception | None], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = aioimaplib.IMAP4ClientProtocol(local_loop, conn_lost_cb)
        kwargs: dict[str, Any] = {}
        if ssl_context is not None:
            kwargs.update(ssl=ssl_context, server_hostname=self._server_hostname)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, **kwargs)
        )


class ImapConnection:
    """One logged-in session with one selected folder. Use `async with await open_mailbox(...)`."""

    def __init__(self, client: Any, imap: ImapSettings) -> None:
        self._client = client
        self.imap = imap
        self.selected: Selected | None = None

    async def __aenter__(self) -> ImapConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        # LOGOUT closes the TCP connection (CLOSE only unselects); a dead one is just dropped.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.logout(), 5)
        transport = getattr(self._client.protocol, "transport", None)
        if transport is not None:
            transport.close()

    @property
    def idle_supported(self) -> bool:
        return bool(self._client.has_capability("IDLE"))

    async def select(self) -> Selected:
        try:
            response = await self._client.select(self.imap.mailbox)
        except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
            raise ImapUnavailable(f"SELECT failed: {exc!r}") from exc
        if response.result != "OK":
            raise ImapMisconfigured(
                f"cannot open the folder {self.imap.mailbox!r}: {response.result} {_said(response)}"
            )
        self.selected = parse_select(list(response.lines))
        return self.selected

    async def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above `last_uid` (`UID SEARCH UID n:*` also answers the highest UID below n)."""
        lines = await self._command(
            self._client.uid_search(f"UID {last_uid + 1}:*", charset=None), "UID SEARCH"
        )
        return [uid for uid in parse_search(lines) if uid > last_uid]

    async def uids_since(self, day: date) -> list[int]:
        lines = await self._command(
            self._client.uid_search(f"SINCE {imap_date(day)}", charset=None), "UID SEARCH"
        )
        return parse_search(lines)

    async def all_uids(self) -> list[int]:
        lines = await self._command(self._client.uid_search("ALL", charset=None), "UID SEARCH")
        return parse_search(lines)

    async def meta(self, uids: list[int]) -> list[MailMeta]:
        if not uids:
            return []
        lines = await self._command(
            self._client.uid("fetch", ",".join(map(str, uids)), "(UID RFC822.SIZE INTERNALDATE)"),
            "UID FETCH",
        )
        return parse_meta(lines)

    async def body(self, uid: int) -> bytes | None:
        """The whole mail; BODY.PEEK[] leaves \\Seen as it was (the tenant's people read it)."""
        lines = await self._command(self._client.uid("fetch", str(uid), "BODY.PEEK[]"), "FETCH")
        return parse_body(lines)

    async def idle(self, seconds: float, tick: Callable[[], Awaitable[None]], every: float) -> bool:
        """Wait in IDLE up to `seconds` (callers keep it under 29 minutes, RFC 2177) for new mail;
        `tick` is awaited every `every` seconds meanwhile (the activity's heartbeat). True when
        the server announced mail (`* n EXISTS`); other pushes (`* OK Still here`, flag
        changes, expunges) keep waiting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            idle = await self._client.idle_start(timeout=seconds)
        except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
            raise ImapUnavailable(f"IDLE failed: {exc!r}") from exc
        arrived = False
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    push = await self._client.wait_server_push(timeout=min(every, left))
                except TimeoutError:
                    await tick()
                    continue
                if push == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break
                if any(
                    isinstance(line, bytes) and (b"EXISTS" in line or b"RECENT" in line)
                    for line in push
                ):
                    arrived = True
                    break
            # A dropped connection never answers DONE: the wait below times out (unavailable).
        finally:
            with contextlib.suppress(Exception):
                self._client.idle_done()
        try:
            await asyncio.wait_for(idle, COMMAND_TIMEOUT_SECONDS)
        except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
            raise ImapUnavailable(f"IDLE did not end: {exc!r}") from exc
        return arrived

    async def _command(self, call: Awaitable[Any], what: str) -> list[Any]:
        try:
            response = await call
        except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
            raise ImapUnavailable(f"{what} failed: {exc!r}") from exc
        return _check(response, what)


async def open_mailbox(imap: ImapSettings, guard: UrlGuard) -> ImapConnection:
    """Resolve through the guard, connect, log in and SELECT the folder."""
    host = imap.host.strip()
    try:
        addresses = await guard.resolve(host, imap.port)
    except UrlRefused as exc:
        raise ImapMisconfigured(f"imap host {exc.reason}") from exc
    except Exception as exc:  # the guard's "cannot resolve"
        raise ImapUnavailable(f"cannot resolve {host}: {exc}") from exc
    context = ssl.create_default_context() if imap.use_tls else None
    last: Exception | None = None
    client: Any = None
    for address in addresses:
        client = _Imap4(str(address), imap.port, server_hostname=host, ssl_context=context)
        try:
            await client.wait_hello_from_server()
            break
        except (TimeoutError, OSError, aioimaplib.AioImapException) as exc:
            last = exc
            client = None
    if client is None:
        raise ImapUnavailable(f"cannot connect to {host}:{imap.port}: {last!r}")
    connection = ImapConnection(client, imap)
    try:
        password = imap.password.get_secret_value() if imap.password is not None else ""
        try:
            response = await client.login(imap.username or "", password)
        except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
            raise ImapUnavailable(f"LOGIN failed: {exc!r}") from exc
        if response.result != "OK":
            raise ImapLoginRefused(f"login refused: {response.result} {_said(response)}".strip())
        # Capabilities may change at login (RFC 3501 6.2.3): ask again, whether IDLE is there
        # decides between waiting and polling.
        try:
            await asyncio.wait_for(client.protocol.capability(), COMMAND_TIMEOUT_SECONDS)
        except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
            raise ImapUnavailable(f"CAPABILITY failed: {exc!r}") from exc
        await connection.select()
    except BaseException:
        await connection.close()
        raise
    return connection
