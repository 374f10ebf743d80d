"""Fake CRMs over real HTTP on loopback: HubSpot, Salesforce (incl. the OAuth token endpoint),
Pipedrive and Chatwoot contacts, built from the payloads in ../shared/wire/.

Each fake keeps its records in plain dicts the tests inspect, records every request, and takes
injected failures (`fail(...)`) and stalls (`stall(...)`: apply the change, then hold the
response, as a CRM does when the caller's worker dies mid-request).

    with HubSpotFake(token="pat") as hs:
        ... hs.url ... hs.contacts ...
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

Handler = Callable[[Request, re.Match[str]], Awaitable[Response]]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Injected:
    method: str
    path: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class Stall:
    method: str
    path: re.Pattern[str]
    times: int
    hit: threading.Event = field(default_factory=threading.Event)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


class FakeServer:
    """Routes + a uvicorn server in its own thread (so it answers while the test loop waits)."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[Seen] = []
        self._injected: list[Injected] = []
        self._stalls: list[Stall] = []
        self._release = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ---- configuration -------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def fail(
        self,
        method: str,
        pattern: str,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` matching requests with this status/body instead."""
        self._injected.append(
            Injected(method, re.compile(pattern), status, body, dict(headers or {}), times)
        )

    def stall(self, method: str, pattern: str, *, times: int = 1) -> Stall:
        """Apply the next matching request, then hold its response until `release()`."""
        stall = Stall(method, re.compile(pattern), times)
        self._stalls.append(stall)
        return stall

    def release(self) -> None:
        self._release.set()

    def calls(self, method: str, pattern: str) -> list[Seen]:
        regex = re.compile(pattern)
        return [r for r in self.requests if r.method == method and regex.search(r.path)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw = await request.body()
        body: Any = None
        if raw:
            if request.headers.get("content-type", "").startswith("application/json"):
                import json

                body = json.loads(raw)
            else:
                body = dict((await request.form()).items()) if raw else None
        path = request.url.path
        self.requests.append(
            Seen(request.method, path, dict(request.query_params), body, dict(request.headers))
        )
        response = self._injected_response(request.method, path)
        if response is None:
            response = await self._dispatch(request, path)
            stall = self._stall_for(request.method, path)
            if stall is not None:
                stall.hit.set()
                while not self._release.is_set():
                    await asyncio.sleep(0.05)
        await response(scope, receive, send)

    def _injected_response(self, method: str, path: str) -> Response | None:
        for item in self._injected:
            if item.times > 0 and item.method == method and item.path.search(path):
                item.times -= 1
                if item.body is None:
                    return Response(status_code=item.status, headers=item.headers)
                return JSONResponse(item.body, status_code=item.status, headers=item.headers)
        return None

    def _stall_for(self, method: str, path: str) -> Stall | None:
        for stall in self._stalls:
            if stall.times > 0 and stall.method == method and stall.path.search(path):
                stall.times -= 1
                return stall
        return None

    async def _dispatch(self, request: Request, path: str) -> Response:
        denied = self.authorize(request, path)
        if denied is not None:
            return denied
        for method, pattern, handler in self.routes:
            match = pattern.match(path)
            if method == request.method and match:
                return await handler(request, match)
        return JSONResponse({"message": f"no route {request.method} {path}"}, status_code=404)

    def authorize(self, request: Request, path: str) -> Response | None:
        return None

    async def json(self, request: Request) -> Any:
        import json

        raw = await request.body()
        return json.loads(raw) if raw else {}

    # ---- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FakeServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake CRM server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


# ---- HubSpot -----------------------------------------------------------------------------

HS_NOT_FOUND = {"status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"}


def hubspot_rate_limit_body() -> dict[str, Any]:
    """A real 429 body (hubspot.md §6)."""
    return {
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": "6828d000-3d2f-4701-8d90-b21e53b0d005",
        "policyName": "SECONDLY",
        "requestId": "ce6a6a91-ac17-492f-bbdb-7d72477c319c",
    }


def hubspot_validation_body(prop: str, message: str) -> dict[str, Any]:
    """The documented error body (hubspot.md §5)."""
    return {
        "status": "error",
        "message": message,
        "errors": [{"message": message, "in": prop}],
        "category": "VALIDATION_ERROR",
        "correlationId": "a43683b0-5717-4ceb-80b4-104d02915d8c",
    }


class HubSpotFake(FakeServer):
    def __init__(self, *, token: str = "pat-test") -> None:
        super().__init__()
        self.token = token
        self.contacts: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.reject: dict[str, str] = {}  # property -> value that fails validation
        self._ids = 500
        base = "/crm/v3/objects/contacts"
        self.route("GET", base, self._list)
        self.route("POST", f"{base}/batch/upsert", self._batch_upsert)
        self.route("POST", f"{base}/search", self._search)
        self.route("GET", f"{base}/(?P<id>[^/]+)", self._get)
        self.route("PATCH", f"{base}/(?P<id>[^/]+)", self._patch)
        self.route("DELETE", f"{base}/(?P<id>[^/]+)", self._delete)
        self.route("POST", base, self._create)
        self.route("POST", "/crm/v3/objects/notes", self._note)

    def __enter__(self) -> HubSpotFake:
        super().__enter__()
        return self

    def authorize(self, request: Request, path: str) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse(
                {
                    "status": "error",
                    "message": "Authentication credentials not found.",
                    "category": "INVALID_AUTHENTICATION",
                },
                status_code=401,
            )
        return None

    def add_contact(self, properties: dict[str, str]) -> str:
        self._ids += 1
        cid = str(self._ids)
        self.contacts[cid] = {
            "id": cid,
            "properties": dict(properties),
            "createdAt": _now(),
            "updatedAt": _now(),
            "archived": False,
        }
        return cid

    def by_email(self, email: str) -> dict[str, Any] | None:
        for contact in self.contacts.values():
            if contact["properties"].get("email") == email:
                return contact
        return None

    def _shape(self, contact: dict[str, Any], props: list[str] | None) -> dict[str, Any]:
        shown = (
            {p: contact["properties"].get(p) for p in props}
            if props
            else dict(contact["properties"])
        )
        return {**contact, "properties": shown}

    def _validate(self, properties: dict[str, Any]) -> Response | None:
        for prop, bad in self.reject.items():
            if properties.get(prop) == bad:
                return JSONResponse(
                    hubspot_validation_body(prop, f'Property values were not valid: "{bad}"'),
                    status_code=400,
                )
        return None

    def _apply(self, contact: dict[str, Any], properties: dict[str, Any]) -> None:
        for key, value in properties.items():
            if value == "":
                contact["properties"].pop(key, None)  # "cleared by passing an empty string"
            else:
                contact["properties"][key] = str(value)
        contact["updatedAt"] = _now()

    async def _list(self, request: Request, m: re.Match[str]) -> Response:
        return JSONResponse({"results": [self._shape(c, None) for c in self.contacts.values()][:1]})

    async def _get(self, request: Request, m: re.Match[str]) -> Response:
        key = m["id"]
        props = [p for p in request.query_params.get("properties", "").split(",") if p]
        if request.query_params.get("idProperty") == "email":
            contact = self.by_email(key)
        else:
            contact = self.contacts.get(key)
        if contact is None:
            return JSONResponse(HS_NOT_FOUND, status_code=404)
        return JSONResponse(self._shape(contact, props))

    async def _patch(self, request: Request, m: re.Match[str]) -> Response:
        contact = self.contacts.get(m["id"])
        if contact is None:
            return JSONResponse(HS_NOT_FOUND, status_code=404)
        properties = (await self.json(request)).get("properties", {})
        invalid = self._validate(properties)
        if invalid is not None:
            return invalid
        self._apply(contact, properties)
        return JSONResponse(self._shape(contact, None))

    async def _create(self, request: Request, m: re.Match[str]) -> Response:
        properties = (await self.json(request)).get("properties", {})
        invalid = self._validate(properties)
        if invalid is not None:
            return invalid
        email = properties.get("email")
        if email and self.by_email(email):
            return JSONResponse(
                {"status": "error", "message": "Contact already exists", "category": "CONFLICT"},
                status_code=409,
            )
        cid = self.add_contact({k: str(v) for k, v in properties.items() if v != ""})
        return JSONResponse(self._shape(self.contacts[cid], None), status_code=201)

    async def _batch_upsert(self, request: Request, m: re.Match[str]) -> Response:
        results = []
        for item in (await self.json(request)).get("inputs", []):
            properties = item.get("properties", {})
            invalid = self._validate(properties)
            if invalid is not None:
                return invalid
            assert item.get("idProperty") == "email"
            contact = self.by_email(item["id"])
            new = contact is None
            if contact is None:
                cid = self.add_contact({"email": item["id"]})
                contact = self.contacts[cid]
            self._apply(contact, properties)
            results.append({**self._shape(contact, None), "new": new})
        return JSONResponse(
            {
                "completedAt": _now(),
                "results": results,
                "startedAt": _now(),
                "status": "COMPLETE",
                "requestedAt": _now(),
            }
        )

    async def _search(self, request: Request, m: re.Match[str]) -> Response:
        body = await self.json(request)
        flt = body["filterGroups"][0]["filters"][0]
        props = body.get("properties") or []
        found = [
            self._shape(c, props)
            for c in self.contacts.values()
            if c["properties"].get(flt["propertyName"]) == flt["value"]
        ]
        return JSONResponse({"total": len(found), "results": found[:1]})

    async def _delete(self, request: Request, m: re.Match[str]) -> Response:
        if self.contacts.pop(m["id"], None) is None:
            return JSONResponse(HS_NOT_FOUND, status_code=404)
        return Response(status_code=204)

    async def _note(self, request: Request, m: re.Match[str]) -> Response:
        body = await self.json(request)
        nid = str(9000 + len(self.notes))
        self.notes[nid] = body
        return JSONResponse({"id": nid, "properties": body["properties"]}, status_code=201)


# ---- Salesforce --------------------------------------------------------------------------

SF_VERSION = "v60.0"
SF_INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
SF_NOT_FOUND = [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


class SalesforceFake(FakeServer):
    def __init__(
        self,
        *,
        client_id: str = "client-key",
        client_secret: str = "client-secret",
        external_id_field: str = "Leadflow_Id__c",
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.ext = external_id_field
        self.leads: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.valid_tokens: set[str] = set()
        self.tokens_issued = 0
        self.reject: dict[str, Any] = {}  # field -> value rejected by a validation rule
        self._n = 0
        data = f"/services/data/{SF_VERSION}"
        self.route("POST", "/services/oauth2/token", self._token)
        self.route("GET", f"{data}/limits", self._limits)
        self.route("GET", f"{data}/sobjects/Lead/(?P<f>[^/]+)/(?P<v>[^/]+)", self._get_ext)
        self.route("PATCH", f"{data}/sobjects/Lead/(?P<f>[^/]+)/(?P<v>[^/]+)", self._upsert)
        self.route("DELETE", f"{data}/sobjects/Lead/(?P<f>[^/]+)/(?P<v>[^/]+)", self._delete_ext)
        self.route("GET", f"{data}/sobjects/Lead/(?P<id>[^/]+)", self._get)
        self.route("PATCH", f"{data}/sobjects/Lead/(?P<id>[^/]+)", self._patch)
        self.route("DELETE", f"{data}/sobjects/Lead/(?P<id>[^/]+)", self._delete)
        self.route("POST", f"{data}/sobjects/Task/?", self._task)

    def __enter__(self) -> SalesforceFake:
        super().__enter__()
        return self

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    def authorize(self, request: Request, path: str) -> Response | None:
        if path.startswith("/services/oauth2/"):
            return None
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.valid_tokens:
            return JSONResponse(SF_INVALID_SESSION, status_code=401)
        return None

    def _new_id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n:015d}"

    def by_ext(self, value: str) -> dict[str, Any] | None:
        for lead in self.leads.values():
            if lead.get(self.ext) == value:
                return lead
        return None

    def add_lead(self, fields: dict[str, Any]) -> str:
        lid = self._new_id("00Q")
        self.leads[lid] = {"Id": lid, **fields}
        return lid

    def _shape(self, lead: dict[str, Any], request: Request) -> dict[str, Any]:
        wanted = [f for f in request.query_params.get("fields", "").split(",") if f]
        shown = {f: lead.get(f) for f in wanted} if wanted else dict(lead)
        return {"attributes": {"type": "Lead"}, **shown, "Id": lead["Id"]}

    def _invalid(self, body: dict[str, Any], *, creating: bool) -> Response | None:
        if "Id" in body or self.ext in body:
            return JSONResponse(
                [{"message": "The Id field should not be specified", "errorCode": "INVALID_FIELD"}],
                status_code=400,
            )
        for fld, bad in self.reject.items():
            if body.get(fld) == bad:
                return JSONResponse(
                    [
                        {
                            "message": f"{fld} value {bad!r} is not allowed",
                            "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                            "fields": [fld],
                        }
                    ],
                    status_code=400,
                )
        if creating:
            missing = [f for f in ("LastName", "Company") if not body.get(f)]
            if missing:
                return JSONResponse(
                    [
                        {
                            "message": "Required fields are missing",
                            "errorCode": "REQUIRED_FIELD_MISSING",
                            "fields": missing,
                        }
                    ],
                    status_code=400,
                )
        return None

    async def _token(self, request: Request, m: re.Match[str]) -> Response:
        form = await request.form()
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "invalid client credentials"},
                status_code=400,
            )
        self.tokens_issued += 1
        token = f"00D!tok{self.tokens_issued}"
        self.valid_tokens.add(token)
        return JSONResponse(
            {
                "access_token": token,
                "scope": "web api",
                "instance_url": self.url,
                "id": f"{self.url}/id/00Di0000000icUB/0DFi00000008UYO",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
            }
        )

    async def _limits(self, request: Request, m: re.Match[str]) -> Response:
        return JSONResponse({"DailyApiRequests": {"Max": 5000, "Remaining": 4990}})

    async def _get_ext(self, request: Request, m: re.Match[str]) -> Response:
        if m["f"] != self.ext:
            return JSONResponse(SF_NOT_FOUND, status_code=404)
        lead = self.by_ext(m["v"])
        if lead is None:
            return JSONResponse(SF_NOT_FOUND, status_code=404)
        return JSONResponse(self._shape(lead, request))

    async def _get(self, request: Request, m: re.Match[str]) -> Response:
        lead = self.leads.get(m["id"])
        if lead is None:
            return JSONResponse(SF_NOT_FOUND, status_code=404)
        return JSONResponse(self._shape(lead, request))

    async def _upsert(self, request: Request, m: re.Match[str]) -> Response:
        if m["f"] != self.ext:
            return JSONResponse(SF_NOT_FOUND, status_code=404)
        body = await self.json(request)
        lead = self.by_ext(m["v"])
        invalid = self._invalid(body, creating=lead is None)
        if invalid is not None:
            return invalid
        if lead is None:
            lid = self.add_lead({**body, self.ext: m["v"]})
            return JSONResponse(
                {"id": lid, "success": True, "errors": [], "created": True}, status_code=201
            )
        lead.update(body)
        return JSONResponse({"id": lead["Id"], "success": True, "errors": [], "created": False})

    async def _patch(self, request: Request, m: re.Match[str]) -> Response:
        lead = self.leads.get(m["id"])
        if lead is None:
            return JSONResponse(SF_NOT_FOUND, status_code=404)
        body = await self.json(request)
        invalid = self._invalid(body, creating=False)
        if invalid is not None:
            return invalid
        lead.update(body)
        return Response(status_code=204)

    async def _delete(self, request: Request, m: re.Match[str]) -> Response:
        if self.leads.pop(m["id"], None) is None:
            return JSONResponse(SF_NOT_FOUND, status_code=404)
        return Response(status_code=204)

    async def _delete_ext(self, request: Request, m: re.Match[str]) -> Response:
        lead = self.by_ext(m["v"]) if m["f"] == self.ext else None
        if lead is None:
            return JSONResponse(SF_NOT_FOUND, status_code=404)
        del self.leads[lead["Id"]]
        return Response(status_code=204)

    async def _task(self, request: Request, m: re.Match[str]) -> Response:
        tid = self._new_id("00T")
        self.tasks[tid] = await self.json(request)
        return JSONResponse({"id": tid, "errors": [], "success": True}, status_code=201)


# ---- Pipedrive ---------------------------------------------------------------------------


class PipedriveFake(FakeServer):
    def __init__(self, *, api_token: str = "pd-token") -> None:
        super().__init__()
        self.api_token = api_token
        self.persons: dict[int, dict[str, Any]] = {}
        self.leads: dict[str, dict[str, Any]] = {}
        self.deals: dict[int, dict[str, Any]] = {}
        self.notes: list[dict[str, Any]] = []
        self._n = 100
        self.route("GET", "/api/v2/persons/search", self._search)
        self.route("GET", r"/api/v2/persons/(?P<id>\d+)", self._get)
        self.route("PATCH", r"/api/v2/persons/(?P<id>\d+)", self._patch)
        self.route("DELETE", r"/api/v2/persons/(?P<id>\d+)", self._delete)
        self.route("POST", "/api/v2/persons", self._create)
        self.route("POST", "/v1/leads", self._lead)
        self.route("DELETE", "/v1/leads/(?P<id>[^/]+)", self._delete_lead)
        self.route("POST", "/api/v2/deals", self._deal)
        self.route("DELETE", r"/api/v2/deals/(?P<id>\d+)", self._delete_deal)
        self.route("POST", "/v1/notes", self._note)
        self.route("GET", "/v1/users/me", self._me)

    def __enter__(self) -> PipedriveFake:
        super().__enter__()
        return self

    def authorize(self, request: Request, path: str) -> Response | None:
        token = request.headers.get("x-api-token") or request.query_params.get("api_token")
        if token != self.api_token:
            return JSONResponse(
                {"success": False, "error": "unauthorized access", "errorCode": 401},
                status_code=401,
            )
        return None

    def add_person(self, name: str, email: str | None = None, **custom: Any) -> int:
        self._n += 1
        self.persons[self._n] = {
            "id": self._n,
            "name": name,
            "emails": [{"value": email, "primary": True, "label": "work"}] if email else [],
            "phones": [],
            "custom_fields": dict(custom),
            "add_time": _now(),
        }
        return self._n

    async def _search(self, request: Request, m: re.Match[str]) -> Response:
        term = request.query_params["term"]
        fld = request.query_params.get("fields", "email")
        items = []
        for person in self.persons.values():
            values = [e["value"] for e in person.get(f"{fld}s", [])]
            if term in values:
                items.append({"result_score": 1.0, "item": {"id": person["id"], "type": "person"}})
        return JSONResponse({"success": True, "data": {"items": items}})

    async def _get(self, request: Request, m: re.Match[str]) -> Response:
        person = self.persons.get(int(m["id"]))
        if person is None:
            return JSONResponse({"success": False, "error": "Person not found"}, status_code=404)
        return JSONResponse({"success": True, "data": person})

    # AddPersonRequest / PATCH (v2): `marketing_status` is one of these (pipedrive.md).
    MARKETING_STATUSES = ("no_consent", "unsubscribed", "subscribed", "archived")

    def _invalid_status(self, body: dict[str, Any]) -> Response | None:
        status = body.get("marketing_status")
        if status is None or status in self.MARKETING_STATUSES:
            return None
        return JSONResponse(
            {"success": False, "error": f"Invalid marketing_status: {status!r}"}, status_code=400
        )

    def _apply(self, person: dict[str, Any], body: dict[str, Any]) -> None:
        for key in ("name", "emails", "phones", "marketing_status"):
            if key in body:
                person[key] = body[key]
        for key, value in (body.get("custom_fields") or {}).items():
            if value is None:
                person["custom_fields"].pop(key, None)
            else:
                person["custom_fields"][key] = value

    async def _create(self, request: Request, m: re.Match[str]) -> Response:
        body = await self.json(request)
        if not body.get("name"):
            return JSONResponse({"success": False, "error": "Name must be given."}, status_code=400)
        invalid = self._invalid_status(body)
        if invalid is not None:
            return invalid
        pid = self.add_person(body["name"])
        self._apply(self.persons[pid], body)
        return JSONResponse({"success": True, "data": self.persons[pid]})

    async def _patch(self, request: Request, m: re.Match[str]) -> Response:
        person = self.persons.get(int(m["id"]))
        if person is None:
            return JSONResponse({"success": False, "error": "Person not found"}, status_code=404)
        body = await self.json(request)
        invalid = self._invalid_status(body)
        if invalid is not None:
            return invalid
        self._apply(person, body)
        return JSONResponse({"success": True, "data": person})

    async def _delete(self, request: Request, m: re.Match[str]) -> Response:
        if self.persons.pop(int(m["id"]), None) is None:
            return JSONResponse({"success": False, "error": "Person not found"}, status_code=404)
        return JSONResponse({"success": True, "data": {"id": int(m["id"])}})

    async def _lead(self, request: Request, m: re.Match[str]) -> Response:
        body = await self.json(request)
        lid = str(uuid.uuid4())
        self.leads[lid] = {"id": lid, **body}
        return JSONResponse({"success": True, "data": self.leads[lid]}, status_code=201)

    async def _delete_lead(self, request: Request, m: re.Match[str]) -> Response:
        if self.leads.pop(m["id"], None) is None:
            return JSONResponse({"success": False, "error": "Lead not found"}, status_code=404)
        return JSONResponse({"success": True, "data": {"id": m["id"]}})

    async def _deal(self, request: Request, m: re.Match[str]) -> Response:
        body = await self.json(request)
        self._n += 1
        self.deals[self._n] = {"id": self._n, **body}
        return JSONResponse({"success": True, "data": self.deals[self._n]}, status_code=201)

    async def _delete_deal(self, request: Request, m: re.Match[str]) -> Response:
        # pipedrive.md "Delete": DELETE /api/v2/deals/{id} -> {"success": true, "data": {"id"}}
        if self.deals.pop(int(m["id"]), None) is None:
            return JSONResponse({"success": False, "error": "Deal not found"}, status_code=404)
        return JSONResponse({"success": True, "data": {"id": int(m["id"])}})

    async def _note(self, request: Request, m: re.Match[str]) -> Response:
        body = await self.json(request)
        self.notes.append(body)
        return JSONResponse({"success": True, "data": {"id": len(self.notes), **body}})

    async def _me(self, request: Request, m: re.Match[str]) -> Response:
        return JSONResponse({"success": True, "data": {"id": 1, "name": "Owner"}})


# ---- Chatwoot contacts -------------------------------------------------------------------


class ChatwootCrmFake(FakeServer):
    """Chatwoot's contacts, conversation labels and messages (chatwoot.md §6, §7, §9)."""

    def __init__(self, *, api_token: str = "cw-token", account_id: int = 1) -> None:
        super().__init__()
        self.api_token = api_token
        self.contacts: dict[int, dict[str, Any]] = {}
        self.labels: dict[str, list[str]] = {}
        self.messages: list[dict[str, Any]] = []
        self._n = 10
        acc = f"/api/v1/accounts/{account_id}"
        self.route("GET", f"{acc}/contacts/search", self._search)
        self.route("GET", f"{acc}/contacts", self._list)
        self.route("GET", rf"{acc}/contacts/(?P<id>\d+)", self._get)
        self.route("PUT", rf"{acc}/contacts/(?P<id>\d+)", self._put)
        self.route("DELETE", rf"{acc}/contacts/(?P<id>\d+)", self._delete)
        self.route("POST", f"{acc}/contacts", self._create)
        self.route("GET", rf"{acc}/conversations/(?P<c>\d+)/labels", self._get_labels)
        self.route("POST", rf"{acc}/conversations/(?P<c>\d+)/labels", self._set_labels)
        self.route("POST", rf"{acc}/conversations/(?P<c>\d+)/messages", self._message)

    def __enter__(self) -> ChatwootCrmFake:
        super().__enter__()
        return self

    def authorize(self, request: Request, path: str) -> Response | None:
        if request.headers.get("api_access_token") != self.api_token:
            return JSONResponse({"error": "Invalid Access Token"}, status_code=401)
        return None

    def add_contact(self, name: str, email: str | None = None, **custom: Any) -> int:
        self._n += 1
        self.contacts[self._n] = {
            "id": self._n,
            "name": name,
            "email": email,
            "phone_number": None,
            "custom_attributes": dict(custom),
            "additional_attributes": {},
        }
        return self._n

    async def _search(self, request: Request, m: re.Match[str]) -> Response:
        q = request.query_params.get("q", "")
        found = [c for c in self.contacts.values() if q in (c.get("email"), c.get("phone_number"))]
        return JSONResponse({"meta": {"count": len(found)}, "payload": found})

    async def _list(self, request: Request, m: re.Match[str]) -> Response:
        return JSONResponse({"meta": {"count": len(self.contacts)}, "payload": []})

    async def _get(self, request: Request, m: re.Match[str]) -> Response:
        contact = self.contacts.get(int(m["id"]))
        if contact is None:
            return JSONResponse({"error": "Resource could not be found"}, status_code=404)
        return JSONResponse({"payload": contact})

    async def _put(self, request: Request, m: re.Match[str]) -> Response:
        contact = self.contacts.get(int(m["id"]))
        if contact is None:
            return JSONResponse({"error": "Resource could not be found"}, status_code=404)
        body = await self.json(request)
        for key in ("name", "email", "phone_number", "custom_attributes"):
            if key in body:
                contact[key] = body[key]
        return JSONResponse({"payload": contact})

    async def _delete(self, request: Request, m: re.Match[str]) -> Response:
        self.contacts.pop(int(m["id"]), None)
        return Response(status_code=200)

    async def _create(self, request: Request, m: re.Match[str]) -> Response:
        body = await self.json(request)
        cid = self.add_contact(body.get("name") or "", body.get("email"))
        self.contacts[cid]["custom_attributes"] = body.get("custom_attributes") or {}
        return JSONResponse({"payload": {"contact": self.contacts[cid]}})

    async def _get_labels(self, request: Request, m: re.Match[str]) -> Response:
        return JSONResponse({"payload": self.labels.get(m["c"], [])})

    async def _set_labels(self, request: Request, m: re.Match[str]) -> Response:
        # "this API would overwrite the existing list of labels associated to the conversation"
        self.labels[m["c"]] = list((await self.json(request)).get("labels", []))
        return JSONResponse({"payload": self.labels[m["c"]]})

    async def _message(self, request: Request, m: re.Match[str]) -> Response:
        body = await self.json(request)
        self.messages.append({"conversation_id": m["c"], **body})
        return JSONResponse({"id": len(self.messages), **body})
