"""A fake Chatwoot Application API at the HTTP wire level (wire/chatwoot.md §5-10).

    with FakeChatwoot() as chatwoot:              # or the `fake_chatwoot` fixture
        settings = TenantSettings(chatwoot=chatwoot.settings())
        ...
        assert chatwoot.assignments == [{"conversation_id": 42, "assignee_id": 7}]
        assert chatwoot.private_notes(42)[0]["content"] == "..."

Implements: conversation messages (replies and private notes; the list as Chatwoot's messages
index answers it), assignments, labels (overwrite), conversation custom attributes (merge flag),
toggle_status, contacts (create, update with custom_attributes, search, delete; 422 on a
duplicate phone number as in wire/chatwoot.md §10).
Checks the `api_access_token` header and the account id. `fail_next(n, status=500|429, ...)`
makes the next n calls fail; every request is recorded in `requests`.

It also builds webhook deliveries (`message_created_webhook`, `conversation_status_webhook`)
with the signing headers of wire/chatwoot.md §4."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.tenant import ChatwootSettings
from tests.fakes.http_server import FailurePlan, LiveServer, RecordedRequest

CONV = "/api/v1/accounts/{account_id:int}/conversations/{conversation_id:int}"
CONTACTS = "/api/v1/accounts/{account_id:int}/contacts"
INBOX_ID = 1
MESSAGE_TYPES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}
"""Chatwoot's Message enum: webhooks spell the type, the messages list gives the integer."""


class FakeChatwoot:
    def __init__(
        self,
        *,
        api_token: str = "chatwoot-test-token",
        account_id: int = 1,
        webhook_secret: str | None = "chatwoot-webhook-secret",
    ) -> None:
        self.api_token = api_token
        self.account_id = account_id
        self.webhook_secret = webhook_secret
        self.requests: list[RecordedRequest] = []
        self.messages: list[dict[str, Any]] = []
        self.assignments: list[dict[str, Any]] = []
        self.labels: dict[int, list[str]] = {}
        self.conversation_attributes: dict[int, dict[str, Any]] = {}
        self.statuses: dict[int, str] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.missing_conversations: set[int] = set()
        """Conversation ids answered with 404; every other id exists."""
        self.failures = FailurePlan()
        self._lock = threading.Lock()
        self._next_id = 1000
        self.app = Starlette(
            routes=[
                Route(f"{CONV}/messages", self._create_message, methods=["POST"]),
                Route(f"{CONV}/messages", self._list_messages, methods=["GET"]),
                Route(f"{CONV}/assignments", self._assign, methods=["POST"]),
                Route(f"{CONV}/labels", self._set_labels, methods=["POST"]),
                Route(f"{CONV}/labels", self._get_labels, methods=["GET"]),
                Route(f"{CONV}/custom_attributes", self._custom_attributes, methods=["POST"]),
                Route(f"{CONV}/toggle_status", self._toggle_status, methods=["POST"]),
                Route(CONTACTS, self._create_contact, methods=["POST"]),
                Route(f"{CONTACTS}/search", self._search_contacts, methods=["GET"]),
                Route(
                    CONTACTS + "/{contact_id:int}",
                    self._contact,
                    methods=["GET", "PUT", "DELETE"],
                ),
                # the token's user and its accounts (Chatwoot's "Fetch user profile")
                Route("/api/v1/profile", self._profile, methods=["GET"]),
            ]
        )
        self.server = LiveServer(self.app)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeChatwoot:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeChatwoot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings(self, **overrides: Any) -> ChatwootSettings:
        values: dict[str, Any] = {
            "base_url": self.url,
            "api_token": self.api_token,
            "account_id": self.account_id,
            "webhook_secret": self.webhook_secret,
        }
        values.update(overrides)
        return ChatwootSettings.model_validate(values)

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 500,
        retry_after: str | int | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (429 usually with
        retry_after); `path_contains` limits it to e.g. "/assignments"."""
        body = {"error": "fake Chatwoot failure"}
        self.failures.add(
            times, status=status, body=body, retry_after=retry_after, path_contains=path_contains
        )

    # -- views for assertions ----------------------------------------------------------------------
    def replies(self, conversation_id: int | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if not m["private"]
            and (conversation_id is None or m["conversation_id"] == conversation_id)
        ]

    def private_notes(self, conversation_id: int | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m["private"] and (conversation_id is None or m["conversation_id"] == conversation_id)
        ]

    # -- server side ---------------------------------------------------------------------------
    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    async def _guard(self, request: Request) -> tuple[RecordedRequest, Response | None]:
        """Record, authenticate, apply injected failures; a response means "answer this"."""
        recorded = await RecordedRequest.of(request)
        self.requests.append(recorded)
        if recorded.headers.get("api_access_token") != self.api_token:
            # Body shape not in wire/chatwoot.md; the status is what callers act on.
            return recorded, JSONResponse({"error": "Invalid Access Token"}, status_code=401)
        if request.path_params.get("account_id") != self.account_id:
            return recorded, JSONResponse({"error": "Resource could not be found"}, status_code=404)
        failure = self.failures.take(recorded.path)
        if failure is not None:
            return recorded, failure.response()
        conversation_id = request.path_params.get("conversation_id")
        if conversation_id is not None and conversation_id in self.missing_conversations:
            return recorded, JSONResponse({"error": "Conversation not found"}, status_code=404)
        return recorded, None

    async def _profile(self, request: Request) -> Response:
        # not under an account: the token alone (the account check is the caller's)
        recorded = await RecordedRequest.of(request)
        self.requests.append(recorded)
        if recorded.headers.get("api_access_token") != self.api_token:
            return JSONResponse({"error": "Invalid Access Token"}, status_code=401)
        return JSONResponse(
            {
                "id": 1,
                "name": "Leadflow Agent",
                "email": "agent@example.com",
                "accounts": [
                    {"id": self.account_id, "name": "Leadflow Test", "role": "administrator"}
                ],
            }
        )

    @staticmethod
    def _bad_request(message: str, field: str) -> Response:
        # swagger error/bad_request.yml: {"description", "errors": [{"field", "message", "code"}]}
        return JSONResponse(
            {
                "description": message,
                "errors": [{"field": field, "message": message, "code": "invalid"}],
            },
            status_code=400,
        )

    async def _create_message(self, request: Request) -> Response:
        recorded, answer = await self._guard(request)
        if answer is not None:
            return answer
        body = recorded.json if isinstance(recorded.json, dict) else {}
        content = body.get("content")
        if not isinstance(content, str) or not content:
            return self._bad_request("content is required", "content")
        message_type = body.get("message_type", "outgoing")
        if message_type not in ("outgoing", "incoming"):
            return self._bad_request("message_type is invalid", "message_type")
        conversation_id = int(request.path_params["conversation_id"])
        message = {
            "id": self._new_id(),
            "content": content,
            "account_id": self.account_id,
            "inbox_id": INBOX_ID,
            "conversation_id": conversation_id,
            "message_type": message_type,
            "content_type": body.get("content_type", "text"),
            "content_attributes": body.get("content_attributes", {}),
            "private": bool(body.get("private", False)),
            "created_at": int(time.time()),
            "source_id": None,
            "sender": {"id": 1, "name": "leadflow", "type": "user"},
        }
        self.messages.append(message)
        return JSONResponse(message)

    async def _list_messages(self, request: Request) -> Response:
        """Chatwoot's messages index (app/finders/message_finder.rb, messages/index.json.jbuilder
        and the api/v1/models/_message partial): the latest 20 oldest first; `after=<id>` the
        next 100 after that id; `before=<id>` the 20 before it. In this answer `message_type` is
        the enum integer (wire/chatwoot.md §2), `created_at` unix seconds."""
        recorded, answer = await self._guard(request)
        if answer is not None:
            return answer
        conversation_id = int(request.path_params["conversation_id"])
        ordered = sorted(
            (m for m in self.messages if m["conversation_id"] == conversation_id),
            key=lambda m: (m["created_at"], m["id"]),
        )
        after, before = recorded.query.get("after"), recorded.query.get("before")
        if after is not None and after.isdigit():
            page = [m for m in ordered if m["id"] > int(after)][:100]
        elif before is not None and before.isdigit():
            page = [m for m in ordered if m["id"] < int(before)][-20:]
        else:
            page = ordered[-20:]
        payload = [
            {**m, "message_type": MESSAGE_TYPES.get(m["message_type"], 0), "status": "sent"}
            for m in page
        ]
        meta: dict[str, Any] = {
            "labels": self.labels.get(conversation_id, []),
            "additional_attributes": {},
            "agent_last_seen_at": None,
        }
        return JSONResponse({"meta": meta, "payload": payload})

    def message_lists(self) -> list[RecordedRequest]:
        """The conversation messages lists received (the duplicate-send checks)."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/messages")]

    async def _assign(self, request: Request) -> Response:
        recorded, answer = await self._guard(request)
        if answer is not None:
            return answer
        body = recorded.json if isinstance(recorded.json, dict) else {}
        assignee_id, team_id = body.get("assignee_id"), body.get("team_id")
        if assignee_id is None and team_id is None:
            return self._bad_request("assignee_id or team_id is required", "assignee_id")
        conversation_id = int(request.path_params["conversation_id"])
        if assignee_id is not None:
            # "If the assignee_id is present, this param [team_id] would be ignored."
            self.assignments.append(
                {"conversation_id": conversation_id, "assignee_id": assignee_id}
            )
            name = f"Agent {assignee_id}"
            return JSONResponse(
                {
                    "id": assignee_id,
                    "name": name,
                    "available_name": name,
                    "type": "user",
                    "availability_status": "online",
                }
            )
        self.assignments.append({"conversation_id": conversation_id, "team_id": team_id})
        return JSONResponse({"id": team_id, "name": f"Team {team_id}"})

    async def _set_labels(self, request: Request) -> Response:
        recorded, answer = await self._guard(request)
        if answer is not None:
            return answer
        body = recorded.json if isinstance(recorded.json, dict) else {}
        labels = body.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            return self._bad_request("labels must be a list of strings", "labels")
        conversation_id = int(request.path_params["conversation_id"])
        self.labels[conversation_id] = list(labels)  # overwrites, as the API does
        return JSONResponse({"payload": self.labels[conversation_id]})

    async def _get_labels(self, request: Request) -> Response:
        _, answer = await self._guard(request)
        if answer is not None:
            return answer
        conversation_id = int(request.path_params["conversation_id"])
        return JSONResponse({"payload": self.labels.get(conversation_id, [])})

    async def _custom_attributes(self, request: Request) -> Response:
        recorded, answer = await self._guard(request)
        if answer is not None:
            return answer
        body = recorded.json if isinstance(recorded.json, dict) else {}
        attributes = body.get("custom_attributes")
        if not isinstance(attributes, dict):
            return self._bad_request("custom_attributes must be an object", "custom_attributes")
        conversation_id = int(request.path_params["conversation_id"])
        if body.get("merge", False):
            self.conversation_attributes.setdefault(conversation_id, {}).update(attributes)
        else:
            self.conversation_attributes[conversation_id] = dict(attributes)
        return JSONResponse({"custom_attributes": self.conversation_attributes[conversation_id]})

    async def _toggle_status(self, request: Request) -> Response:
        recorded, answer = await self._guard(request)
        if answer is not None:
            return answer
        body = recorded.json if isinstance(recorded.json, dict) else {}
        status = body.get("status")
        if status not in ("open", "resolved", "pending", "snoozed"):
            return self._bad_request("status is invalid", "status")
        conversation_id = int(request.path_params["conversation_id"])
        self.statuses[conversation_id] = status
        return JSONResponse(
            {
                "meta": {},
                "payload": {
                    "success": True,
                    "current_status": status,
                    "conversation_id": conversation_id,
                },
            }
        )

    def _phone_taken(self, phone: Any, *, other_than: int | None = None) -> bool:
        return phone is not None and any(
            c.get("phone_number") == phone and cid != other_than for cid, c in self.contacts.items()
        )

    @staticmethod
    def _phone_taken_response() -> Response:
        # Verbatim body from wire/chatwoot.md §10 [I3].
        return JSONResponse(
            {"message": "Phone number has already been taken", "attributes": ["phone_number"]},
            status_code=422,
        )

    async def _create_contact(self, request: Request) -> Response:
        recorded, answer = await self._guard(request)
        if answer is not None:
            return answer
        body = recorded.json if isinstance(recorded.json, dict) else {}
        if self._phone_taken(body.get("phone_number")):
            return self._phone_taken_response()
        contact = {
            "id": self._new_id(),
            "name": body.get("name"),
            "email": body.get("email"),
            "phone_number": body.get("phone_number"),
            "identifier": body.get("identifier"),
            "additional_attributes": body.get("additional_attributes", {}),
            "custom_attributes": body.get("custom_attributes", {}),
            "type": "contact",
        }
        self.contacts[contact["id"]] = contact
        return JSONResponse({"payload": {"contact": contact, "contact_inbox": None}})

    async def _search_contacts(self, request: Request) -> Response:
        _, answer = await self._guard(request)
        if answer is not None:
            return answer
        q = request.query_params.get("q", "").lower()
        found = [
            c
            for c in self.contacts.values()
            if q
            and any(q in str(c.get(k) or "").lower() for k in ("name", "email", "phone_number"))
        ]
        return JSONResponse({"meta": {"count": len(found), "current_page": 1}, "payload": found})

    async def _contact(self, request: Request) -> Response:
        recorded, answer = await self._guard(request)
        if answer is not None:
            return answer
        contact_id = int(request.path_params["contact_id"])
        contact = self.contacts.get(contact_id)
        if contact is None:
            return JSONResponse({"error": "Resource could not be found"}, status_code=404)
        if request.method == "DELETE":
            del self.contacts[contact_id]
            return Response(status_code=200)
        if request.method == "PUT":
            body = recorded.json if isinstance(recorded.json, dict) else {}
            if self._phone_taken(body.get("phone_number"), other_than=contact_id):
                return self._phone_taken_response()
            for key in ("name", "email", "phone_number", "identifier", "custom_attributes"):
                if key in body:
                    contact[key] = body[key]
        return JSONResponse({"payload": contact})

    # -- webhooks Chatwoot would deliver -----------------------------------------------------------
    def signed_headers(self, raw: bytes) -> dict[str, str]:
        """`X-Chatwoot-Signature: sha256=HMAC(secret, "{timestamp}.{body}")` and friends."""
        headers = {"content-type": "application/json"}
        if self.webhook_secret:
            timestamp = str(int(time.time()))
            digest = hmac.new(
                self.webhook_secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256
            ).hexdigest()
            headers.update(
                {
                    "x-chatwoot-signature": f"sha256={digest}",
                    "x-chatwoot-timestamp": timestamp,
                    "x-chatwoot-delivery": str(uuid.uuid4()),
                }
            )
        return headers

    def message_created_webhook(
        self,
        *,
        conversation_id: int,
        content: str,
        message_type: str = "incoming",
        private: bool = False,
        contact_id: int = 14,
        contact_name: str = "little-haze-776",
        phone_number: str | None = None,
        email: str | None = None,
        message_id: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A `message_created` delivery in the shape of wire/chatwoot.md §2."""
        sender_type = "contact" if message_type == "incoming" else "user"
        payload = {
            "id": message_id or self._new_id(),
            "content": content,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "message_type": message_type,
            "content_type": "text",
            "private": private,
            "content_attributes": {},
            "source_id": None,
            "sender": {"id": contact_id, "name": contact_name, "avatar": "", "type": sender_type},
            "inbox": {"id": INBOX_ID, "name": "Acme Support"},
            "conversation": self._conversation(
                conversation_id,
                status="open",
                contact_id=contact_id,
                contact_name=contact_name,
                phone_number=phone_number,
                email=email,
            ),
            "account": {"id": self.account_id, "name": "Acme Inc"},
            "event": "message_created",
        }
        raw = json.dumps(payload).encode()
        return raw, self.signed_headers(raw)

    def conversation_status_webhook(
        self, *, conversation_id: int, status: str = "resolved", contact_id: int = 14
    ) -> tuple[bytes, dict[str, str]]:
        """A `conversation_status_changed` delivery (wire/chatwoot.md §3)."""
        payload = self._conversation(
            conversation_id,
            status=status,
            contact_id=contact_id,
            contact_name="jane",
            phone_number=None,
            email=None,
        )
        payload["event"] = "conversation_status_changed"
        raw = json.dumps(payload).encode()
        return raw, self.signed_headers(raw)

    def _conversation(
        self,
        conversation_id: int,
        *,
        status: str,
        contact_id: int,
        contact_name: str,
        phone_number: str | None,
        email: str | None,
    ) -> dict[str, Any]:
        now = int(time.time())
        return {
            "additional_attributes": {},
            "can_reply": True,
            "channel": "Channel::Api",
            "id": conversation_id,
            "inbox_id": INBOX_ID,
            "contact_inbox": {
                "id": 12,
                "contact_id": contact_id,
                "inbox_id": INBOX_ID,
                "source_id": str(uuid.uuid4()),
                "hmac_verified": False,
            },
            "messages": [],
            "meta": {
                "sender": {
                    "additional_attributes": {},
                    "custom_attributes": {},
                    "email": email,
                    "id": contact_id,
                    "identifier": None,
                    "name": contact_name,
                    "phone_number": phone_number,
                    "thumbnail": "",
                    "type": "contact",
                },
                "assignee": None,
            },
            "status": status,
            "unread_count": 1,
            "agent_last_seen_at": 0,
            "contact_last_seen_at": 0,
            "timestamp": now,
        }
