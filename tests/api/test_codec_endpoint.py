"""The remote codec endpoint (api/routes/codec.py), over real HTTP: the Temporal codec-server
protocol, the deployment's codec token (bearer or in the path; tenant API keys refused), bad
input as 422, and CORS for the Temporal UI's origin only."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from models.db import Database
from models.payload_codec import ENCODING, KEY_ID, key_id, new_payload_key, parse_payload_keys
from tests.conftest import make_tenant
from tests.live_stack import serve_app

TOKEN = "codec-token-for-the-endpoint-tests-0123456789"
UI = "http://127.0.0.1:8233"
KEYS = new_payload_key()
TEXT = "Hoi, ik ben Ans, bel me op 0612345678"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _body(*payloads: tuple[dict[str, bytes], bytes]) -> dict[str, Any]:
    return {
        "payloads": [
            {"metadata": {k: _b64(v) for k, v in metadata.items()}, "data": _b64(data)}
            for metadata, data in payloads
        ]
    }


PLAIN = ({"encoding": b"json/plain"}, json.dumps({"text": TEXT}).encode())


async def _serve(settings_factory: Any, sqlite_url: str, **overrides: Any) -> Any:
    values = {"payload_keys": KEYS, "codec_token": TOKEN, "temporal_ui_port": 8233, **overrides}
    return serve_app(create_app(settings_factory(sqlite_url, **values)))


@pytest.fixture
async def codec(
    settings_factory: Any, sqlite_url: str, sqlite_db: Database
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        await _serve(settings_factory, sqlite_url) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield http


BEARER = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}


async def test_encode_then_decode_gives_the_payload_back(codec: httpx.AsyncClient) -> None:
    encoded = await codec.post("/codec/encode", json=_body(PLAIN), headers=BEARER)
    assert encoded.status_code == 200, encoded.text
    (sealed,) = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == ENCODING
    (key,) = parse_payload_keys(KEYS)
    assert base64.b64decode(sealed["metadata"][KEY_ID]) == key_id(key).encode()
    assert TEXT.encode() not in base64.b64decode(sealed["data"])

    decoded = await codec.post("/codec/decode", json=encoded.json(), headers=BEARER)
    assert decoded.status_code == 200, decoded.text
    (opened,) = decoded.json()["payloads"]
    assert base64.b64decode(opened["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(opened["data"])) == {"text": TEXT}

    # The UI's form: the token in the path, no Authorization header; plain payloads and empty
    # data (a null) pass through decoding unchanged.
    mixed = {"payloads": [*encoded.json()["payloads"], *_body(PLAIN)["payloads"]]}
    mixed["payloads"].append({"metadata": {"encoding": _b64(b"binary/null")}})
    by_path = await codec.post(
        f"/codec/{TOKEN}/decode", json=mixed, headers={"X-Namespace": "default"}
    )
    assert by_path.status_code == 200, by_path.text
    first, second, null = by_path.json()["payloads"]
    assert first == second == _body(PLAIN)["payloads"][0]
    assert null == {"metadata": {"encoding": _b64(b"binary/null")}, "data": ""}


@pytest.mark.parametrize(
    ("path", "headers", "status", "error"),
    [
        ("/codec/decode", {}, 401, "missing codec token"),
        ("/codec/decode", {"Authorization": "Basic " + TOKEN}, 401, "missing codec token"),
        (
            "/codec/decode",
            {"Authorization": "Bearer " + TOKEN[:-1] + "x"},
            403,
            "wrong codec token",
        ),
        ("/codec/encode", {"Authorization": "Bearer nope"}, 403, "wrong codec token"),
        (f"/codec/{TOKEN}x/decode", {}, 403, "wrong codec token"),
        (f"/codec/{TOKEN}/decode", {"X-Namespace": "other"}, 403, "namespace not served"),
    ],
)
async def test_without_the_codec_token_nothing_is_decoded(
    codec: httpx.AsyncClient, path: str, headers: dict[str, str], status: int, error: str
) -> None:
    encoded = await codec.post("/codec/encode", json=_body(PLAIN), headers=BEARER)
    answer = await codec.post(path, json=encoded.json(), headers=headers)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == error and body["detail"] and "payloads" not in body
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


async def test_a_tenant_api_key_is_not_a_codec_token(
    codec: httpx.AsyncClient, sqlite_db: Database
) -> None:
    _, api_key = await make_tenant(sqlite_db)
    answer = await codec.post(
        "/codec/decode", json=_body(PLAIN), headers={"Authorization": f"Bearer {api_key}"}
    )
    assert answer.status_code == 403 and answer.json()["error"] == "wrong codec token"


async def test_without_a_configured_token_the_codec_is_disabled(
    settings_factory: Any, sqlite_url: str, sqlite_db: Database, tmp_path: Path
) -> None:
    async with (
        await _serve(settings_factory, sqlite_url, codec_token=None) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        for headers in ({}, {"Authorization": "Bearer x"}):
            answer = await http.post("/codec/decode", json=_body(PLAIN), headers=headers)
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"] == "codec disabled"
        answer = await http.post("/codec//decode", json=_body(PLAIN))
        assert answer.status_code in (403, 404, 405), answer.text


@pytest.mark.parametrize(
    ("body", "error", "detail"),
    [
        (
            {"payloads": [{"metadata": {"encoding": "!!!"}, "data": ""}]},
            "invalid payloads",
            "payloads[0].metadata.encoding is not base64",
        ),
        (
            {"payloads": [{"metadata": {}, "data": "a"}]},
            "invalid payloads",
            "payloads[0].data is not base64",
        ),
        ({"payloads": "nope"}, "invalid request", None),
        ({}, "invalid request", None),
        ([], "invalid request", None),
    ],
)
async def test_malformed_payloads_are_422(
    codec: httpx.AsyncClient, body: Any, error: str, detail: str | None
) -> None:
    answer = await codec.post("/codec/decode", json=body, headers=BEARER)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == error
    if detail:
        assert answer.json()["detail"] == detail


async def test_invalid_json_and_unknown_keys_are_422(codec: httpx.AsyncClient) -> None:
    answer = await codec.post(
        "/codec/decode",
        content=b'{"payloads": [',
        headers={**BEARER, "content-type": "application/json"},
    )
    assert answer.status_code == 422 and answer.json()["error"] == "invalid request"
    foreign = {"encoding": ENCODING, KEY_ID: b"feedfacefeedface"}
    answer = await codec.post("/codec/decode", json=_body((foreign, b"x" * 40)), headers=BEARER)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "cannot decode"
    assert "'feedfacefeedface'" in answer.json()["detail"]


async def test_cors_for_the_ui_origin_only(codec: httpx.AsyncClient) -> None:
    preflight = await codec.options(
        f"/codec/{TOKEN}/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        },
    )
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == UI
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-namespace", "authorization"} <= allowed
    bearer_preflight = await codec.options(
        "/codec/decode",
        headers={"Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST"},
    )
    assert bearer_preflight.status_code == 204
    assert bearer_preflight.headers["access-control-allow-origin"] == "http://localhost:8233"

    evil = "http://evil.example"
    refused = await codec.options(
        "/codec/decode", headers={"Origin": evil, "Access-Control-Request-Method": "POST"}
    )
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers

    from_ui = await codec.post(
        f"/codec/{TOKEN}/decode",
        json=_body(PLAIN),
        headers={"Origin": UI, "X-Namespace": "default"},
    )
    assert from_ui.status_code == 200 and from_ui.headers["access-control-allow-origin"] == UI
    # An error still reaches the UI's page (with CORS headers), so it can show why.
    wrong = await codec.post("/codec/x/decode", json=_body(PLAIN), headers={"Origin": UI})
    assert wrong.status_code == 403 and wrong.headers["access-control-allow-origin"] == UI
    # Another page's script gets no CORS headers: the browser keeps the answer from it.
    from_evil = await codec.post(
        f"/codec/{TOKEN}/decode", json=_body(PLAIN), headers={"Origin": evil}
    )
    assert "access-control-allow-origin" not in from_evil.headers


async def test_the_allowed_origins_are_configurable(
    settings_factory: Any, sqlite_url: str, sqlite_db: Database
) -> None:
    ui = "https://temporal.example.com"
    async with (
        await _serve(settings_factory, sqlite_url, codec_cors_origins=[ui]) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        ok = await http.options(
            "/codec/decode", headers={"Origin": ui, "Access-Control-Request-Method": "POST"}
        )
        assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == ui
        default_ui = await http.options(
            "/codec/decode", headers={"Origin": UI, "Access-Control-Request-Method": "POST"}
        )
        assert default_ui.status_code == 403


def test_the_token_in_the_path_never_reaches_the_access_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """uvicorn logs every request's path (`leadflow api`); the codec route redacts its token."""
    access = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        for path in (f"/codec/{TOKEN}/decode", f"/codec/{TOKEN}/encode?x=1", "/codec/decode"):
            access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "POST", path, "1.1", 200)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        '127.0.0.1:5 - "POST /codec/***/decode HTTP/1.1" 200',
        '127.0.0.1:5 - "POST /codec/***/encode?x=1 HTTP/1.1" 200',
        '127.0.0.1:5 - "POST /codec/decode HTTP/1.1" 200',
    ]
