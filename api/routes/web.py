"""The browser side of leadflow, served by the API itself (no build step, no CDN, works offline):

- `/` — the operator console (api/static/console/: ES modules, one stylesheet, vendored charts),
  which signs people in and calls the same `/api/v1/...` endpoints as any other client;
- `/app` — the plain enrichment page for people who don't use the CLI (api/static/index.html),
  which calls `/api/v1/jobs` with the tenant API key the user types in.

Files are served from allowlists, never from a directory mount: nothing else under api/ can be
served by accident, and a path is looked up in a dict, so `..` or an encoded slash finds nothing."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CONSOLE_DIR = STATIC_DIR / "console"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# What the console may hold, by suffix; anything else in its folder (notes, sources of vendored
# code, editor leftovers) is not served.
CONSOLE_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
# Pages only talk to their own origin (fetch and the EventSource of live updates included);
# nothing inline, nothing third-party, no framing, no plugins.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Assets change with leadflow's version; revalidating is cheap on loopback and never stale.
    "Cache-Control": "no-cache",
}


def console_assets(folder: Path = CONSOLE_DIR) -> dict[str, tuple[Path, str]]:
    """Every servable file under `folder`, by its path relative to it (`pages/inbox.js`), with
    its media type. Built once at import: a file added later is served after a restart."""
    found: dict[str, tuple[Path, str]] = {}
    if not folder.is_dir():
        return found
    root = folder.resolve()
    for path in sorted(folder.rglob("*")):
        media_type = CONSOLE_MEDIA_TYPES.get(path.suffix.lower())
        if media_type is None or not path.is_file() or path.is_symlink():
            continue
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            continue  # a file reached through a linked folder: not ours to serve
        found[resolved.relative_to(root).as_posix()] = (resolved, media_type)
    return found


CONSOLE_ASSETS = console_assets()

router = APIRouter(tags=["web"], include_in_schema=False)


def _html(path: Path) -> FileResponse:
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/")
async def console() -> FileResponse:
    return _html(CONSOLE_DIR / "index.html")


@router.get("/console/{name:path}")
async def console_asset(name: str) -> FileResponse:
    found = CONSOLE_ASSETS.get(name)
    if found is None:
        raise ApiError(404, "not found", name)
    path, media_type = found
    return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/app")
async def page() -> FileResponse:
    return _html(STATIC_DIR / "index.html")


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, "not found", name)
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)
