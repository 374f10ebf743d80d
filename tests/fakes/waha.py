"""A fake WAHA server at the HTTP wire level (wire/waha.md).

    with FakeWaha() as waha:                  # or the `fake_waha` fixture
        settings = TenantSettings(waha=waha.settings())
        ...                                   # code under test calls POST {waha.url}/api/sendText
        assert waha.sent[0]["chatId"] == "31612345678@c.us"

It checks `X-Api-Key` (401 on a wrong or missing key), validates the sendText body, records every
request (`requests`, `sent`) and answers with a message object. The sendText response shape is not
documented (wire/waha.md §3): by default `id` is a string; `id_style="webjs"` answers with the
WEBJS engine's `{"id": {"_serialized": ...}}` so callers are tested against both.

It also builds inbound webhook deliveries (`message_webhook`) with the HMAC headers WAHA sends."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.tenant import WahaSettings
from tests.fakes.http_server import FailurePlan, LiveServer, RecordedRequest

ME = "71111111111@c.us"


class FakeWaha:
    def __init__(
        self,
        *,
        api_key: str = "waha-test-key",
        session: str = "default",
        id_style: Literal["string", "webjs"] = "string",
        hmac_key: str | None = "waha-webhook-secret",
    ) -> None:
        self.api_key = api_key
        self.session = session
        self.id_style = id_style
        self.hmac_key = hmac_key
        self.requests: list[RecordedRequest] = []
        self.sent: list[dict[str, Any]] = []
        self.failures = FailurePlan()
        self.app = Starlette(routes=[Route("/api/sendText", self._send_text, methods=["POST"])])
        self.server = LiveServer(self.app)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeWaha:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeWaha:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings(self, **overrides: Any) -> WahaSettings:
        """Tenant settings pointing at this fake, with the right key and HMAC secret."""
        values: dict[str, Any] = {
            "base_url": self.url,
            "api_key": self.api_key,
            "session": self.session,
            "webhook_secret": self.hmac_key,
        }
        values.update(overrides)
        return WahaSettings.model_validate(values)

    def fail_next(
        self, times: int = 1, *, status: int = 500, retry_after: str | int | None = None
    ) -> None:
        """Answer the next `times` requests with `status` (and a Retry-After header if given)."""
        body = {"statusCode": status, "message": "fake WAHA failure", "error": "Error"}
        self.failures.add(times, status=status, body=body, retry_after=retry_after)

    # -- server side ---------------------------------------------------------------------------
    async def _send_text(self, request: Request) -> Response:
        recorded = await RecordedRequest.of(request)
        self.requests.append(recorded)
        if recorded.headers.get("x-api-key") != self.api_key:
            # NestJS' default 401 body (WAHA is a NestJS app).
            return JSONResponse({"message": "Unauthorized", "statusCode": 401}, status_code=401)
        failure = self.failures.take(recorded.path)
        if failure is not None:
            return failure.response()
        body = recorded.json
        problems = [
            f"{name} must be a string"
            for name in ("session", "chatId", "text")
            if not isinstance(body, dict) or not isinstance(body.get(name), str)
        ]
        if problems:
            return JSONResponse(
                {"statusCode": 400, "message": problems, "error": "Bad Request"}, status_code=400
            )
        assert isinstance(body, dict)
        if body["session"] != self.session:
            # Not documented in wire/waha.md; any 4xx is what callers may rely on.
            return JSONResponse(
                {"statusCode": 422, "message": f"Session {body['session']!r} does not exist"},
                status_code=422,
            )
        self.sent.append(body)
        return JSONResponse(self._message_object(body["chatId"], body["text"]), status_code=201)

    def _message_object(self, chat_id: str, text: str) -> dict[str, Any]:
        hex_id = secrets.token_hex(16).upper()
        serialized = f"true_{chat_id}_{hex_id}"
        ident: Any = serialized
        if self.id_style == "webjs":
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

    # -- webhooks WAHA would deliver ---------------------------------------------------------------
    def message_webhook(
        self,
        *,
        from_: str,
        body: str,
        message_id: str | None = None,
        timestamp: int | None = None,
        from_me: bool = False,
    ) -> tuple[bytes, dict[str, str]]:
        """An inbound `message` event (wire/waha.md §1-2) and the headers WAHA sends with it,
        HMAC-signed when the fake has an `hmac_key`. Post both to the webhook under test."""
        now = int(time.time())
        payload = {
            "id": f"evt_{secrets.token_hex(13)}",
            "timestamp": now * 1000,
            "event": "message",
            "session": self.session,
            "metadata": {},
            "me": {"id": ME, "pushName": "~"},
            "payload": {
                "id": message_id or f"false_{from_}_{secrets.token_hex(16).upper()}",
                "timestamp": timestamp or now,
                "from": from_,
                "fromMe": from_me,
                "source": "app",
                "to": ME,
                "body": body,
                "hasMedia": False,
                "ack": 1,
                "vCards": [],
                "_data": {},
            },
            "environment": {"tier": "CORE", "version": "2024.10.1"},
            "engine": "WEBJS",
        }
        raw = json.dumps(payload).encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "WAHA/2024.10.1",
            "x-webhook-request-id": secrets.token_hex(13),
            "x-webhook-timestamp": str(now * 1000),
        }
        if self.hmac_key:
            headers["x-webhook-hmac"] = hmac.new(
                self.hmac_key.encode(), raw, hashlib.sha512
            ).hexdigest()
            headers["x-webhook-hmac-algorithm"] = "sha512"
        return raw, headers
