"""One error type, rendered by one handler as {"error": ..., "detail": ...}, documented as
`api.responses.ErrorBody`: `detail` is always there and never null."""

from __future__ import annotations

from collections.abc import Mapping
from email.message import Message
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from models.crypto import CredentialsError
from models.knowledge.index import KnowledgeBackendError, KnowledgeBackendUnavailable
from models.webhooks import WebhookPayloadError


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        error: str,
        detail: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.headers = headers


def _render(
    status_code: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    if detail is None:
        # One shape for every error: a detail is always there (the status's phrase at least).
        detail = _phrase(status_code)
    elif not isinstance(detail, str | list | dict):
        detail = str(detail)  # a number or an id object: text, as ErrorBody documents it
    return JSONResponse(
        status_code=status_code,
        content={"error": error, "detail": detail},
        headers=dict(headers) if headers else None,
    )


def _phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "error"


def _is_json(scope: Scope) -> bool:
    """What FastAPI parses as JSON: `application/json` or `application/*+json`."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            header = Message()
            header["content-type"] = value.decode("latin-1")
            subtype = header.get_content_subtype()
            return header.get_content_maintype() == "application" and (
                subtype == "json" or subtype.endswith("+json")
            )
    return False


class JsonBodyGuard:
    """Gives the API's JSON bodies the webhook loader's rules (UTF-8, nesting depth) before
    FastAPI parses them: its `json.loads` would recurse ~1000 levels deep and then answer a
    generic 400, and a body nested a few hundred levels would reach the models.

    Webhooks are left alone: they read their size-limited raw body themselves and load it
    with the same rules (`api.webhooks.parsers.load_json`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PUT", "PATCH")
            or scope["path"].startswith("/webhooks/")
            or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        # imported here: the api.webhooks package imports this module (ApiError) on load
        from api.webhooks.parsers import checked_json_text

        if body.strip():
            try:
                checked_json_text(body)
            except WebhookPayloadError as exc:
                await _render(422, "invalid JSON body", exc.message)(scope, receive, send)
                return
        replayed = False

        async def replay() -> AsgiMessage:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def install_error_handlers(app: FastAPI) -> None:
    # Bodies refused before they are parsed are rendered in the same {"error","detail"} shape.
    app.add_middleware(JsonBodyGuard)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _render(exc.status_code, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI hands a JSON route the raw bytes when the Content-Type is not JSON, and then
        # reports that they are not an object: the request's real problem is its media type.
        if any(
            e.get("loc", ())[:1] == ("body",) and isinstance(e.get("input"), bytes)
            for e in exc.errors()
        ):
            declared = request.headers.get("content-type")
            given = f"Content-Type is {declared!r}" if declared else "no Content-Type was sent"
            return _render(415, "unsupported media type", f"{given}; expected application/json")
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return _render(422, "invalid request", problems)

    @app.exception_handler(CredentialsError)
    async def _credentials(_: Request, exc: CredentialsError) -> JSONResponse:
        # The operator's configuration is wrong, not the request: say so instead of a bare 500.
        return _render(500, "server misconfigured", str(exc))

    @app.exception_handler(KnowledgeBackendError)
    async def _knowledge_backend(_: Request, exc: KnowledgeBackendError) -> JSONResponse:
        # A configured search backend (Weaviate) that does not answer, or refuses: the message
        # names it; never a 500, never a silent fallback to the database.
        if isinstance(exc, KnowledgeBackendUnavailable):
            return _render(503, "knowledge backend unavailable", str(exc))
        return _render(502, "knowledge backend error", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers 400 "There was an error parsing the body" for any decoding failure;
        # the cause says which one (JsonBodyGuard catches these first; this is the backstop).
        cause = exc.__cause__
        if isinstance(cause, UnicodeDecodeError):
            return _render(422, "invalid JSON body", "the body is not valid UTF-8")
        if isinstance(cause, RecursionError):
            return _render(422, "invalid JSON body", "the JSON is nested too deeply")
        # Starlette's own answers (404 no such path, 405) keep their headers and get the same
        # shape; a 405's Allow names every method of the path, not just the first route's.
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return _render(exc.status_code, str(exc.detail), None, headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods of the resource at this path: of the routes whose template matches it, those
    with the most specific template (`/knowledge/search` over `/knowledge/{document_id}`)."""
    path = request.scope.get("path", "")
    matches: dict[str, set[str]] = {}
    for context in iter_route_contexts(request.app.routes):
        regex = getattr(context, "path_regex", None)
        if regex is not None and regex.match(path):
            template = str(getattr(context, "path_format", ""))
            matches.setdefault(template, set()).update(getattr(context, "methods", None) or ())
    if not matches:
        return []
    specific = min(matches, key=lambda template: template.count("{"))
    return sorted(matches[specific])
