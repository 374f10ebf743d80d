"""A fake WAHA (WhatsApp HTTP API) at the HTTP wire level, for `leadflow simulate` and the tests.

WAHA's side of the wire (../shared/wire/waha.md) in one place:

- what WAHA posts to a webhook: the `message` event (`message_event`, §1-2) and the headers it
  sends with it, HMAC-SHA512 signed when a webhook key is set (`webhook_headers`, §4);
- how WAHA answers `POST /api/sendText` (§3): 401 without the right `X-Api-Key` (NestJS' body),
  400 for a body without `session`/`chatId`/`text` strings, a 4xx for an unknown session, else
  201 with the engine's message object (`send_text_answer`). The response shape is not
  documented: `id` is a string on some engines and `{"_serialized": ...}` on WEBJS
  (`id_style`), so callers are tested against both;
- how WAHA lists a chat's messages (`chat_message_record`, `chat_messages_answer`,
  wire/waha_lids_and_identity.md §6), which a retried send asks before sending again.

`FakeWaha` serves sendText on loopback inside the caller's event loop (uvicorn) and calls
`on_send` with every accepted message; it does not list messages (a simulated send is not
retried after a crash): a check against it gets a 404 and the retry sends. The tests'
`tests.fakes.waha.FakeWaha` answers with the same functions, adding the messages list and
failure injection."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import socket
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ME = "71111111111@c.us"
"""The business's own number (`me` of the events, `from` of what it sends)."""
WAHA_VERSION = "2024.10.1"
IdStyle = Literal["string", "webjs"]

# ---- webhooks WAHA delivers ---------------------------------------------------------------------


def message_event(
    *,
    from_: str,
    body: str,
    session: str = "default",
    message_id: str | None = None,
    timestamp: int | None = None,
    from_me: bool = False,
    me: str = ME,
    metadata: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An inbound `message` event as WAHA posts it (wire/waha.md §1-2); `data` is the engine's
    raw `_data` (e.g. NOWEB's `{"key": {"remoteJidAlt": ...}}`, waha_lids_and_identity.md §2)."""
    now = int(time.time())
    return {
        "id": f"evt_{secrets.token_hex(13)}",
        "timestamp": now * 1000,
        "event": "message",
        "session": session,
        "metadata": dict(metadata or {}),
        "me": {"id": me, "pushName": "~"},
        "payload": {
            "id": message_id or f"false_{from_}_{secrets.token_hex(16).upper()}",
            "timestamp": timestamp or now,
            "from": from_,
            "fromMe": from_me,
            "source": "app",
            "to": me,
            "body": body,
            "hasMedia": False,
            "ack": 1,
            "vCards": [],
            "_data": dict(data or {}),
        },
        "environment": {"tier": "CORE", "version": WAHA_VERSION},
        "engine": "WEBJS",
    }


def webhook_headers(raw: bytes, hmac_key: str | None) -> dict[str, str]:
    """The headers WAHA sends with a webhook body (wire/waha.md §4), signed when a key is set:
    `X-Webhook-Hmac` = hex HMAC-SHA512(key, raw body)."""
    now_ms = int(time.time() * 1000)
    headers = {
        "content-type": "application/json",
        "user-agent": f"WAHA/{WAHA_VERSION}",
        "x-webhook-request-id": secrets.token_hex(13),
        "x-webhook-timestamp": str(now_ms),
    }
    if hmac_key:
        headers["x-webhook-hmac"] = hmac.new(hmac_key.encode(), raw, hashlib.sha512).hexdigest()
        headers["x-webhook-hmac-algorithm"] = "sha512"
    return headers


def signed_message(
    *, from_: str, body: str, hmac_key: str | None, **event: Any
) -> tuple[bytes, dict[str, str]]:
    """A `message` event's raw body and its headers, ready to POST to a webhook."""
    raw = json.dumps(message_event(from_=from_, body=body, **event)).encode()
    return raw, webhook_headers(raw, hmac_key)


# ---- how WAHA answers sendText ----------------------------------------------------------------


def unauthorized(headers: Mapping[str, str], api_key: str) -> Response | None:
    """NestJS' default 401 (WAHA is a NestJS app) unless `X-Api-Key` is right; header names
    lower-case."""
    if headers.get("x-api-key") == api_key:
        return None
    return JSONResponse({"message": "Unauthorized", "statusCode": 401}, status_code=401)


def message_object(chat_id: str, text: str, *, id_style: IdStyle = "string") -> dict[str, Any]:
    """The message object WAHA answers a send with (WAMessage fields, wire/waha.md §2)."""
    hex_id = secrets.token_hex(16).upper()
    serialized = f"true_{chat_id}_{hex_id}"
    ident: Any = serialized
    if id_style == "webjs":
        ident = {"fromMe": True, "remote": chat_id, "id": hex_id, "_serialized": serialized}
    return {
        "id": ident,
        "timestamp": int(time.time()),
        "from": ME,
        "fromMe": True,
        "source": "api",
        "to": chat_id,
        "body": text,
        "hasMedia": False,
        "ack": 1,
        "vCards": [],
    }


def send_text_answer(
    body: Any, *, session: str, id_style: IdStyle = "string"
) -> tuple[Response, dict[str, str] | None]:
    """WAHA's answer to a sendText body (after the key check), and the accepted body (None when
    refused)."""
    problems = [
        f"{name} must be a string"
        for name in ("session", "chatId", "text")
        if not isinstance(body, dict) or not isinstance(body.get(name), str)
    ]
    if problems:
        refused = {"statusCode": 400, "message": problems, "error": "Bad Request"}
        return JSONResponse(refused, status_code=400), None
    assert isinstance(body, dict)
    if body["session"] != session:
        # Not documented in wire/waha.md; any 4xx is what callers may rely on.
        unknown = {"statusCode": 422, "message": f"Session {body['session']!r} does not exist"}
        return JSONResponse(unknown, status_code=422), None
    accepted = {k: v for k, v in body.items() if isinstance(v, str)}
    answer = message_object(body["chatId"], body["text"], id_style=id_style)
    return JSONResponse(answer, status_code=201), accepted


# ---- how WAHA lists a chat's messages ------------------------------------------------------------

_ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
CHAT_MESSAGES_DEFAULT_LIMIT = 100  # WAHA's own default is not in the docs; the fake's choice


def chat_message_record(sent: Mapping[str, Any]) -> dict[str, Any]:
    """A message object the fake answered a send with, as `GET /api/{session}/chats/{chatId}/
    messages` lists it (wire/waha_lids_and_identity.md §6): `id` is the serialized string there,
    whatever the send's `id_style`."""
    ident = sent["id"]
    if isinstance(ident, dict):
        ident = ident["_serialized"]
    return {
        "id": ident,
        "timestamp": sent["timestamp"],
        "from": sent["from"],
        "fromMe": sent["fromMe"],
        "to": sent["to"],
        "body": sent["body"],
        "hasMedia": False,
        "ack": sent["ack"],
        "ackName": _ACK_NAMES.get(sent["ack"], "SERVER"),
        "replyTo": None,
        "_data": {},
    }


def chat_messages_answer(
    records: Sequence[Mapping[str, Any]], *, chat_id: str, query: Mapping[str, str]
) -> Response:
    """WAHA's answer to `GET /api/{session}/chats/{chatId}/messages` (after the key and session
    checks): the chat's messages (`chatId=all`: every chat, as on GOWS/NOWEB), newest first,
    filtered by `filter.fromMe`, `filter.timestamp.gte`/`lte` (unix s), paged by `offset` and
    `limit` (§6). A parameter that is not a number / not true|false is a 400 (NestJS' body; the
    exact message is not documented)."""
    problems: list[str] = []

    def number(name: str) -> int | None:
        value = query.get(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            problems.append(f"{name} must be an integer")
            return None

    limit, offset = number("limit"), number("offset")
    gte, lte = number("filter.timestamp.gte"), number("filter.timestamp.lte")
    from_me = query.get("filter.fromMe")
    if from_me is not None and from_me not in ("true", "false"):
        problems.append("filter.fromMe must be true or false")
    if problems:
        refused = {"statusCode": 400, "message": problems, "error": "Bad Request"}
        return JSONResponse(refused, status_code=400)
    chat = [
        dict(r)
        for r in records
        if (chat_id == "all" or chat_id in (r["to"], r["from"]))
        and (from_me is None or r["fromMe"] is (from_me == "true"))
        and (gte is None or r["timestamp"] >= gte)
        and (lte is None or r["timestamp"] <= lte)
    ]
    chat.sort(key=lambda r: r["timestamp"], reverse=True)
    start = max(0, offset or 0)
    return JSONResponse(
        chat[start : start + max(0, CHAT_MESSAGES_DEFAULT_LIMIT if limit is None else limit)]
    )


# ---- how WAHA maps hidden user ids (@lid) to phones -------------------------------------------


def lid_answer(lids: Mapping[str, str], lid: str) -> Response:
    """`GET /api/{session}/lids/{lid}` (wire/waha_lids_and_identity.md §2): `{lid, pn}`, `pn`
    null (still 200) when unknown; a bare number gets `@lid` appended; another `@` suffix is a
    422. `lids` maps `…@lid` to `…@c.us`."""
    full = lid if "@" in lid else f"{lid}@lid"
    if not full.endswith("@lid"):
        refused = {"statusCode": 422, "message": "Invalid LID - it must end with @lid"}
        return JSONResponse(refused, status_code=422)
    return JSONResponse({"lid": full, "pn": lids.get(full)})


def pn_answer(lids: Mapping[str, str], phone: str) -> Response:
    """`GET /api/{session}/lids/pn/{phoneNumber}` (§2): `{lid, pn}`, `lid` null when unknown;
    a `…@lid` passed here comes back as `{"lid": <input>, "pn": null}`."""
    if phone.endswith("@lid"):
        return JSONResponse({"lid": phone, "pn": None})
    pn = phone if "@" in phone else f"{phone}@c.us"
    lid = next((key for key, value in lids.items() if value == pn), None)
    return JSONResponse({"lid": lid, "pn": pn})


def lids_answer(lids: Mapping[str, str], query: Mapping[str, str]) -> Response:
    """`GET /api/{session}/lids?limit=&offset=` (§2): every known mapping, sorted by `lid`
    (defaults: limit 100, offset 0)."""
    try:
        limit = int(query.get("limit", "100"))
        offset = int(query.get("offset", "0"))
    except ValueError:
        refused = {"statusCode": 400, "message": ["limit and offset must be integers"]}
        return JSONResponse(refused, status_code=400)
    rows = [{"lid": lid, "pn": pn} for lid, pn in sorted(lids.items())]
    return JSONResponse(rows[max(0, offset) : max(0, offset) + max(0, limit)])


# ---- the server ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentText:
    """One message leadflow sent through the fake WAHA."""

    chat_id: str
    text: str
    received_at: float  # time.monotonic() when the request arrived
    wall_time: float  # time.time() of the same moment


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the command that runs the fake handles Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class FakeWahaError(Exception):
    """The fake WAHA cannot listen (port taken)."""


class FakeWaha:
    """A fake WAHA on loopback, served by the running event loop:

    waha = FakeWaha(api_key="k", on_send=print)
    waha.bind(port=3300)          # the URL is known from here on
    await waha.start()
    ...                           # leadflow posts {waha.url}/api/sendText
    await waha.stop()
    """

    def __init__(
        self,
        *,
        api_key: str,
        session: str = "default",
        id_style: IdStyle = "string",
        on_send: Callable[[SentText], None] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.api_key = api_key
        self.session = session
        self.id_style = id_style
        self.on_send = on_send
        self.host = host
        self.sent: list[SentText] = []
        self.refused = 0  # requests answered with a 4xx
        self.app = Starlette(routes=[Route("/api/sendText", self._send_text, methods=["POST"])])
        self._socket: socket.socket | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        if self._socket is None:
            raise RuntimeError("the fake WAHA is not bound")
        return f"http://{self.host}:{self._socket.getsockname()[1]}"

    def bind(self, *, port: int = 0) -> str:
        """Take the port (0: any free one) before serving, so the URL can be configured first."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            raise FakeWahaError(
                f"the fake WAHA cannot listen on {self.host}:{port}: {exc}"
            ) from exc
        self._socket = sock
        return self.url

    async def start(self) -> None:
        if self._socket is None:
            self.bind()
        sock = self._socket
        assert sock is not None
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        server = _QuietServer(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                self._task.result()
                raise FakeWahaError("the fake WAHA stopped before it started")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._task = self._socket = None

    async def _send_text(self, request: Request) -> Response:
        arrived, wall = time.monotonic(), time.time()
        refused = unauthorized({k.lower(): v for k, v in request.headers.items()}, self.api_key)
        if refused is not None:
            self.refused += 1
            return refused
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        response, accepted = send_text_answer(body, session=self.session, id_style=self.id_style)
        if accepted is None:
            self.refused += 1
            return response
        sent = SentText(accepted["chatId"], accepted["text"], arrived, wall)
        self.sent.append(sent)
        if self.on_send is not None:
            self.on_send(sent)
        return response
