"""The OpenAPI document is the contract (api/responses.py): every error documented with the one
error shape, the bearer scheme on the operations that need a key, 429 with Retry-After on the
limited ones; /docs and /redoc work offline; every error body, also Starlette's own (404, 405),
has that shape. The fuzzed half of the contract is tests/api/test_api_contract.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.responses import RATE_LIMITED_PREFIXES, SECURITY_SCHEME, errors
from models.db import Database
from models.settings import Settings
from tests.conftest import make_tenant

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture
async def http(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(sqlite_url, temporal_address="127.0.0.1:1"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as c:
            yield c


@pytest.fixture
async def document(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


async def test_every_error_is_documented_with_the_error_shape(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert set(schemas["ErrorBody"]["required"]) == {"error", "detail"}
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 shape is not what we answer
    operations = _operations(document)
    assert len(operations) > 40
    for method, path, operation in operations:
        for status, response in operation["responses"].items():
            if status[0] not in "45" or (path, status) == ("/ready", "503"):
                continue  # /ready's 503 is its own report, documented as such
            schema = response["content"]["application/json"]["schema"]
            assert schema == ERROR_REF, (method, path, status, schema)
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in operation["responses"], (method, path)


async def test_bearer_scheme_marks_the_operations_that_need_a_key(
    document: dict[str, Any],
) -> None:
    scheme = document["components"]["securitySchemes"][SECURITY_SCHEME]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for method, path, operation in _operations(document):
        secured = operation.get("security") == [{SECURITY_SCHEME: []}]
        # the inbound e-mail bridge authenticates with the tenant's key; other webhooks sign;
        # signing in takes none (/auth/me, /logout and /password are the session cookie's own)
        needs_key = (
            path.startswith("/api/v1/") and not path.startswith("/api/v1/auth/")
        ) or path.startswith("/webhooks/email/")
        assert secured == needs_key, (method, path, operation.get("security"))
        if secured:
            assert "401" in operation["responses"], (method, path)
    assert "security" not in document["paths"]["/health"]["get"]


async def test_limited_operations_document_429_with_retry_after(document: dict[str, Any]) -> None:
    limited = [
        (method, path, operation)
        for method, path, operation in _operations(document)
        if path.startswith(RATE_LIMITED_PREFIXES)
    ]
    assert any(path.startswith("/webhooks/") for _, path, _ in limited)
    for method, path, operation in limited:
        too_many = operation["responses"].get("429")
        assert too_many is not None, (method, path)
        assert "Retry-After" in too_many["headers"], (method, path)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_work_offline(http: httpx.AsyncClient, page: str) -> None:
    """The page's scripts and styles are served by leadflow itself: no CDN, no Google Fonts."""
    response = await http.get(page)
    assert response.status_code == 200
    html = response.text
    assert "cdn" not in html.lower() and "fonts.googleapis" not in html
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assets += re.findall(r"""(?:url|spec-url)\s*:\s*['"]([^'"]+)['"]""", html)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
        fetched = await http.get(asset)
        assert fetched.status_code == 200, asset
        assert fetched.content, asset
    assert "/openapi.json" in html


async def test_swagger_ui_shows_the_authorize_button(http: httpx.AsyncClient) -> None:
    """Swagger UI shows "Authorize" when the document declares a security scheme: it does."""
    document = (await http.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]
    assert (await http.get("/docs")).status_code == 200


async def test_starlette_errors_have_the_error_shape(http: httpx.AsyncClient) -> None:
    missing = await http.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found", "detail": "Not Found"}

    # 405 names every method of the path (two routes serve /api/v1/conversations) ...
    wrong = await http.request("OPTIONS", "/api/v1/conversations")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, POST"
    assert set(wrong.json()) == {"error", "detail"}
    # ... of the most specific template: /knowledge/search is the search, not a document id
    search = await http.request("PUT", "/api/v1/knowledge/search")
    assert (search.status_code, search.headers["allow"]) == (405, "GET")


async def test_error_details_are_never_null(http: httpx.AsyncClient, sqlite_db: Database) -> None:
    tenant_id, _ = await make_tenant(sqlite_db)
    invalid_key = await http.get(
        "/api/v1/settings", headers={"Authorization": "Bearer lf_not-a-key"}
    )
    assert invalid_key.status_code == 401
    assert invalid_key.json()["detail"]

    # A webhook body that is not the provider's: the detail lists the problems (it was null).
    for path in (f"/webhooks/waha/{tenant_id}", f"/webhooks/chatwoot/{tenant_id}"):
        for body in (b"", b"[]", b'{"event": 1}'):
            answer = await http.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == 422, (path, body, answer.text)
            detail = answer.json()["detail"]
            assert isinstance(detail, list) and detail and all(detail), (path, body, detail)


def test_errors_helper_refuses_a_description_for_an_unlisted_status() -> None:
    assert errors(404, _404="Unknown lead.")[404]["description"] == "Unknown lead."
    with pytest.raises(ValueError, match="not listed"):
        errors(404, _409="Refused.")
