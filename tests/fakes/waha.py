"""A fake WAHA server at the HTTP wire level (wire/waha.md).

    with FakeWaha() as waha:                  # or the `fake_waha` fixture
        settings = TenantSettings(waha=waha.settings())
        ...                                   # code under test calls POST {waha.url}/api/sendText
        assert waha.sent[0]["chatId"] == "31612345678@c.us"

It checks `X-Api-Key` (401 on a wrong or missing key), validates the sendText body, records every
request (`requests`, `sent`) and answers with a message object. The sendText response shape is not
documented (wire/waha.md §3): by default `id` is a string; `id_style="webjs"` answers with the
WEBJS engine's `{"id": {"_serialized": ...}}` so callers are tested against both.

It also builds inbound webhook deliveries (`message_webhook`) with the HMAC headers WAHA sends.
The wire shapes (events, headers, answers) are the product's fake WAHA's (workers/fake_waha.py,
what `leadflow simulate` serves); this one adds a server thread, recording and failures."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.tenant import WahaSettings
from tests.fakes.http_server import FailurePlan, LiveServer, RecordedRequest
from workers.fake_waha import (
    ME,
    IdStyle,
    chat_message_record,
    chat_messages_answer,
    lid_answer,
    lids_answer,
    message_object,
    pn_answer,
    send_text_answer,
    signed_message,
    unauthorized,
)

__all__ = ["ME", "FakeWaha"]


class FakeWaha:
    def __init__(
        self,
        *,
        api_key: str = "waha-test-key",
        session: str = "default",
        id_style: IdStyle = "string",
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
        # What the chat messages API lists (wire/waha_lids_and_identity.md §6): every accepted
        # sendText, plus what a test adds with `add_message`.
        self.messages: list[dict[str, Any]] = []
        self.app.router.routes.append(
            Route("/api/{session}/chats/{chat_id}/messages", self._chat_messages, methods=["GET"])
        )
        # The lids API (wire/waha_lids_and_identity.md §2): `…@lid` -> `…@c.us`, set by `map_lid`.
        self.lids: dict[str, str] = {}
        self.app.router.routes.extend(
            [
                Route("/api/{session}/lids", self._lids, methods=["GET"]),
                Route("/api/{session}/lids/count", self._lids, methods=["GET"]),
                Route("/api/{session}/lids/pn/{phone}", self._lids, methods=["GET"]),
                Route("/api/{session}/lids/{lid}", self._lids, methods=["GET"]),
            ]
        )
        # The session's status (WAHA's sessions docs: STOPPED, STARTING, SCAN_QR_CODE, WORKING,
        # FAILED), what `GET /api/sessions/{name}` answers: the settings page's "test connection".
        self.session_status = "WORKING"
        self.app.router.routes.append(
            Route("/api/sessions/{name}", self._session_info, methods=["GET"])
        )
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
        refused = unauthorized(recorded.headers, self.api_key)
        if refused is not None:
            return refused
        failure = self.failures.take(recorded.path)
        if failure is not None:
            return failure.response()
        response, accepted = send_text_answer(
            recorded.json, session=self.session, id_style=self.id_style
        )
        if accepted is not None:
            self.sent.append(recorded.json)
            self.messages.append(chat_message_record(json.loads(bytes(response.body))))
        return response

    async def _session_info(self, request: Request) -> Response:
        recorded = await RecordedRequest.of(request)
        self.requests.append(recorded)
        refused = unauthorized(recorded.headers, self.api_key)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        if name != self.session:
            return JSONResponse(
                {"statusCode": 404, "message": f"Session '{name}' does not exist"},
                status_code=404,
            )
        working = self.session_status == "WORKING"
        return JSONResponse(
            {
                "name": name,
                "status": self.session_status,
                "config": {"webhooks": []},
                "me": {"id": ME, "pushName": "Leadflow Test"} if working else None,
                "engine": {"engine": "WEBJS"},
            }
        )

    def add_message(
        self, chat_id: str, body: str, *, timestamp: int | None = None, from_me: bool = True
    ) -> str:
        """A message the chat holds without a sendText here (sent from the phone, or long ago);
        returns its id."""
        record = chat_message_record(message_object(chat_id, body))
        if timestamp is not None:
            record["timestamp"] = timestamp
        if not from_me:
            record.update(id=record["id"].replace("true_", "false_", 1), fromMe=False)
            record.update({"from": chat_id, "to": ME})
        self.messages.append(record)
        return str(record["id"])

    def message_checks(self) -> list[RecordedRequest]:
        """The chat messages requests received (the duplicate-send checks)."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/messages")]

    async def _chat_messages(self, request: Request) -> Response:
        recorded = await RecordedRequest.of(request)
        self.requests.append(recorded)
        refused = unauthorized(recorded.headers, self.api_key)
        if refused is not None:
            return refused
        failure = self.failures.take(recorded.path)
        if failure is not None:
            return failure.response()
        if request.path_params["session"] != self.session:
            unknown = {"statusCode": 422, "message": f"Session {request.path_params['session']!r}"}
            return JSONResponse(unknown, status_code=422)
        return chat_messages_answer(
            self.messages, chat_id=request.path_params["chat_id"], query=recorded.query
        )

    def map_lid(self, lid: str, phone: str) -> None:
        """Let the lids API answer `phone` (`…@c.us`) for `lid` (`…@lid`)."""
        self.lids[lid] = phone

    def lid_lookups(self) -> list[RecordedRequest]:
        """The `GET /api/{session}/lids/{lid}` requests received."""
        return [
            r
            for r in self.requests
            if "/lids/" in r.path
            and "/lids/pn/" not in r.path
            and not r.path.endswith("/lids/count")
        ]

    async def _lids(self, request: Request) -> Response:
        recorded = await RecordedRequest.of(request)
        self.requests.append(recorded)
        refused = unauthorized(recorded.headers, self.api_key)
        if refused is not None:
            return refused
        failure = self.failures.take(recorded.path)
        if failure is not None:
            return failure.response()
        if request.path_params["session"] != self.session:
            unknown = {"statusCode": 422, "message": f"Session {request.path_params['session']!r}"}
            return JSONResponse(unknown, status_code=422)
        if "lid" in request.path_params:
            return lid_answer(self.lids, request.path_params["lid"])
        if "phone" in request.path_params:
            return pn_answer(self.lids, request.path_params["phone"])
        if recorded.path.endswith("/lids/count"):
            return JSONResponse({"count": len(self.lids)})
        return lids_answer(self.lids, recorded.query)

    # -- webhooks WAHA would deliver ---------------------------------------------------------------
    def message_webhook(
        self,
        *,
        from_: str,
        body: str,
        message_id: str | None = None,
        timestamp: int | None = None,
        from_me: bool = False,
        data: dict[str, Any] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """An inbound `message` event (wire/waha.md §1-2) and the headers WAHA sends with it,
        HMAC-signed when the fake has an `hmac_key`. Post both to the webhook under test.
        `data` is the engine's raw `_data`."""
        return signed_message(
            from_=from_,
            body=body,
            hmac_key=self.hmac_key,
            session=self.session,
            message_id=message_id,
            timestamp=timestamp,
            from_me=from_me,
            data=data,
        )

    def twin_webhooks(
        self,
        *,
        phone: str,
        lid: str,
        body: str,
        key: str,
        data: dict[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> tuple[tuple[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]:
        """One WhatsApp message delivered twice, as GOWS/NOWEB do (waha lids notes §5): from
        `phone` (`…@c.us`) and from `lid` (`…@lid`, with the engine's `data` if given), the ids
        `false_{chat}_{key}` differing only in the chat id."""
        return (
            self.message_webhook(
                from_=phone, body=body, message_id=f"false_{phone}_{key}", timestamp=timestamp
            ),
            self.message_webhook(
                from_=lid,
                body=body,
                message_id=f"false_{lid}_{key}",
                timestamp=timestamp,
                data=data,
            ),
        )
