"""A fake Meta Graph API for sends: WhatsApp Cloud API and Messenger Send API.

    with FakeMeta() as meta:                         # or the `fake_meta` fixture
        settings = TenantSettings(whatsapp=meta.whatsapp_settings(),
                                  messenger=meta.messenger_settings())
        ...
        assert meta.whatsapp_sent[0]["text"]["body"] == "..."

Routes: `POST /{version}/{phone_number_id}/messages` (WhatsApp; Bearer access token) and
`POST /{version}/me/messages` or `/{version}/{page_id}/messages` (Messenger; page access token,
as `Authorization: Bearer` or the `access_token` query parameter). Wrong tokens get Graph's
OAuthException (code 190, HTTP 401); malformed bodies get code 100 (HTTP 400). Answers:
WhatsApp `{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id"}]}`,
Messenger `{"recipient_id", "message_id"}`.

It also builds inbound webhooks (`whatsapp_webhook`, `messenger_webhook`) signed with
`X-Hub-Signature-256` as in wire/meta_whatsapp_cloud_and_messenger.md."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.tenant import MetaSettings
from tests.fakes.http_server import FailurePlan, LiveServer, RecordedRequest

VERSION = "v21.0"
WABA_ID = "102290129340398"


def graph_error(
    message: str, *, code: int, status: int, type_: str = "OAuthException"
) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "message": message,
                "type": type_,
                "code": code,
                "fbtrace_id": secrets.token_urlsafe(9),
            }
        },
        status_code=status,
    )


class FakeMeta:
    def __init__(
        self,
        *,
        access_token: str = "meta-wa-token",
        phone_number_id: str = "106540352242922",
        display_phone_number: str = "15550783881",
        page_access_token: str = "meta-page-token",
        page_id: str = "111111",
        app_secret: str = "meta-app-secret",
        verify_token: str = "meatyhamhock",
    ) -> None:
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.page_access_token = page_access_token
        self.page_id = page_id
        self.app_secret = app_secret
        self.verify_token = verify_token
        self.requests: list[RecordedRequest] = []
        self.whatsapp_sent: list[dict[str, Any]] = []
        self.messenger_sent: list[dict[str, Any]] = []
        self.failures = FailurePlan()
        self.verified_name = "Leadflow Test Motors"
        self.page_name = "Leadflow Test Page"
        self.app = Starlette(
            routes=[
                Route("/{version}/{node}/messages", self._messages, methods=["POST"]),
                # reading a node: the phone number object, or the page behind a page token
                Route("/{version}/{node}", self._node, methods=["GET"]),
            ]
        )
        self.server = LiveServer(self.app)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.server.url

    @property
    def graph_url(self) -> str:
        return f"{self.url}/{VERSION}"

    def start(self) -> FakeMeta:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeMeta:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def whatsapp_settings(self, **overrides: Any) -> MetaSettings:
        values: dict[str, Any] = {
            "graph_url": self.graph_url,
            "access_token": self.access_token,
            "phone_number_id": self.phone_number_id,
            "app_secret": self.app_secret,
            "verify_token": self.verify_token,
        }
        values.update(overrides)
        return MetaSettings.model_validate(values)

    def messenger_settings(self, **overrides: Any) -> MetaSettings:
        values: dict[str, Any] = {
            "graph_url": self.graph_url,
            "page_access_token": self.page_access_token,
            "app_secret": self.app_secret,
            "verify_token": self.verify_token,
        }
        values.update(overrides)
        return MetaSettings.model_validate(values)

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 500,
        code: int = 2,
        message: str = "An unexpected error has occurred. Please retry your request later.",
        retry_after: str | int | None = None,
    ) -> None:
        """The next `times` sends fail with a Graph error body. Meta reports throttling as
        e.g. status=400 with code=130429 (WhatsApp) or code=613/4; 5xx uses code 1/2."""
        body = {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "fbtrace_id": "fake-trace",
            }
        }
        self.failures.add(times, status=status, body=body, retry_after=retry_after)

    # -- server side ---------------------------------------------------------------------------
    async def _messages(self, request: Request) -> Response:
        recorded = await RecordedRequest.of(request)
        self.requests.append(recorded)
        auth = recorded.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        token = token or recorded.query.get("access_token")
        node = request.path_params["node"]
        is_messenger = node in ("me", self.page_id)
        expected = self.page_access_token if is_messenger else self.access_token
        if not token:
            return graph_error(
                "An active access token must be used to query information about the current user.",
                code=2500,
                status=400,
            )
        if token != expected:
            return graph_error(
                "Invalid OAuth access token - Cannot parse access token", code=190, status=401
            )
        failure = self.failures.take(recorded.path)
        if failure is not None:
            return failure.response()
        body = recorded.json if isinstance(recorded.json, dict) else {}
        if is_messenger:
            return self._messenger(body)
        if node != self.phone_number_id:
            return graph_error(
                f"Unsupported post request. Object with ID '{node}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                code=100,
                status=400,
                type_="GraphMethodException",
            )
        return self._whatsapp(body)

    async def _node(self, request: Request) -> Response:
        """`GET /{phone_number_id}` (WhatsApp token): display_phone_number, verified_name,
        quality_rating, id; `GET /me` (page token): the page's id and name."""
        recorded = await RecordedRequest.of(request)
        self.requests.append(recorded)
        auth = recorded.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        token = token or recorded.query.get("access_token")
        node = request.path_params["node"]
        is_page = node in ("me", self.page_id)
        if not token:
            return graph_error(
                "An active access token must be used to query information about the current user.",
                code=2500,
                status=400,
            )
        if token != (self.page_access_token if is_page else self.access_token):
            return graph_error(
                "Invalid OAuth access token - Cannot parse access token", code=190, status=401
            )
        failure = self.failures.take(recorded.path)
        if failure is not None:
            return failure.response()
        if is_page:
            return JSONResponse({"name": self.page_name, "id": self.page_id})
        if node != self.phone_number_id:
            return graph_error(
                f"Unsupported get request. Object with ID '{node}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                code=100,
                status=400,
                type_="GraphMethodException",
            )
        return JSONResponse(
            {
                "verified_name": self.verified_name,
                "display_phone_number": self.display_phone_number,
                "id": self.phone_number_id,
                "quality_rating": "GREEN",
            }
        )

    def _whatsapp(self, body: dict[str, Any]) -> Response:
        text = body.get("text")
        if body.get("messaging_product") != "whatsapp":
            return graph_error(
                "(#100) The parameter messaging_product is required.", code=100, status=400
            )
        to = body.get("to")
        if not isinstance(to, str) or not to.isdigit():
            return graph_error("(#100) Invalid parameter", code=100, status=400)
        if body.get("type", "text") != "text" or not isinstance(text, dict):
            return graph_error("(#100) Invalid parameter", code=100, status=400)
        if not isinstance(text.get("body"), str) or not text["body"]:
            return graph_error(
                "(#100) The parameter text['body'] is required.", code=100, status=400
            )
        self.whatsapp_sent.append(body)
        wamid = "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}],
            }
        )

    def _messenger(self, body: dict[str, Any]) -> Response:
        recipient = body.get("recipient")
        message = body.get("message")
        if not isinstance(recipient, dict) or not recipient.get("id"):
            return graph_error("(#100) param recipient must be non-empty.", code=100, status=400)
        if body.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return graph_error("(#100) Invalid messaging_type", code=100, status=400)
        if not isinstance(message, dict) or not isinstance(message.get("text"), str):
            return graph_error("(#100) param message must be non-empty.", code=100, status=400)
        self.messenger_sent.append(body)
        return JSONResponse(
            {"recipient_id": str(recipient["id"]), "message_id": f"m_{secrets.token_urlsafe(32)}"}
        )

    # -- webhooks Meta would deliver ---------------------------------------------------------------
    def signature(self, raw: bytes) -> str:
        return "sha256=" + hmac.new(self.app_secret.encode(), raw, hashlib.sha256).hexdigest()

    def _signed(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(payload).encode()
        return raw, {"content-type": "application/json", "x-hub-signature-256": self.signature(raw)}

    def whatsapp_webhook(
        self, *, from_: str, text: str, name: str = "Sheena Nelson", message_id: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """An incoming text message (wire §1), signed with the app secret."""
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": WABA_ID,
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": self.display_phone_number,
                                    "phone_number_id": self.phone_number_id,
                                },
                                "contacts": [{"profile": {"name": name}, "wa_id": from_}],
                                "messages": [
                                    {
                                        "from": from_,
                                        "id": message_id
                                        or "wamid."
                                        + base64.b64encode(secrets.token_bytes(30)).decode(),
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": text},
                                    }
                                ],
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }
        return self._signed(payload)

    def messenger_webhook(
        self, *, psid: str, text: str, message_id: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """An incoming Messenger text message (wire §5), signed with the app secret."""
        now_ms = int(time.time() * 1000)
        payload = {
            "object": "page",
            "entry": [
                {
                    "id": self.page_id,
                    "time": now_ms,
                    "messaging": [
                        {
                            "sender": {"id": psid},
                            "recipient": {"id": self.page_id},
                            "timestamp": now_ms,
                            "message": {
                                "mid": message_id or f"m_{secrets.token_urlsafe(24)}",
                                "text": text,
                            },
                        }
                    ],
                }
            ],
        }
        return self._signed(payload)
