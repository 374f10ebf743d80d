"""One worker client serves every tenant: a cookie one tenant's endpoint sets must not ride along
on another tenant's request to the same host (real HTTP on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from models.netguard import guarded_client
from tests.fakes.http_server import LiveServer


async def _set_cookie(request: Request) -> JSONResponse:
    response = JSONResponse({"ok": True})
    # What a CRM's load balancer or login endpoint does: a session cookie for the whole host.
    response.set_cookie("session", "tenant-a-session", path="/")
    return response


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "cookie": request.headers.get("cookie"),
            "authorization": request.headers.get("authorization"),
        }
    )


@pytest.fixture(scope="module")
def crm_host() -> Iterator[str]:
    server = LiveServer(
        Starlette(routes=[Route("/login", _set_cookie, methods=["POST"]), Route("/echo", _echo)])
    ).start()
    try:
        yield server.url
    finally:
        server.stop()


async def test_a_cookie_set_for_tenant_a_is_not_sent_with_tenant_bs_request(
    crm_host: str,
) -> None:
    async with guarded_client(["127.0.0.1"]) as http:
        login = await http.post(f"{crm_host}/login", headers={"Authorization": "Bearer token-a"})
        assert login.status_code == 200
        assert login.cookies.get("session") == "tenant-a-session"  # the server did set it
        echoed = (
            await http.get(f"{crm_host}/echo", headers={"Authorization": "Bearer token-b"})
        ).json()
    assert echoed == {"cookie": None, "authorization": "Bearer token-b"}


async def test_the_fake_does_catch_a_client_that_keeps_cookies(crm_host: str) -> None:
    # The same exchange through a default httpx client: the cookie comes back (the bug).
    async with httpx.AsyncClient() as http:
        await http.post(f"{crm_host}/login", headers={"Authorization": "Bearer token-a"})
        echoed = (await http.get(f"{crm_host}/echo")).json()
    assert echoed["cookie"] == "session=tenant-a-session"


async def test_cookies_set_on_the_client_by_hand_are_not_kept(crm_host: str) -> None:
    async with guarded_client(["127.0.0.1"]) as http:
        http.cookies.set("session", "planted", domain="127.0.0.1")
        echoed = (await http.get(f"{crm_host}/echo")).json()
    assert echoed["cookie"] is None
