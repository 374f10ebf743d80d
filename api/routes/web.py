"""The plain web page for people who don't use the CLI: upload a CSV, follow the job, download
the results. Static files from api/static (no build step, no CDN); the page calls the same
`/api/v1/jobs` endpoints as any other client, with the tenant API key the user types in."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from api.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page only talks to its own origin; nothing inline, nothing third-party.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/app", status_code=307)


@router.get("/app")
async def page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers=SECURITY_HEADERS,
    )


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    # An allowlist, not a directory mount: nothing else under api/ can be served by accident.
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, "not found", name)
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)
