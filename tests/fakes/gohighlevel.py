"""A fake GoHighLevel (LeadConnector API v2) over real HTTP on loopback, built from the shapes in
../shared/wire/gohighlevel.md: contact upsert / update / get / delete, duplicate search, tags,
notes, the location's custom field definitions, and the documented error bodies.

Contacts live in `contacts` (id -> the contact as the API returns it, custom fields as
`{"id", "value"}`); every request is recorded (`calls`), failures are injected with `fail`.
Like a location with "Allow Duplicate Contact" off, the upsert matches e-mail first, then phone.

    with GoHighLevelFake(token="pit-1", location_id="loc1") as ghl:
        ... ghl.url ... ghl.contacts ...
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.crm import FakeServer, _now

API_VERSION = "2021-07-28"
STANDARD_FIELDS = (
    "firstName",
    "lastName",
    "name",
    "email",
    "phone",
    "companyName",
    "source",
    "website",
    "address1",
    "city",
    "state",
    "postalCode",
    "country",
    "timezone",
    "dnd",
)


def unauthorized_body() -> dict[str, Any]:
    """§4, spec-example."""
    return {
        "statusCode": 401,
        "message": "Invalid token: access token is invalid",
        "error": "Unauthorized",
    }


def unprocessable_body(*messages: str) -> dict[str, Any]:
    """§4: `message` is a list of strings on 422."""
    return {
        "statusCode": 422,
        "message": list(messages) or ["Unprocessable Entity"],
        "error": "Unprocessable Entity",
    }


def bad_request_body(message: str = "Bad Request") -> dict[str, Any]:
    return {"statusCode": 400, "message": message}


def rate_limit_headers(
    *, interval_ms: int = 10000, daily_remaining: int = 199000
) -> dict[str, str]:
    """The §2 headers of an exhausted burst window."""
    return {
        "X-RateLimit-Limit-Daily": "200000",
        "X-RateLimit-Daily-Remaining": str(daily_remaining),
        "X-RateLimit-Interval-Milliseconds": str(interval_ms),
        "X-RateLimit-Max": "100",
        "X-RateLimit-Remaining": "0",
    }


def _ghl_id() -> str:
    # ids in the spec examples are 20 alphanumerics ("seD4PfOuKoVMLkEZqohJ")
    return secrets.token_hex(10)


class GoHighLevelFake(FakeServer):
    def __init__(
        self, *, token: str = "pit-test", location_id: str = "ve9EPM428h8vShlRW1KT"
    ) -> None:
        super().__init__()
        self.token = token
        self.location_id = location_id
        self.contacts: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.reject: dict[str, Any] = {}  # field -> value the location refuses with a 422
        self.custom_field_ids: list[str] = ["3sv6UEo51C9Bmpo1cKTq"]
        self.route("POST", "/contacts/upsert", self._upsert)
        self.route("GET", "/contacts/search/duplicate", self._duplicate)
        self.route("POST", "/contacts/(?P<id>[^/]+)/tags", self._add_tags)
        self.route("DELETE", "/contacts/(?P<id>[^/]+)/tags", self._remove_tags)
        self.route("POST", "/contacts/(?P<id>[^/]+)/notes", self._note)
        self.route("GET", "/contacts/(?P<id>[^/]+)", self._get)
        self.route("PUT", "/contacts/(?P<id>[^/]+)", self._update)
        self.route("DELETE", "/contacts/(?P<id>[^/]+)", self._delete)
        self.route("GET", "/locations/(?P<loc>[^/]+)/customFields", self._custom_fields)

    def __enter__(self) -> GoHighLevelFake:
        super().__enter__()
        return self

    def authorize(self, request: Request, path: str) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse(unauthorized_body(), status_code=401)
        if request.headers.get("version") != API_VERSION:
            # the header is required (§1); the spec does not print this answer's body
            return JSONResponse(bad_request_body("Version header is required"), status_code=400)
        return None

    # ---- state ---------------------------------------------------------------------------

    def add_contact(
        self,
        *,
        email: str | None = None,
        phone: str | None = None,
        tags: list[str] | None = None,
        custom: dict[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        cid = _ghl_id()
        self.contacts[cid] = {
            "id": cid,
            "locationId": self.location_id,
            "email": email,
            "emailLowerCase": email.lower() if email else None,
            "phone": phone,
            "dnd": False,
            "tags": list(tags or []),
            "customFields": [{"id": k, "value": v} for k, v in (custom or {}).items()],
            "dateAdded": _now(),
            "dateUpdated": _now(),
            "source": "public api",
            "type": "lead",
            **fields,
        }
        return cid

    def by_email(self, email: str) -> dict[str, Any] | None:
        for contact in self.contacts.values():
            if contact.get("emailLowerCase") == email.lower():
                return contact
        return None

    def by_phone(self, phone: str) -> dict[str, Any] | None:
        for contact in self.contacts.values():
            if contact.get("phone") == phone:
                return contact
        return None

    def custom(self, contact_id: str, field_id: str) -> Any:
        for item in self.contacts[contact_id]["customFields"]:
            if item["id"] == field_id:
                return item["value"]
        return None

    # ---- handlers ------------------------------------------------------------------------

    def _invalid(self, body: dict[str, Any]) -> Response | None:
        for key, bad in self.reject.items():
            if body.get(key) == bad:
                return JSONResponse(
                    unprocessable_body(f"{key} is invalid", f"{key} must be a valid value"),
                    status_code=422,
                )
        return None

    def _apply(self, contact: dict[str, Any], body: dict[str, Any]) -> None:
        for key in STANDARD_FIELDS:
            if key in body:
                contact[key] = body[key]
        if "email" in body:
            contact["emailLowerCase"] = body["email"].lower() if body["email"] else None
        if "tags" in body:  # "This field will overwrite all current tags"
            contact["tags"] = list(body["tags"])
        for item in body.get("customFields") or []:
            current = [c for c in contact["customFields"] if c["id"] != item["id"]]
            if item.get("field_value") not in (None, ""):
                current.append({"id": item["id"], "value": item["field_value"]})
            contact["customFields"] = current
        contact["dateUpdated"] = _now()

    def _missing(self) -> Response:
        return JSONResponse(bad_request_body("Contact not found"), status_code=404)

    async def _upsert(self, request: Request, m: re.Match[str]) -> Response:
        body = await self.json(request)
        if body.get("locationId") != self.location_id:
            return JSONResponse(unprocessable_body("locationId must be a string"), status_code=422)
        invalid = self._invalid(body)
        if invalid is not None:
            return invalid
        contact = (self.by_email(body["email"]) if body.get("email") else None) or (
            self.by_phone(body["phone"]) if body.get("phone") else None
        )
        new = contact is None
        if contact is None:
            contact = self.contacts[self.add_contact()]
        self._apply(contact, {k: v for k, v in body.items() if k != "locationId"})
        return JSONResponse({"new": new, "contact": contact, "traceId": _ghl_id()})

    async def _duplicate(self, request: Request, m: re.Match[str]) -> Response:
        query = request.query_params
        if query.get("locationId") != self.location_id:
            return JSONResponse(bad_request_body(), status_code=400)
        found = None
        if query.get("email"):
            found = self.by_email(query["email"])
        if found is None and query.get("number"):
            found = self.by_phone(query["number"])
        return JSONResponse({"contact": found})

    async def _get(self, request: Request, m: re.Match[str]) -> Response:
        contact = self.contacts.get(m["id"])
        if contact is None:
            return self._missing()
        return JSONResponse({"contact": contact})

    async def _update(self, request: Request, m: re.Match[str]) -> Response:
        contact = self.contacts.get(m["id"])
        if contact is None:
            return self._missing()
        body = await self.json(request)
        invalid = self._invalid(body)
        if invalid is not None:
            return invalid
        self._apply(contact, body)
        return JSONResponse({"succeded": True, "contact": contact})  # sic, §3

    async def _delete(self, request: Request, m: re.Match[str]) -> Response:
        if self.contacts.pop(m["id"], None) is None:
            return self._missing()
        return JSONResponse({"succeded": True})

    async def _add_tags(self, request: Request, m: re.Match[str]) -> Response:
        contact = self.contacts.get(m["id"])
        if contact is None:
            return self._missing()
        tags = list((await self.json(request)).get("tags") or [])
        if not tags:
            return JSONResponse(unprocessable_body("tags should not be empty"), status_code=422)
        contact["tags"] += [t for t in tags if t not in contact["tags"]]
        return JSONResponse({"tags": tags}, status_code=201)

    async def _remove_tags(self, request: Request, m: re.Match[str]) -> Response:
        contact = self.contacts.get(m["id"])
        if contact is None:
            return self._missing()
        tags = list((await self.json(request)).get("tags") or [])
        contact["tags"] = [t for t in contact["tags"] if t not in tags]
        return JSONResponse({"tags": contact["tags"]})

    async def _note(self, request: Request, m: re.Match[str]) -> Response:
        if m["id"] not in self.contacts:
            return self._missing()
        body = await self.json(request)
        if not body.get("body"):
            return JSONResponse(unprocessable_body("body should not be empty"), status_code=422)
        nid = _ghl_id()
        self.notes[nid] = {
            "id": nid,
            "body": body["body"],
            "userId": body.get("userId"),
            "dateAdded": _now(),
            "contactId": m["id"],
        }
        return JSONResponse({"note": self.notes[nid]}, status_code=201)

    async def _custom_fields(self, request: Request, m: re.Match[str]) -> Response:
        if m["loc"] != self.location_id:
            return JSONResponse(bad_request_body(), status_code=400)
        return JSONResponse(
            {
                "customFields": [
                    {
                        "id": fid,
                        "name": f"field {n}",
                        "fieldKey": f"contact.field_{n}",
                        "dataType": "TEXT",
                        "position": n,
                        "locationId": self.location_id,
                        "model": "contact",
                    }
                    for n, fid in enumerate(self.custom_field_ids)
                ]
            }
        )
