"""How the console's files are served (api/routes/web.py): `/` is the console, `/app` the old
enrichment page; assets come from an allowlist built from api/static/console/ with their media
types and the strict CSP; nothing outside the list is reachable, however the path is spelt."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.routes import web
from models.db import Database
from models.settings import Settings


@pytest.fixture
async def http(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(sqlite_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://leadflow.test"
        ) as client:
            yield client


def assert_strict(response: httpx.Response) -> None:
    policy = response.headers["content-security-policy"]
    directives = {
        name: value.strip()
        for name, _, value in (part.strip().partition(" ") for part in policy.split(";"))
        if name
    }
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no other origin
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"  # fetch and the EventSource: own origin only
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_root_is_the_console_and_app_the_enrichment_page(http: httpx.AsyncClient) -> None:
    console = await http.get("/")
    assert console.status_code == 200
    assert console.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/console/main.js"></script>' in console.text
    assert_strict(console)

    old = await http.get("/app")
    assert old.status_code == 200
    assert '<script src="/static/app.js" defer></script>' in old.text
    assert_strict(old)
    assert (await http.get("/static/app.js")).status_code == 200


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/console/main.js", "text/javascript; charset=utf-8"),
        ("/console/pages/inbox.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
    ],
)
async def test_assets_have_their_media_types(
    http: httpx.AsyncClient, path: str, media_type: str
) -> None:
    response = await http.get(path)
    assert response.status_code == 200, path
    assert response.headers["content-type"] == media_type
    assert_strict(response)
    relative = path.removeprefix("/console/")
    assert response.content == (web.CONSOLE_DIR / relative).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/console/index.html",  # served at / only
        "/console/nope.js",
        "/console/..%2Froutes%2Fweb.py",
        "/console/%2e%2e/%2e%2e/models/settings.py",
        "/console/pages%2F..%2F..%2Froutes%2Fweb.py",
        "/console/pages/%2E%2E/main.js",
        "/console//etc/passwd",
        "/console/",
        "/static/..%2Froutes%2Fweb.py",
        "/static/index.html",
    ],
)
async def test_nothing_outside_the_allowlist(http: httpx.AsyncClient, path: str) -> None:
    # Plain `..` segments are resolved by every client before sending; encoded ones reach us.
    response = await http.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert "text/javascript" not in response.headers.get("content-type", "")


def test_allowlist_takes_only_known_kinds_and_no_links(tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()
    (tmp_path / "main.js").write_text("export {};")
    (tmp_path / "pages" / "x.js").write_text("export {};")
    (tmp_path / "font.WOFF2").write_bytes(b"wOF2")
    (tmp_path / "notes.md").write_text("not served")
    (tmp_path / ".env").write_text("SECRET=1")
    (tmp_path / "main.js~").write_text("editor leftover")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.js"
    outside.write_text("secret")
    (tmp_path / "linked.js").symlink_to(outside)
    (tmp_path / "dir-link").symlink_to(tmp_path.parent)

    found = web.console_assets(tmp_path)
    assert sorted(found) == ["font.WOFF2", "main.js", "pages/x.js"]
    assert found["font.WOFF2"][1] == "font/woff2"
    assert found["pages/x.js"][1] == "text/javascript; charset=utf-8"
    assert web.console_assets(tmp_path / "missing") == {}
