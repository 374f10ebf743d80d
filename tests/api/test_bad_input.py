"""The API answers bad input with a 4xx in the `{"error","detail"}` shape, never a 500:
out-of-range paging parameters on every list endpoint, unparseable date bounds, and JSON bodies
that are nested too deep, not UTF-8, of the wrong Content-Type or not an object.

Operations and their parameters come from the app's OpenAPI document, so a new list endpoint
or JSON route is covered as soon as it exists (and an integer query parameter without bounds
fails the test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.webhooks.parsers import MAX_JSON_DEPTH
from models.db import Database
from models.settings import Settings
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(120)

HUGE = "9223372036854775808"  # 2**63: one past PostgreSQL's and SQLite's largest integer
OUT_OF_RANGE = [HUGE, "-1", "1" + "0" * 30, "-9223372036854775809"]
DEEP = b"[" * 1000 + b"]" * 1000
NOT_UTF8 = b'{"title": "caf\xe9", "body": "\xff\xfe"}'


@pytest.fixture
async def app(
    sqlite_url: str, settings_factory: Callable[..., Settings], temporal_address: str
) -> AsyncIterator[FastAPI]:
    """The app as `leadflow api` runs it, on the session's real Temporal dev server (routes
    that signal workflows resolve their Temporal client before they look at the body)."""
    app = create_app(settings_factory(sqlite_url, temporal_address=temporal_address))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as client:
        yield client


@pytest.fixture
async def key(sqlite_db: Database) -> str:
    _, api_key = await make_tenant(sqlite_db)
    return api_key


def operations(app: FastAPI, methods: set[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path with path parameters filled, operation) of every /api/ operation."""
    found = []
    for path, ops in app.openapi()["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, op in ops.items():
            if method in methods:
                filled = path
                for param in op.get("parameters", []):
                    if param["in"] == "path":
                        filled = filled.replace("{" + param["name"] + "}", "x")
                found.append((method, filled, op))
    assert found
    return found


def _is_integer(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "integer" or any(
        s.get("type") == "integer" for s in schema.get("anyOf", [])
    )


def assert_shaped_4xx(response: httpx.Response, expected: int | None = None) -> None:
    what = f"{response.request.method} {response.request.url}: {response.text[:300]}"
    if expected is None:
        assert 400 <= response.status_code < 500, what
    else:
        assert response.status_code == expected, what
    assert set(response.json()) == {"error", "detail"}, what


async def test_every_integer_query_parameter_is_bounded_and_out_of_range_is_a_422(
    app: FastAPI, http: httpx.AsyncClient, key: str
) -> None:
    checked = []
    for _, path, op in operations(app, {"get"}):
        for param in op.get("parameters", []):
            if param["in"] != "query" or not _is_integer(param["schema"]):
                continue
            schema = param["schema"]
            if "anyOf" in schema:  # an optional integer: its bounds are on the integer
                schema = next(s for s in schema["anyOf"] if s.get("type") == "integer")
            assert "maximum" in schema and "minimum" in schema, (path, param)
            for value in OUT_OF_RANGE:
                response = await http.get(
                    path, params={param["name"]: value}, headers={"Authorization": f"Bearer {key}"}
                )
                assert_shaped_4xx(response, 422)
            checked.append(f"{path}?{param['name']}")
    # the list endpoints that page: conversations, job records, outbox, knowledge search
    assert {
        "/api/v1/conversations?offset",
        "/api/v1/conversations?limit",
        "/api/v1/jobs/x/records?after_row",
        "/api/v1/jobs/x/records?limit",
        "/api/v1/outbox?limit",
        "/api/v1/knowledge/search?limit",
    } <= set(checked), checked


async def test_the_largest_offset_allowed_is_answered(http: httpx.AsyncClient, key: str) -> None:
    response = await http.get(
        "/api/v1/conversations",
        params={"offset": 1_000_000, "limit": 500},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["conversations"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"from": "99999-01-01"},
        {"to": "0000-01-01"},
        {"from": "-1"},
        {"to": HUGE},
        {"from": "9999-12-31T23:59:59+99:00"},
        {"from": "2026-01-02", "to": "1900-01-01"},
        {"from": "0001-01-01", "to": "9999-12-31"},
        {"from": "x" * 65},
    ],
)
async def test_usage_date_bounds_out_of_range_are_a_422(
    http: httpx.AsyncClient, key: str, params: dict[str, str]
) -> None:
    response = await http.get(
        "/api/v1/usage", params=params, headers={"Authorization": f"Bearer {key}"}
    )
    assert_shaped_4xx(response, 422)


def json_operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    found = [
        (method, path, op)
        for method, path, op in operations(app, {"post", "put", "patch"})
        if "application/json" in op.get("requestBody", {}).get("content", {})
    ]
    assert len(found) >= 3, found  # knowledge, settings, conversations, leads...
    return found


# (name, body, Content-Type, expected status or None for any 4xx)
BAD_JSON_BODIES: list[tuple[str, bytes, str, int | None]] = [
    ("JSON nested 1000 deep", DEEP, "application/json", 422),
    (f"JSON nested {MAX_JSON_DEPTH + 1} deep", b"[" * 65 + b"]" * 65, "application/json", 422),
    ("invalid UTF-8", NOT_UTF8, "application/json", 422),
    ("invalid UTF-8, charset given", NOT_UTF8, "application/json; charset=utf-8", 422),
    ("wrong Content-Type", b'{"title": "a", "body": "b"}', "text/plain", 415),
    ("form Content-Type", b'{"title": "a"}', "application/x-www-form-urlencoded", 415),
    ("truncated JSON", b'{"title": ', "application/json", 422),
    ("JSON scalar", b"42", "application/json", 422),
]


@pytest.mark.parametrize(
    ("name", "body", "content_type", "expected"),
    BAD_JSON_BODIES,
    ids=[b[0] for b in BAD_JSON_BODIES],
)
async def test_every_json_route_refuses_a_bad_body_with_a_4xx(
    app: FastAPI,
    http: httpx.AsyncClient,
    key: str,
    name: str,
    body: bytes,
    content_type: str,
    expected: int | None,
) -> None:
    for method, path, _ in json_operations(app):
        response = await http.request(
            method.upper(),
            path,
            content=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
        )
        assert_shaped_4xx(response, expected)


async def test_the_depth_and_utf8_refusals_name_the_problem(
    http: httpx.AsyncClient, key: str
) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    deep = await http.post("/api/v1/knowledge", content=DEEP, headers=headers)
    assert deep.status_code == 422
    assert deep.json() == {
        "error": "invalid JSON body",
        "detail": f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep; refused",
    }
    latin1 = await http.post("/api/v1/knowledge", content=NOT_UTF8, headers=headers)
    assert latin1.status_code == 422
    assert "not UTF-8" in latin1.json()["detail"]
    # the same document, nested within the limit and UTF-8, is taken
    ok = await http.post(
        "/api/v1/knowledge",
        json={"title": "Café", "body": "[[[{{{ brackets in text are text"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert ok.status_code == 201, ok.text
