"""The API's documented answers, so the OpenAPI document says every status a route can return.

- `ErrorBody` is the one error shape (`api.errors` renders every error as it).
- `errors(404, 409, ...)` gives a route's own error statuses, for its `responses=`.
- `document_api(app)` adds, in one place, what an operation inherits from what it depends on:
  401 and the bearer security requirement when it needs a tenant API key, 422 when it takes
  input, 415 when it takes a JSON body, 429 (with `Retry-After`) on the rate-limited prefixes,
  503 when it needs Temporal, 500 when it reads a tenant's encrypted settings. It also gives
  every documented error without a body the `ErrorBody` schema, so routes added later (or that
  write `{404: {"description": ...}}` by hand) are documented the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field

from api.deps import get_current_tenant, get_temporal

SECURITY_SCHEME = "bearerAuth"
"""The name of the tenant API key scheme in `components.securitySchemes`."""

RATE_LIMITED_PREFIXES = ("/api/v1/", "/webhooks/")
"""Where requests are rate limited per API key or per webhook tenant (429 with Retry-After)."""

ErrorDetail = str | list[Any] | dict[str, Any]


class ErrorBody(BaseModel):
    """Every error the API answers: a short, stable `error` and a `detail` that says what to
    fix (a sentence, or the list of problems for invalid input)."""

    error: str = Field(description="What went wrong, short and stable (safe to match on).")
    detail: ErrorDetail = Field(
        description="What exactly, and what to do: a sentence, or a list of problems "
        "(`loc`, `msg`, `type` for invalid requests)."
    )


DESCRIPTIONS: dict[int, str] = {
    400: "Bad request: the detail says what is missing.",
    401: "Missing or invalid credentials (API key or webhook signature).",
    403: "Forbidden: the detail says why.",
    404: "Not found for this tenant.",
    409: "Conflict with the resource's state: the detail says why; nothing was done.",
    413: "Body too large.",
    415: "Unsupported Content-Type: send application/json.",
    422: "Invalid input: the detail names the field(s) and what is wrong.",
    429: "Rate limited: retry after the number of seconds in Retry-After.",
    500: "Server misconfigured: stored credentials cannot be decrypted with the secret key.",
    503: "Temporal (or the database) is unavailable, or did not answer in time: retry.",
    504: "A worker did not answer in time.",
}

RETRY_AFTER_HEADER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def errors(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's own error statuses, with the `ErrorBody` schema.

    A description can be given per status as `_404="Unknown lead."`."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description = descriptions.get(f"_{code}") or DESCRIPTIONS[code]
        out[code] = {"model": ErrorBody, "description": description}
    unknown = {name for name in descriptions if int(name.lstrip("_")) not in codes}
    if unknown:
        raise ValueError(f"descriptions for statuses not listed: {sorted(unknown)}")
    return out


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _error_response(code: int, description: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description or DESCRIPTIONS.get(code, "Error."),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if code == 429:
        response["headers"] = RETRY_AFTER_HEADER
    return response


def _ensure_error_content(response: dict[str, Any]) -> None:
    content = response.setdefault("content", {})
    json_content = content.setdefault("application/json", {})
    schema = json_content.get("schema")
    if not schema or schema == {} or "HTTPValidationError" in str(schema.get("$ref", "")):
        json_content["schema"] = {"$ref": "#/components/schemas/ErrorBody"}


def _operation_defaults(path: str, dependant: Dependant, operation: dict[str, Any]) -> None:
    calls = set(_calls(dependant))
    responses: dict[str, Any] = operation.setdefault("responses", {})

    def add(code: int) -> None:
        responses.setdefault(str(code), _error_response(code))

    if get_current_tenant in calls:
        operation.setdefault("security", [{SECURITY_SCHEME: []}])
    if operation.get("security"):
        add(401)
    if operation.get("parameters") or operation.get("requestBody"):
        add(422)
    body = operation.get("requestBody", {}).get("content", {})
    if "application/json" in body:
        add(415)
    if "multipart/form-data" in body:
        responses.setdefault("400", _error_response(400, "Malformed multipart body."))
    if path.startswith(RATE_LIMITED_PREFIXES):
        add(429)
        add(500)  # every tenant resource reads the tenant's encrypted settings or rows
    if get_temporal in calls:
        add(503)
    for code, response in responses.items():
        if code[:1] in ("4", "5"):
            _ensure_error_content(response)
            if code == "429":
                response.setdefault("headers", RETRY_AFTER_HEADER)


def document_api(app: FastAPI) -> None:
    """Make `app.openapi()` the honest contract (see the module docstring). Call it once the
    routers are included; the document is built on first request, so routes added up to
    then are covered."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["ErrorBody"] = ErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant API key: `Authorization: Bearer lf_…` "
            "(`leadflow tenant create` prints one; `leadflow up` prints the demo tenant's).",
        }
        # Included routers are not flattened into app.routes: their routes are visited with
        # the context the inclusion gives them (prefix, router-level dependencies).
        for context in iter_route_contexts(app.routes):
            if not isinstance(context.original_route, APIRoute) or not context.include_in_schema:
                continue
            path = str(context.path_format)
            path_item = schema.get("paths", {}).get(path, {})
            for method in context.methods or ():
                operation = path_item.get(method.lower())
                if operation is not None:
                    _operation_defaults(path, context.dependant, operation)
        # FastAPI's default 422 body was replaced by ErrorBody everywhere (api/errors.py
        # renders validation errors so): its schemas go when nothing refers to them any more.
        if "/HTTPValidationError" not in json.dumps(schema.get("paths", {})):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
