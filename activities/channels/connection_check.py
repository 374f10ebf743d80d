""" "Test connection" for a tenant's channels (`POST /api/v1/settings/channels/{channel}/test`):
one harmless call with the stored settings, answered as `ok` and a sentence. A failure is an
answer (unreachable, refused, wrong token), never an exception.

Each check connects through the URL guard (models/netguard.py) like the sends do, with short
timeouts, and reads only:
- waha: `GET {base_url}/api/sessions/{session}` (X-Api-Key): the session's status, WORKING is ok
  (STOPPED, STARTING, SCAN_QR_CODE, FAILED say what to do; WAHA's sessions docs);
- whatsapp: `GET {graph_url}/{phone_number_id}` (Bearer access token): the phone number object
  (display_phone_number, verified_name, quality_rating);
- messenger: `GET {graph_url}/me?fields=id,name` (Bearer page access token): the page;
- chatwoot: `GET {base_url}/api/v1/profile` (api_access_token): the token's user, whose
  `accounts` must hold the configured account_id;
- smtp: connect (to the address the guard checked), EHLO, STARTTLS or TLS as configured, AUTH
  when a user name is set, QUIT; no mail is sent;
- imap: connect, LOGIN and SELECT the folder (activities/imap_client.py `open_mailbox`), LOGOUT.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosmtplib
import httpx

from activities.imap_client import ImapError, open_mailbox
from models.netguard import UrlGuard, UrlRefused, guarded_client
from models.tenant import TenantSettings, channel_configured

CHECK_TIMEOUT_SECONDS = 8.0
CONNECT_TIMEOUT_SECONDS = 5.0

CHANNELS: tuple[str, ...] = ("waha", "whatsapp", "messenger", "chatwoot", "smtp", "imap")


class UnknownChannel(LookupError):
    """Not a channel leadflow can test."""


class ChannelNotConfigured(ValueError):
    """The tenant has not configured this channel (or lacks a required field)."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


def _imap_configured(settings: TenantSettings) -> bool:
    imap = settings.imap
    return bool(imap is not None and imap.host.strip() and (imap.username or "").strip())


def ensure_testable(settings: TenantSettings, channel: str) -> None:
    """Raises UnknownChannel or ChannelNotConfigured (with what is missing)."""
    if channel not in CHANNELS:
        raise UnknownChannel(f"unknown channel {channel!r}; channels are: {', '.join(CHANNELS)}")
    if channel == "imap":
        if not _imap_configured(settings):
            raise ChannelNotConfigured("imap is not configured: host and username are needed")
        return
    if not channel_configured(settings, channel):
        raise ChannelNotConfigured(
            f"{channel} is not configured (GET /api/v1/settings/status says what is missing)"
        )


async def check_channel(
    channel: str, settings: TenantSettings, *, allowlist: Iterable[str]
) -> CheckResult:
    """Test one configured channel (call `ensure_testable` first)."""
    guard_allowlist = list(allowlist)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS * 2):
            if channel in ("smtp", "imap"):
                guard = UrlGuard(guard_allowlist)
                if channel == "smtp":
                    return await _smtp(settings, guard)
                return await _imap(settings, guard)
            async with guarded_client(
                guard_allowlist,
                timeout=httpx.Timeout(CHECK_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            ) as http:
                return await _HTTP_CHECKS[channel](settings, http)
    except UrlRefused as exc:
        return CheckResult(False, f"{channel}: {exc.reason}")
    except TimeoutError:
        return CheckResult(False, f"{channel}: no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    except httpx.TimeoutException as exc:
        return CheckResult(False, f"{channel}: timed out ({type(exc).__name__})")
    except httpx.HTTPError as exc:
        return CheckResult(False, f"{channel}: unreachable: {_cause(exc)}")


def _cause(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _said(response: httpx.Response) -> str:
    """What the service said with an error status, short (its own message, not our secrets)."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:200]
        for key in ("message", "error", "errors"):
            if body.get(key):
                return str(body[key])[:200]
    return str(body)[:200]


def _refused(what: str, response: httpx.Response) -> CheckResult:
    hint = " (wrong token or key?)" if response.status_code in (401, 403) else ""
    return CheckResult(False, f"{what}: HTTP {response.status_code}{hint}: {_said(response)}")


# ---- HTTP channels -------------------------------------------------------------------------


async def _waha(settings: TenantSettings, http: httpx.AsyncClient) -> CheckResult:
    waha = settings.waha
    assert waha is not None and waha.api_key is not None  # ensure_testable
    url = f"{waha.base_url.rstrip('/')}/api/sessions/{waha.session}"
    response = await http.get(url, headers={"X-Api-Key": waha.api_key.get_secret_value()})
    if response.status_code == 404:
        return CheckResult(False, f"WAHA answers, but has no session {waha.session!r}")
    if response.status_code != 200:
        return _refused("WAHA", response)
    body = _json_object(response)
    status = str(body.get("status") or "unknown")
    if status == "WORKING":
        me = body.get("me") if isinstance(body.get("me"), dict) else {}
        who = f" as {me.get('pushName') or me.get('id')}" if me else ""
        return CheckResult(True, f"WAHA session {waha.session!r} is WORKING{who}")
    advice = {
        "SCAN_QR_CODE": "scan the QR code in WAHA's dashboard",
        "STOPPED": "start the session in WAHA",
        "STARTING": "it is starting: test again in a moment",
        "FAILED": "restart the session in WAHA (log out and in if that does not help)",
    }.get(status, "see WAHA's dashboard")
    return CheckResult(False, f"WAHA session {waha.session!r} is {status}: {advice}")


async def _whatsapp(settings: TenantSettings, http: httpx.AsyncClient) -> CheckResult:
    meta = settings.whatsapp
    assert meta is not None and meta.access_token is not None and meta.phone_number_id
    response = await http.get(
        f"{meta.graph_url.rstrip('/')}/{meta.phone_number_id}",
        params={"fields": "display_phone_number,verified_name,quality_rating"},
        headers={"Authorization": f"Bearer {meta.access_token.get_secret_value()}"},
    )
    if response.status_code != 200:
        return _refused("WhatsApp Cloud API", response)
    body = _json_object(response)
    number = body.get("display_phone_number") or meta.phone_number_id
    name = f" ({body['verified_name']})" if body.get("verified_name") else ""
    rating = f", quality {body['quality_rating']}" if body.get("quality_rating") else ""
    return CheckResult(True, f"WhatsApp number {number}{name}{rating}")


async def _messenger(settings: TenantSettings, http: httpx.AsyncClient) -> CheckResult:
    meta = settings.messenger
    assert meta is not None and meta.page_access_token is not None
    response = await http.get(
        f"{meta.graph_url.rstrip('/')}/me",
        params={"fields": "id,name"},
        headers={"Authorization": f"Bearer {meta.page_access_token.get_secret_value()}"},
    )
    if response.status_code != 200:
        return _refused("Messenger", response)
    body = _json_object(response)
    return CheckResult(True, f"Messenger page {body.get('name') or '?'} ({body.get('id') or '?'})")


async def _chatwoot(settings: TenantSettings, http: httpx.AsyncClient) -> CheckResult:
    chatwoot = settings.chatwoot
    assert chatwoot is not None and chatwoot.api_token is not None
    response = await http.get(
        f"{chatwoot.base_url.rstrip('/')}/api/v1/profile",
        headers={"api_access_token": chatwoot.api_token.get_secret_value()},
    )
    if response.status_code != 200:
        return _refused("Chatwoot", response)
    body = _json_object(response)
    accounts = body.get("accounts")
    names = {
        a.get("id"): a.get("name")
        for a in (accounts if isinstance(accounts, list) else [])
        if isinstance(a, dict) and "id" in a
    }
    who = body.get("name") or body.get("email") or "the token's user"
    if chatwoot.account_id not in names:
        return CheckResult(
            False,
            f"Chatwoot token works ({who}), but its user is not in account "
            f"{chatwoot.account_id} (its accounts: {', '.join(map(str, names)) or 'none'})",
        )
    return CheckResult(
        True, f"Chatwoot account {chatwoot.account_id} ({names[chatwoot.account_id]}) as {who}"
    )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


_HTTP_CHECKS = {
    "waha": _waha,
    "whatsapp": _whatsapp,
    "messenger": _messenger,
    "chatwoot": _chatwoot,
}


# ---- mail ----------------------------------------------------------------------------------


async def _connected_socket(guard: UrlGuard, host: str, port: int) -> socket.socket:
    """A TCP connection to an address the guard checked (never a second lookup of the name)."""
    addresses = await guard.resolve(host, port)
    loop = asyncio.get_running_loop()
    last: Exception | None = None
    for ip in addresses:
        sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await loop.sock_connect(sock, (str(ip), port))
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise ConnectionError(f"cannot connect to {host}:{port}: {last or 'no address'}")


async def _smtp(settings: TenantSettings, guard: UrlGuard) -> CheckResult:
    smtp = settings.smtp
    assert smtp is not None
    where = f"{smtp.host}:{smtp.port}"
    if smtp.username and smtp.password is None:
        return CheckResult(False, f"SMTP {where}: a user name is set without a password")
    try:
        sock = await _connected_socket(guard, smtp.host.strip(), smtp.port)
    except UrlRefused as exc:
        return CheckResult(False, f"SMTP host {exc.reason}")
    except Exception as exc:  # the guard's "cannot resolve", a refused connection
        return CheckResult(False, f"SMTP {where} unreachable: {_cause(exc)}")
    client = aiosmtplib.SMTP(
        hostname=smtp.host.strip(),  # TLS is verified against the name, not the address
        sock=sock,
        use_tls=smtp.use_tls,
        start_tls=smtp.starttls,
        timeout=CHECK_TIMEOUT_SECONDS,
    )
    steps: list[str] = []
    try:
        await client.connect()  # the greeting, EHLO and (if configured) STARTTLS
        steps.append("EHLO")
        if smtp.use_tls or smtp.starttls:
            steps.append("TLS")
        if smtp.username and smtp.password is not None:
            await client.login(smtp.username, smtp.password.get_secret_value())
            steps.append(f"AUTH as {smtp.username}")
        await client.quit()
        steps.append("QUIT")
    except aiosmtplib.SMTPAuthenticationError as exc:
        return CheckResult(False, f"SMTP {where} refused the login: {exc.code} {exc.message}")
    except aiosmtplib.SMTPResponseException as exc:
        return CheckResult(False, f"SMTP {where} answered {exc.code} {exc.message}")
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return CheckResult(False, f"SMTP {where}: {type(exc).__name__}: {_cause(exc)}")
    finally:
        if client.is_connected:
            client.close()
        sock.close()
    return CheckResult(True, f"SMTP {where}: {', '.join(steps)} ok")


async def _imap(settings: TenantSettings, guard: UrlGuard) -> CheckResult:
    imap = settings.imap
    assert imap is not None
    where = f"{imap.host}:{imap.port}"
    try:
        connection = await open_mailbox(imap, guard)
    except ImapError as exc:
        return CheckResult(False, f"IMAP {where}: {exc}")
    except (OSError, ssl.SSLError) as exc:
        return CheckResult(False, f"IMAP {where}: {type(exc).__name__}: {_cause(exc)}")
    async with connection:
        selected = connection.selected
    count = f" ({selected.exists} messages)" if selected is not None else ""
    return CheckResult(
        True, f"IMAP {where}: logged in as {imap.username}, folder {imap.mailbox}{count}"
    )
